//! Replays the cargo-fuzz seed corpus (`client/fuzz/corpus/<target>/`) through the same
//! invariant-checking functions the fuzz targets call, so CI exercises them on stable Rust
//! without libFuzzer.

use std::fs;
use std::path::PathBuf;

use ibp_client::proto::netframe::FrameError;
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

#[test]
fn netframe_corpus() {
    let files = corpus("netframe");
    let outcome = |name: &str| {
        let (_, data) = files.iter().find(|(n, _)| n == name).expect("seed present");
        fuzz::netframe(data)
    };
    for (_, data) in &files {
        fuzz::netframe(data);
    }
    let payload: Vec<u8> = (0..4096u32).map(|i| (i * 7 + 3) as u8).collect();
    for (name, len) in [
        ("md5_1024_x4", 4096),
        ("sha1_1000_partial", 2500),
        ("sha512_one_block", 300),
        ("upper_case_hex", 200),
        ("trailing_reply", 600),
        ("empty_payload", 0),
    ] {
        assert_eq!(outcome(name), Some(Ok(payload[..len].to_vec())), "{name} should decode");
    }
    assert_eq!(outcome("sha256_block_1"), Some(Ok(b"hello".to_vec())));
    assert_eq!(
        outcome("md5_flipped_payload"),
        Some(Err(FrameError::DigestMismatch { offset: 2048 }))
    );
    assert_eq!(outcome("sha256_bad_hex"), Some(Err(FrameError::DigestMismatch { offset: 0 })));
    assert_eq!(
        outcome("truncated_in_digest"),
        Some(Ok(payload[..1000].to_vec())),
        "all payload, last digest cut"
    );
    assert_eq!(outcome("too_short"), None);
    println!("fuzz_corpus netframe: {} seeds replayed", files.len());
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
        ("netframe", |data: &[u8]| {
            let _ = fuzz::netframe(data);
        }),
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
