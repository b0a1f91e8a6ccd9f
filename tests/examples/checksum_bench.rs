//! Checksummed STORE/LOAD throughput against plain ones, in the same run, on one depot:
//! `cargo build --release -p ibp-depot --bins && cargo run --release -p ibp-tests --example
//! checksum_bench [MiB] [network block bytes]` (defaults: 1024 MiB, 65536).
//!
//! For each mode (plain, MD5, SHA1, SHA256, SHA512) it allocates SIZE bytes, STOREs them
//! (STORE_CHKSUM with a hex digest after every network block for the checksummed modes; the
//! client computes the digests while it sends), LOADs them back (LOAD_CHKSUM; the client checks
//! every digest while it reads), and frees the allocation. Both ends share this machine's
//! cores, so the figures include the client's hashing; they are meant as ratios to the plain
//! transfer of the same run. The results go to stdout as a Markdown table.

use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::net::TcpStream;
use std::time::Instant;

use md5::Digest as _;

use ibp_tests::{pattern, Caps, Depot, DepotOpts};

const PIECE: usize = 4 << 20;

fn hex_of(cs: i32, data: &[u8]) -> Vec<u8> {
    let bin: Vec<u8> = match cs {
        1 => sha2::Sha256::digest(data).to_vec(),
        2 => sha2::Sha512::digest(data).to_vec(),
        3 => sha1::Sha1::digest(data).to_vec(),
        4 => md5::Md5::digest(data).to_vec(),
        _ => unreachable!("checksum type {cs}"),
    };
    const HEX: &[u8; 16] = b"0123456789abcdef";
    bin.iter().flat_map(|b| [HEX[(b >> 4) as usize], HEX[(b & 15) as usize]]).collect()
}

fn line(r: &mut BufReader<TcpStream>) -> String {
    let mut s = String::new();
    r.read_line(&mut s).expect("reply line");
    s
}

/// One STORE (or STORE_CHKSUM) of `size` bytes; returns seconds.
fn store(addr: std::net::SocketAddr, caps: &Caps, size: usize, cs: i32, bs: usize) -> f64 {
    let s = TcpStream::connect(addr).expect("connect");
    s.set_nodelay(true).expect("nodelay");
    let mut r = BufReader::new(s.try_clone().expect("clone"));
    let mut w = BufWriter::with_capacity(1 << 20, s);
    let data = pattern(7, PIECE);
    let t0 = Instant::now();
    let head = if cs == 0 {
        format!("1 2 {} {size} 600\n", caps.write.wire())
    } else {
        format!("1 28 {cs} {bs} {} {size} 600\n", caps.write.wire())
    };
    w.write_all(head.as_bytes()).expect("header");
    w.flush().expect("flush");
    assert_eq!(line(&mut r).trim(), "1", "STORE ack");
    let mut sent = 0;
    while sent < size {
        // Blocks restart at every network block boundary of the payload, so cut the pattern
        // by block, never by piece.
        let n = if cs == 0 { PIECE.min(size - sent) } else { bs.min(size - sent) };
        let at = sent % PIECE;
        let n = n.min(PIECE - at);
        let block = &data[at..at + n];
        w.write_all(block).expect("payload");
        if cs != 0 {
            w.write_all(&hex_of(cs, block)).expect("digest");
        }
        sent += n;
    }
    w.flush().expect("flush");
    let done = line(&mut r);
    assert_eq!(done.split_whitespace().collect::<Vec<_>>(), ["1", &size.to_string()], "STORE");
    t0.elapsed().as_secs_f64()
}

/// One LOAD (or LOAD_CHKSUM) of `size` bytes, checking every digest; returns seconds.
fn load(addr: std::net::SocketAddr, caps: &Caps, size: usize, cs: i32, bs: usize) -> f64 {
    let s = TcpStream::connect(addr).expect("connect");
    let mut w = s.try_clone().expect("clone");
    let mut r = BufReader::with_capacity(1 << 20, s);
    let t0 = Instant::now();
    let head = if cs == 0 {
        format!("1 8 {} 0 {size} 600\n", caps.read.wire())
    } else {
        format!("1 24 {cs} {bs} {} 0 {size} 600\n", caps.read.wire())
    };
    w.write_all(head.as_bytes()).expect("header");
    let h = line(&mut r);
    assert_eq!(h.split_whitespace().collect::<Vec<_>>(), ["1", &size.to_string()], "LOAD");
    let step = if cs == 0 { PIECE } else { bs };
    let mut buf = vec![0u8; step];
    let hex_len = [0, 64, 128, 40, 32][cs as usize];
    let mut digest = vec![0u8; hex_len];
    let mut got = 0;
    while got < size {
        let n = step.min(size - got);
        r.read_exact(&mut buf[..n]).expect("payload");
        if cs != 0 {
            r.read_exact(&mut digest).expect("digest");
            assert_eq!(digest, hex_of(cs, &buf[..n]), "digest at {got}");
        }
        got += n;
    }
    t0.elapsed().as_secs_f64()
}

/// One command on a fresh connection (the depot closes idle ones); returns the reply line.
fn command(addr: std::net::SocketAddr, text: &str) -> String {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.write_all(text.as_bytes()).expect("command");
    line(&mut BufReader::new(s))
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mib: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(1024);
    let bs: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(65536);
    let size = mib << 20;
    if std::env::var_os("IBP_DEPOT_BIN").is_none() {
        // This example sits in <target>/<profile>/examples; the depot beside <profile>.
        let exe = std::env::current_exe().expect("current_exe");
        if let Some(profile) = exe.parent().and_then(|p| p.parent()) {
            std::env::set_var("IBP_DEPOT_BIN", profile.join("ibp-depot"));
        }
    }
    let opts = DepotOpts {
        capacity: format!("{}MiB", mib * 2 + 256),
        max_duration: "1h".into(),
        rust_log: "warn".into(),
        ..DepotOpts::default()
    };
    let d = Depot::start(opts);
    let names = ["plain", "SHA256", "SHA512", "SHA1", "MD5"];
    let mut rows = Vec::new();
    // Plain first and last: the spread between the two shows the run's own drift.
    for (i, cs) in [0, 4, 3, 1, 2, 0].into_iter().enumerate() {
        let caps = command(d.addr(), &format!("1 1 1 1 1 3600 {size} 60\n"));
        let caps = Caps::parse_reply(&caps).expect("caps");
        let st = store(d.addr(), &caps, size, cs, bs);
        let ld = load(d.addr(), &caps, size, cs, bs);
        let decr = command(d.addr(), &format!("1 9 {} 42 1 60\n", caps.manage.wire()));
        assert_eq!(decr.trim(), "1", "DECR");
        let mbs = |secs: f64| size as f64 / secs / (1 << 20) as f64;
        let name = if i == 5 { "plain (again)" } else { names[cs as usize] };
        rows.push((name, mbs(st), mbs(ld)));
        eprintln!("{name:>13}: store {:8.1} MiB/s, load {:8.1} MiB/s", mbs(st), mbs(ld));
    }
    let (ps, pl) = (rows[0].1, rows[0].2);
    println!("| mode | store MiB/s | store / plain | load MiB/s | load / plain |");
    println!("| --- | ---: | ---: | ---: | ---: |");
    for (name, s, l) in rows {
        println!("| {name} | {s:.0} | {:.2} | {l:.0} | {:.2} |", s / ps, l / pl);
    }
    println!(
        "\n{mib} MiB per transfer, network block {bs} bytes, one connection, depot with 2 shards."
    );
}
