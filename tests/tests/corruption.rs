//! Bit rot on disk: with the depot stopped, flip bytes inside an allocation's data in
//! `shard-N.data`, restart, and check that a LOAD of a corrupt checksum block answers -63 (or
//! closes short), never returning the flipped bytes, while clean blocks and other allocations
//! still load.
//!
//! Where the bytes are: the allocation's shard is the one whose port its capability names
//! (shard = port - base - 1), and the first allocation of a fresh shard starts at offset 0 of
//! that shard's data file. The test reads the file first to confirm that the stored bytes are
//! where it is about to flip them, so a layout change fails loudly instead of testing nothing.

use std::path::PathBuf;

use ibp_tests::depot::{flip_byte, read_at};
use ibp_tests::*;

/// Checksum block size configured for the test depot (`64KiB`).
const BLOCK: u64 = 64 * 1024;
/// Size of the allocation that gets corrupted: three whole blocks and a partial one.
const LEN: u64 = 3 * BLOCK + 5000;
/// Flipped offsets: inside block 1 and inside the partial last block.
const FLIPS: [u64; 2] = [BLOCK + 4464, 3 * BLOCK + 4000];

/// What a LOAD of a range that covers a corrupt block did.
#[derive(Debug, PartialEq)]
enum Outcome {
    Refused63,
    CutShort(usize),
}

#[test]
fn flipped_bytes_are_never_served() {
    let mut d = Depot::start(DepotOpts::default());
    // The first allocation made through shard 0's own port lands on shard 0.
    let mut raw = Raw::connect(d.shard_addr(0));
    let victim = allocate(&mut raw, LEN, 3600, true);
    let shard = victim.read.shard(d.port());
    let data = pattern(42, LEN as usize);
    store(&mut raw, &victim.write, &data);
    let neighbour = allocate(&mut raw, 100_000, 3600, true);
    let neighbour_data = pattern(43, 100_000);
    store(&mut raw, &neighbour.write, &neighbour_data);
    let mut other = Raw::connect(d.shard_addr(1));
    let far = allocate(&mut other, 100_000, 3600, false);
    let far_data = pattern(44, 100_000);
    store(&mut other, &far.write, &far_data);
    drop((raw, other));
    d.kill9();

    let file: PathBuf = d.data_dir().join(format!("shard-{shard}.data"));
    assert!(file.is_file(), "{} missing: the data file layout changed", file.display());
    for &off in &FLIPS {
        let on_disk = read_at(&file, off, 64);
        assert_eq!(
            on_disk,
            data[off as usize..off as usize + 64],
            "{} @{off} does not hold the stored bytes: the allocation is not where expected",
            file.display()
        );
        flip_byte(&file, off);
    }
    d.restart();

    let mut refused = 0;
    let mut cut = 0;
    for round in ["after restart", "after a second restart"] {
        // Ranges that cover a corrupt block.
        for (off, len) in [
            (0, LEN),
            (BLOCK, BLOCK),
            (FLIPS[0], 1),
            (BLOCK - 10, 20),
            (3 * BLOCK, 5000),
            (FLIPS[1] - 1, 2),
        ] {
            match corrupt_load(&d, &victim.read, &data, off, len) {
                Outcome::Refused63 => refused += 1,
                Outcome::CutShort(_) => cut += 1,
            }
        }
        // Clean blocks of the same allocation, its neighbour, and another shard's allocation.
        for (off, len) in [(0, BLOCK), (2 * BLOCK, BLOCK), (10, 100)] {
            let got = load(&mut Raw::connect(d.addr()), &victim.read, off, len);
            assert!(
                got[..] == data[off as usize..(off + len) as usize],
                "{round}: clean block {off}+{len} differs"
            );
        }
        let got = load(&mut Raw::connect(d.addr()), &neighbour.read, 0, 100_000);
        assert!(got == neighbour_data, "{round}: the neighbouring allocation differs");
        let got = load(&mut Raw::connect(d.addr()), &far.read, 0, 100_000);
        assert!(got == far_data, "{round}: shard 1's allocation differs");
        if round == "after restart" {
            d.kill9();
            d.restart();
        }
    }
    println!(
        "corruption: {} bytes flipped in shard-{shard}.data; loads over corrupt blocks: {refused} answered -63, {cut} cut short, 0 served flipped bytes; clean blocks and 2 other allocations intact",
        FLIPS.len()
    );
}

/// LOAD `off+len` of `cap`, which covers a corrupt block: -63, or a connection closed short
/// after a prefix of the true bytes. Anything else fails the test.
fn corrupt_load(d: &Depot, cap: &Cap, data: &[u8], off: u64, len: u64) -> Outcome {
    let mut raw = Raw::connect(d.addr());
    let want = &data[off as usize..(off + len) as usize];
    match try_load(&mut raw, cap, off, len) {
        Err(Fail::Code(-63)) => Outcome::Refused63,
        Err(Fail::Cut { got, why }) => {
            assert!(got.len() < want.len(), "LOAD {off}+{len}: cut after all bytes? ({why})");
            assert!(
                got[..] == want[..got.len()],
                "LOAD {off}+{len}: the {} bytes sent before the cut are wrong",
                got.len()
            );
            Outcome::CutShort(got.len())
        }
        Ok(bytes) => {
            let flipped = FLIPS.iter().filter(|&&f| f >= off && f < off + len).count();
            let differ = bytes.iter().zip(want).filter(|(a, b)| a != b).count();
            panic!("LOAD {off}+{len} over {flipped} flipped byte(s) was served ({differ} bytes differ from what was stored), want -63");
        }
        Err(e) => panic!("LOAD {off}+{len} over a corrupt block: {e:?}, want -63"),
    }
}
