//! The wire codec: parse and encode of every command line, the client's reply parsers,
//! capability URLs, and CRC32 per 64 KiB checksum block.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use ibp_benches::{CAPS_REPLY, COMMAND_LINES, PROBE_REPLY};
use ibp_client::proto::{parse_request, reply, Capability};

fn commands(c: &mut Criterion) {
    let mut parse = c.benchmark_group("parse_request");
    for (name, line) in COMMAND_LINES {
        parse.throughput(Throughput::Elements(1));
        parse.bench_function(*name, |b| b.iter(|| parse_request(black_box(line.as_bytes()))));
    }
    parse.finish();
    let mut encode = c.benchmark_group("encode_request");
    let mut out = Vec::with_capacity(4096);
    for (name, line) in COMMAND_LINES {
        let Ok(req) = parse_request(line.as_bytes()) else {
            panic!("sample line {name} must parse");
        };
        encode.throughput(Throughput::Elements(1));
        encode.bench_function(*name, |b| {
            b.iter(|| {
                out.clear();
                black_box(&req).encode(&mut out);
                black_box(out.len())
            })
        });
    }
    encode.finish();
}

fn replies(c: &mut Criterion) {
    let mut g = c.benchmark_group("parse_reply");
    g.bench_function("caps", |b| b.iter(|| reply::parse_caps(black_box(CAPS_REPLY.as_bytes()))));
    g.bench_function("probe", |b| b.iter(|| reply::parse_probe(black_box(PROBE_REPLY.as_bytes()))));
    g.bench_function("count", |b| b.iter(|| reply::parse_count(black_box(b"1 1048576 \n"))));
    g.bench_function("capability_url", |b| {
        let url =
            "ibp://127.0.0.1:6715/1#fG2haQCblxm9YBMg8ycCNaDIqfjPYe-W/14391562478771907151/READ";
        b.iter(|| Capability::parse(black_box(url)))
    });
    g.finish();
}

fn crc(c: &mut Criterion) {
    const BLOCK: usize = 64 * 1024;
    let data: Vec<u8> = (0..BLOCK * 16).map(|i| (i * 31 + 7) as u8).collect();
    let mut g = c.benchmark_group("crc32_64KiB_block");
    g.throughput(Throughput::Bytes(BLOCK as u64));
    g.bench_function("crc32fast", |b| b.iter(|| crc32fast::hash(black_box(&data[..BLOCK]))));
    g.bench_function("depot_block_crc", |b| {
        b.iter(|| ibp_depot::checksum::block_crc(black_box(&data[..BLOCK]), BLOCK as u64))
    });
    g.throughput(Throughput::Bytes(data.len() as u64));
    g.bench_function("1MiB_as_16_blocks", |b| {
        b.iter(|| {
            data.chunks(BLOCK)
                .map(|blk| ibp_depot::checksum::block_crc(blk, BLOCK as u64))
                .fold(0u32, |a, c| a ^ c)
        })
    });
    g.finish();
}

criterion_group!(benches, commands, replies, crc);
criterion_main!(benches);
