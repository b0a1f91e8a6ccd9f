//! The depot's in-memory structures: the 4 KiB-block extent allocator, journal records
//! (encode, and scan as recovery replays them) and allocation table lookups by key.

use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use ibp_depot::allocation::Durability;
use ibp_depot::extent::ExtentAllocator;
use ibp_depot::journal::record::{scan, Record};
use ibp_depot::keys::{DepotSecret, KeyKind};
use ibp_depot::table::{AllocRequest, Region, ResourcePolicy, Table};

fn extents(c: &mut Criterion) {
    let mut g = c.benchmark_group("extent");
    // A fragmented allocator: 1 M blocks (4 GiB), every other 16-block run taken.
    let fragmented = || {
        let mut a = ExtentAllocator::new(1 << 20);
        let runs: Vec<_> = (0..(1 << 16)).filter_map(|_| a.allocate(16)).collect();
        for e in runs.into_iter().step_by(2) {
            a.free(e);
        }
        a
    };
    g.bench_function("allocate_free_16_blocks_fragmented", |b| {
        b.iter_batched_ref(
            fragmented,
            |a| {
                if let Some(e) = a.allocate(black_box(16)) {
                    a.free(e);
                }
            },
            BatchSize::LargeInput,
        )
    });
    g.bench_function("allocate_free_256_blocks_empty", |b| {
        let mut a = ExtentAllocator::new(1 << 20);
        b.iter(|| {
            if let Some(e) = a.allocate(black_box(256)) {
                a.free(e);
            }
        })
    });
    g.finish();
}

fn data_record(id: u64) -> Record {
    Record::Data { id, size: 1 << 20, first_block: 0, crcs: vec![0xdead_beef; 16] }
}

fn journal(c: &mut Criterion) {
    let mut g = c.benchmark_group("journal");
    let rec = data_record(7);
    let mut out = Vec::with_capacity(1024);
    g.throughput(Throughput::Elements(1));
    g.bench_function("encode_data_record_1MiB_store", |b| {
        b.iter(|| {
            out.clear();
            black_box(&rec).encode_framed(&mut out);
            out.len()
        })
    });
    let delete = Record::Delete { id: 7 };
    g.bench_function("encode_delete_record", |b| {
        b.iter(|| {
            out.clear();
            black_box(&delete).encode_framed(&mut out);
            out.len()
        })
    });
    // Replay: scan an image of 100 000 records, as recovery does.
    let mut image = Vec::new();
    for id in 0..100_000u64 {
        if id % 2 == 0 { data_record(id) } else { Record::Delete { id } }.encode_framed(&mut image);
    }
    image.resize(image.len() + 4096, 0);
    g.throughput(Throughput::Elements(100_000));
    g.bench_function("scan_100k_records", |b| b.iter(|| scan(black_box(&image)).records.len()));
    g.finish();
}

fn table(c: &mut Criterion) {
    let policy = ResourcePolicy {
        max_duration_s: 86_400,
        max_alloc_bytes: 1 << 30,
        admission_factor: 1.0,
        checksum_block_bytes: 65_536,
    };
    let mut t = Table::new(0, vec![Region::new(policy, 1 << 40)]);
    let secret = DepotSecret([7; 32]);
    let mut n = 0u64;
    let mut fill = |b: &mut [u8]| {
        for x in b.iter_mut() {
            n = n.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            *x = (n >> 33) as u8;
        }
    };
    let mut keys = Vec::new();
    for _ in 0..100_000 {
        let req = AllocRequest {
            resource: 0,
            durability: Durability::Hard,
            duration_s: 3600,
            size: 4096,
            digest: None,
        };
        match t.allocate(req, &secret, 0, &mut fill, &mut |_, _| {}) {
            Ok(g) => keys.push(g.keys[0].clone()),
            Err(e) => panic!("table benchmark setup: {e:?}"),
        }
    }
    let mut g = c.benchmark_group("table");
    g.throughput(Throughput::Elements(1));
    let mut i = 0usize;
    g.bench_function("find_read_key_in_100k", |b| {
        b.iter(|| {
            i = (i + 7919) % keys.len();
            t.find(&secret, KeyKind::Read, black_box(&keys[i]), 1).is_ok()
        })
    });
    g.bench_function("find_unknown_key", |b| {
        b.iter(|| {
            t.find(&secret, KeyKind::Read, black_box("0#AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"), 1)
                .is_err()
        })
    });
    g.finish();
}

criterion_group!(benches, extents, journal, table);
criterion_main!(benches);
