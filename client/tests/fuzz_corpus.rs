//! Replays the cargo-fuzz seed corpus (`client/fuzz/corpus/<target>/`) through the same
//! invariant-checking functions the fuzz targets call, so CI exercises them on stable Rust
//! without libFuzzer.

use std::fs;
use std::path::PathBuf;

use ibp_client::proto::{self, fuzz};

fn corpus(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus").join(target);
    let mut files: Vec<(String, Vec<u8>)> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("corpus dir {}: {e}", dir.display()))
        .map(|entry| {
            let path = entry.expect("readable corpus entry").path();
            let name =
                path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            (name, fs::read(&path).expect("readable corpus file"))
        })
        .collect();
    files.sort();
    assert!(files.len() >= 12, "{target}: expected a dozen seeds, found {}", files.len());
    files
}

#[test]
fn parse_request_corpus() {
    let files = corpus("parse_request");
    for (_, data) in &files {
        fuzz::parse_request(data);
    }
    // The seeds taken from PROTOCOL.md captures must stay valid.
    for name in [
        "allocate_lstore",
        "allocate_v0_libdlt",
        "allocate_chksum",
        "manage_decr_read",
        "manage_probe_loci",
        "send_double_space",
        "pull_phoebus",
        "status_forms",
        "status_v0",
        "load_chksum",
        "vec_read",
    ] {
        let (_, data) = files.iter().find(|(n, _)| n == name).expect("seed present");
        assert!(proto::parse_request(data).is_ok(), "{name} should parse");
    }
    for name in ["huge_numbers", "vec_5000_entries", "nul_bytes", "overlong_key", "vec_count_lies"]
    {
        let (_, data) = files.iter().find(|(n, _)| n == name).expect("seed present");
        assert!(proto::parse_request(data).is_err(), "{name} should be refused");
    }
    println!("fuzz_corpus parse_request: {} seeds replayed", files.len());
}

#[test]
fn parse_capability_corpus() {
    let files = corpus("parse_capability");
    for (_, data) in &files {
        fuzz::parse_capability(data);
    }
    println!("fuzz_corpus parse_capability: {} seeds replayed", files.len());
}

#[test]
fn parse_reply_corpus() {
    let files = corpus("parse_reply");
    for (_, data) in &files {
        fuzz::parse_reply(data);
    }
    println!("fuzz_corpus parse_reply: {} seeds replayed", files.len());
}

/// A small deterministic mutation pass over every seed (flip, insert, delete, splice tokens),
/// so stable CI explores a little beyond the seeds. Bounded: `MUTATIONS` per seed.
#[test]
fn mutated_corpus() {
    const MUTATIONS: usize = 2000;
    const SEED: u64 = 0x1b9_2024;
    let mut rng = SEED;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let interesting: [&[u8]; 8] =
        [b" ", b"\n", b"-1", b"99999999999999999999", b"#", b"/", b"\0", b"ibp://h:1/0#k/1/READ"];
    let mut runs = 0usize;
    for (target, run) in [
        ("parse_request", fuzz::parse_request as fn(&[u8])),
        ("parse_capability", fuzz::parse_capability),
        ("parse_reply", fuzz::parse_reply),
    ] {
        for (_, seed) in corpus(target) {
            for _ in 0..MUTATIONS {
                let mut data = seed.clone();
                for _ in 0..1 + next() % 4 {
                    let at = if data.is_empty() { 0 } else { (next() as usize) % data.len() };
                    match next() % 4 {
                        0 if !data.is_empty() => data[at] ^= 1 << (next() % 8),
                        1 if !data.is_empty() => {
                            data.remove(at);
                        }
                        2 => {
                            let piece = interesting[(next() as usize) % interesting.len()];
                            data.splice(at..at, piece.iter().copied());
                        }
                        _ => data.insert(at, b"0123456789 "[(next() as usize) % 11]),
                    }
                }
                run(&data);
                runs += 1;
            }
        }
    }
    println!("fuzz_corpus mutated: {runs} inputs, seed {SEED:#x}");
}
