//! Raw-byte transcripts of the extended commands against a real depot process: vector I/O
//! (33/35), checksummed transfers (24, 27, 28, 34, 36) with the §10 framing for every digest,
//! ALLOCATE_CHKSUM / GET_CHKSUM / VALIDATE_CHKSUM (29, 31, 32), aliases (14, 15), RENAME (16),
//! SPLIT/MERGE_ALLOCATE (18, 19), and their bad inputs (overlong and out-of-range vectors,
//! windows, digest mismatches, wrong capability kinds).

use md5::Digest as _;

use ibp_tests::*;

fn depot() -> Depot {
    Depot::start(DepotOpts::default())
}

fn conn(d: &Depot) -> Raw {
    Raw::connect(d.addr())
}

/// Hex digest of `data` for checksum type `cs` (DLS `chksum.h` codes).
fn hex(cs: i32, data: &[u8]) -> Vec<u8> {
    let bin: Vec<u8> = match cs {
        1 => sha2::Sha256::digest(data).to_vec(),
        2 => sha2::Sha512::digest(data).to_vec(),
        3 => sha1::Sha1::digest(data).to_vec(),
        4 => md5::Md5::digest(data).to_vec(),
        _ => panic!("checksum type {cs}"),
    };
    bin.iter().map(|b| format!("{b:02x}")).collect::<String>().into_bytes()
}

fn hex_len(cs: i32) -> usize {
    match cs {
        1 => 64,
        2 => 128,
        3 => 40,
        _ => 32,
    }
}

/// Payload with a hex digest after every `bs` bytes and after the final partial block.
fn framed(cs: i32, bs: usize, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + (data.len() / bs + 1) * 128);
    for block in data.chunks(bs) {
        out.extend_from_slice(block);
        out.extend_from_slice(&hex(cs, block));
    }
    out
}

/// Splits a framed stream back into payload, checking every digest.
fn unframe(cs: i32, bs: usize, wire: &[u8], len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    let mut pos = 0;
    while out.len() < len {
        let n = bs.min(len - out.len());
        let block = &wire[pos..pos + n];
        let digest = &wire[pos + n..pos + n + hex_len(cs)];
        assert_eq!(digest, &hex(cs, block)[..], "digest of block at payload {}", out.len());
        out.extend_from_slice(block);
        pos += n + hex_len(cs);
    }
    assert_eq!(pos, wire.len(), "no bytes after the last digest");
    out
}

/// Sends a line and returns the reply's tokens.
fn ask(raw: &mut Raw, line: &str) -> Vec<String> {
    tokens(&raw.cmd(line)).into_iter().map(str::to_string).collect()
}

fn vec_list(spans: &[(u64, u64)]) -> String {
    let mut s = spans.len().to_string();
    for (o, l) in spans {
        s.push_str(&format!(" {o} {l}"));
    }
    s
}

#[test]
fn vec_write_and_read_move_data_in_list_order() {
    let d = depot();
    let mut raw = conn(&d);
    let caps = allocate(&mut raw, 300_000, 600, false);
    let a = pattern(1, 70_000);
    let b = pattern(2, 10);
    let c = pattern(3, 5);
    // Spans out of order, across checksum blocks, one inside another block's edge.
    let spans = [(100_000u64, a.len() as u64), (0, b.len() as u64), (65_530, c.len() as u64)];
    raw.send(format!("1 33 {} {} 30\n", caps.write.wire(), vec_list(&spans)).as_bytes());
    assert_eq!(tokens(&raw.line()), ["1"], "VEC_WRITE ack");
    raw.send(&[a.clone(), b.clone(), c.clone()].concat());
    assert_eq!(tokens(&raw.line()), ["1", "70015"], "VEC_WRITE done");
    assert_eq!(probe(&mut raw, &caps.manage).size, 170_000);
    // The verified example of PROTOCOL.md §9: (100,10),(0,10) comes back as B…A….
    let rspans = [(100_000u64, 10u64), (0, 10), (65_530, 5), (99_998, 4)];
    raw.send(format!("1 35 {} {} 30\n", caps.read.wire(), vec_list(&rspans)).as_bytes());
    assert_eq!(tokens(&raw.line()), ["1", "29"], "VEC_READ header");
    let got = raw.read_exact(29);
    assert_eq!(&got[..10], &a[..10]);
    assert_eq!(&got[10..20], &b[..]);
    assert_eq!(&got[20..25], &c[..]);
    assert_eq!(&got[25..], &[0, 0, a[0], a[1]], "a hole reads as zeros");
    // Overlapping spans in one VEC_WRITE: the later one wins, even inside one block.
    raw.send(format!("1 33 {} 2 10 6 12 2 30\n", caps.write.wire()).as_bytes());
    assert_eq!(tokens(&raw.line()), ["1"]);
    raw.send(b"xxxxxxYY");
    assert_eq!(tokens(&raw.line()), ["1", "8"]);
    assert_eq!(load(&mut raw, &caps.read, 10, 6), b"xxYYxx");
    // The connection stays usable and LOAD agrees with every CRC.
    assert_eq!(load(&mut raw, &caps.read, 100_000, 70_000), a);
}

#[test]
fn vec_bad_inputs_are_refused_before_any_byte_moves() {
    let d = depot();
    let mut raw = conn(&d);
    let caps = allocate(&mut raw, 1000, 600, false);
    store(&mut raw, &caps.write, &pattern(4, 100));
    // A span past the max size: −19 before the ack, and the connection closes (the payload
    // would otherwise be read as commands).
    raw.send(format!("1 33 {} 2 0 10 995 10 30\n", caps.write.wire()).as_bytes());
    assert_eq!(tokens(&raw.line()), ["-19"]);
    raw.expect_close_notice();
    let mut raw = conn(&d);
    assert_eq!(load(&mut raw, &caps.read, 0, 100), pattern(4, 100), "nothing moved");
    let neg = format!("1 33 {} 1 -1 10 30", caps.write.wire());
    assert_eq!(ask(&mut raw, &neg), ["-30"]);
    let mut raw = conn(&d);
    // VEC_READ past the size is −19 and the connection stays open.
    assert_eq!(ask(&mut raw, &format!("1 35 {} 2 0 10 90 20 30", caps.read.wire())), ["-19"]);
    assert_eq!(ask(&mut raw, &format!("1 35 {} 1 -5 1 30", caps.read.wire())), ["-30"]);
    assert_eq!(ask(&mut raw, &format!("1 35 {} 1 0 1001 30", caps.read.wire())), ["-19"]);
    // The wrong kind of key: a write key for VEC_READ, a read key for VEC_WRITE.
    assert_eq!(ask(&mut raw, &format!("1 35 {} 1 0 1 30", caps.write.wire())), ["-4"]);
    let mut w = conn(&d);
    assert_eq!(ask(&mut w, &format!("1 33 {} 1 0 1 30", caps.read.wire())), ["-4"]);
    // An overlong vector (4097 spans) and a count that disagrees with the list.
    let mut raw = conn(&d);
    let spans: Vec<(u64, u64)> = (0..4097).map(|i| (i, 1)).collect();
    let long = format!("1 35 {} {} 30", caps.read.wire(), vec_list(&spans));
    assert!(status_of(&raw.cmd(&long)) < 0, "4097 spans refused");
    let mut raw = conn(&d);
    let short = format!("1 35 {} 3 0 1 30", caps.read.wire());
    assert!(status_of(&raw.cmd(&short)) < 0, "count larger than the list");
    // 4096 one-byte spans are fine.
    let mut raw = conn(&d);
    let spans: Vec<(u64, u64)> = (0..4096).map(|i| (i % 100, 1)).collect();
    raw.send(format!("1 35 {} {} 30\n", caps.read.wire(), vec_list(&spans)).as_bytes());
    assert_eq!(tokens(&raw.line()), ["1", "4096"]);
    let got = raw.read_exact(4096);
    let want = pattern(4, 100);
    assert!(got.iter().enumerate().all(|(i, b)| *b == want[i % 100]));
}

/// STORE_CHKSUM, WRITE_CHKSUM, LOAD_CHKSUM, VEC_WRITE_CHKSUM and VEC_READ_CHKSUM with each
/// digest and block sizes that do and do not line up with the depot's chunks.
#[test]
fn checksummed_transfers_frame_every_block_for_every_digest() {
    let d = depot();
    for (cs, bs) in [(4, 1024usize), (3, 1000), (1, 65536), (2, 100_000)] {
        let mut raw = conn(&d);
        let caps = allocate(&mut raw, 1 << 20, 600, false);
        let data = pattern(cs as u64, 300_001);
        raw.send(format!("1 28 {cs} {bs} {} {} 30\n", caps.write.wire(), data.len()).as_bytes());
        assert_eq!(tokens(&raw.line()), ["1"], "STORE_CHKSUM {cs} ack");
        raw.send(&framed(cs, bs, &data));
        assert_eq!(tokens(&raw.line()), ["1", "300001"], "STORE_CHKSUM {cs} done");
        assert_eq!(load(&mut raw, &caps.read, 0, 300_001), data, "plain LOAD after {cs}");
        // LOAD_CHKSUM: 1 <len>, then the payload with digests.
        raw.send(format!("1 24 {cs} {bs} {} 17 250000 30\n", caps.read.wire()).as_bytes());
        assert_eq!(tokens(&raw.line()), ["1", "250000"], "LOAD_CHKSUM {cs} header");
        let blocks = 250_000usize.div_ceil(bs);
        let wire = raw.read_exact(250_000 + blocks * hex_len(cs));
        assert_eq!(unframe(cs, bs, &wire, 250_000), &data[17..250_017]);
        // WRITE_CHKSUM at an offset.
        let patch = pattern(9, 5000);
        raw.send(format!("1 27 {cs} {bs} {} 1234 5000 30\n", caps.write.wire()).as_bytes());
        assert_eq!(tokens(&raw.line()), ["1"]);
        raw.send(&framed(cs, bs, &patch));
        assert_eq!(tokens(&raw.line()), ["1", "5000"]);
        assert_eq!(load(&mut raw, &caps.read, 1234, 5000), patch);
        // VEC_WRITE_CHKSUM / VEC_READ_CHKSUM: the framing runs over the concatenated payload.
        let (x, y) = (pattern(10, 700), pattern(11, 900));
        let line = format!("1 34 {cs} {bs} {} 2 500000 700 400000 900 30\n", caps.write.wire());
        raw.send(line.as_bytes());
        assert_eq!(tokens(&raw.line()), ["1"]);
        raw.send(&framed(cs, bs, &[x.clone(), y.clone()].concat()));
        assert_eq!(tokens(&raw.line()), ["1", "1600"]);
        let line = format!("1 36 {cs} {bs} {} 2 400000 900 500000 700 30\n", caps.read.wire());
        raw.send(line.as_bytes());
        assert_eq!(tokens(&raw.line()), ["1", "1600"]);
        let wire = raw.read_exact(1600 + 1600usize.div_ceil(bs) * hex_len(cs));
        assert_eq!(unframe(cs, bs, &wire, 1600), [y, x].concat());
    }
}

#[test]
fn digest_mismatch_answers_63_and_keeps_the_allocation_consistent() {
    let d = depot();
    let mut raw = conn(&d);
    let caps = allocate(&mut raw, 1 << 20, 600, false);
    let old = pattern(20, 600_000);
    store(&mut raw, &caps.write, &old);
    // Overwrite 500 000 bytes at 50 000 with MD5 blocks of 100 000; corrupt the 4th digest.
    let new = pattern(21, 500_000);
    let mut wire = framed(4, 100_000, &new);
    let fourth = 3 * (100_000 + 32) + 100_000;
    wire[fourth] ^= 1;
    raw.send(format!("1 27 4 100000 {} 50000 500000 30\n", caps.write.wire()).as_bytes());
    assert_eq!(tokens(&raw.line()), ["1"]);
    raw.send(&wire);
    assert_eq!(tokens(&raw.line()), ["-63"], "digest mismatch");
    raw.expect_close_notice();
    let mut raw = conn(&d);
    let now = load(&mut raw, &caps.read, 0, 600_000);
    // The bad block and everything after it never reached disk; verified blocks before it may
    // have; every CRC matches (the LOAD above succeeded) and the size did not move.
    assert_eq!(&now[350_000..], &old[350_000..], "bad block and after: old bytes");
    assert_eq!(&now[..50_000], &old[..50_000]);
    for i in 50_000..350_000 {
        assert!(now[i] == old[i] || now[i] == new[i - 50_000], "byte {i} from neither");
    }
    assert_eq!(probe(&mut raw, &caps.manage).size, 600_000);
    // The first disk chunk (256 KiB) ends inside the 3rd network block: that block is read
    // ahead and checked before the chunk may be written. A bad 3rd digest therefore leaves
    // every byte as it was.
    let before = load(&mut raw, &caps.read, 0, 600_000);
    let mut wire = framed(4, 100_000, &pattern(23, 500_000));
    wire[2 * (100_000 + 32) + 100_000 + 5] ^= 1;
    raw.send(format!("1 27 4 100000 {} 50000 500000 30\n", caps.write.wire()).as_bytes());
    assert_eq!(tokens(&raw.line()), ["1"]);
    raw.send(&wire);
    assert_eq!(tokens(&raw.line()), ["-63"], "digest mismatch in the read-ahead block");
    let mut raw = conn(&d);
    assert_eq!(load(&mut raw, &caps.read, 0, 600_000), before, "nothing written");
    // An append with a bad first digest leaves nothing behind past the size.
    raw.send(format!("1 28 3 4096 {} 8192 30\n", caps.write.wire()).as_bytes());
    assert_eq!(tokens(&raw.line()), ["1"]);
    let mut wire = framed(3, 4096, &pattern(22, 8192));
    wire[4096] = b'z';
    raw.send(&wire);
    assert_eq!(tokens(&raw.line()), ["-63"]);
    let mut raw = conn(&d);
    assert_eq!(probe(&mut raw, &caps.manage).size, 600_000);
    assert_eq!(ask(&mut raw, &format!("1 8 {} 600000 1 30", caps.read.wire())), ["-19"]);
    // Unknown checksum type −64, bad network block size −65 (before the ack).
    let bad_type = format!("1 28 7 1024 {} 10 30", caps.write.wire());
    assert_eq!(ask(&mut raw, &bad_type), ["-64"]);
    let mut raw = conn(&d);
    assert_eq!(ask(&mut raw, &format!("1 24 4 0 {} 0 10 30", caps.read.wire())), ["-65"]);
    assert_eq!(ask(&mut raw, &format!("1 24 4 999999999 {} 0 10 30", caps.read.wire())), ["-65"]);
}

#[test]
fn pipelined_vector_and_checksummed_writes() {
    // LStore sends the header and the payload without waiting for `1 \n`, and the next
    // command right behind them. The STORE_CHKSUM appends at the size VEC_WRITE left (93 000).
    let d = depot();
    let mut raw = conn(&d);
    let caps = allocate(&mut raw, 100_000, 600, false);
    let (a, b) = (pattern(70, 3000), pattern(71, 5000));
    let mut bytes = format!("1 33 {} 2 90000 3000 0 5000 30\n", caps.write.wire()).into_bytes();
    bytes.extend_from_slice(&[a.clone(), b.clone()].concat());
    bytes.extend_from_slice(format!("1 28 3 1500 {} 2000 30\n", caps.write.wire()).as_bytes());
    bytes.extend_from_slice(&framed(3, 1500, &pattern(72, 2000)));
    bytes.extend_from_slice(
        format!("1 36 4 4096 {} 2 90000 3000 93000 2000 30\n", caps.read.wire()).as_bytes(),
    );
    raw.send(&bytes);
    for want in [vec!["1"], vec!["1", "8000"], vec!["1"], vec!["1", "2000"], vec!["1", "5000"]] {
        assert_eq!(tokens(&raw.line()), want);
    }
    let wire = raw.read_exact(5000 + 2 * 32);
    assert_eq!(unframe(4, 4096, &wire, 5000), [a, pattern(72, 2000)].concat());
    assert_eq!(load(&mut raw, &caps.read, 0, 5000), b);
}

#[test]
fn allocate_chksum_keeps_disk_digests_for_get_and_validate() {
    let d = depot();
    let mut raw = conn(&d);
    let line = "1 29 4 65536 1 1 1 600 200000 30";
    let caps = try_allocate_line(&mut raw, line).expect("ALLOCATE_CHKSUM");
    let data = pattern(30, 100_000);
    store(&mut raw, &caps.write, &data);
    raw.send(format!("1 31 {} 0 30\n", caps.manage.wire()).as_bytes());
    assert_eq!(tokens(&raw.line()), ["1", "4", "16", "65536", "2", "32"]);
    let sums = raw.read_exact(32);
    assert_eq!(&sums[..16], &md5::Md5::digest(&data[..65536])[..]);
    let mut last = data[65536..].to_vec();
    last.resize(65536, 0);
    assert_eq!(&sums[16..], &md5::Md5::digest(&last)[..], "a digest covers its whole block");
    assert_eq!(
        ask(&mut raw, &format!("1 31 {} 1 30", caps.manage.wire())),
        ["1", "4", "16", "65536", "2", "32"]
    );
    assert_eq!(ask(&mut raw, &format!("1 32 {} 0 30", caps.manage.wire())), ["1", "0"]);
    // A write in the middle updates the digest of its block.
    write(&mut raw, &caps.write, 70_000, b"changed");
    raw.send(format!("1 31 {} 0 30\n", caps.manage.wire()).as_bytes());
    raw.line();
    let sums = raw.read_exact(32);
    last[70_000 - 65536..70_007 - 65536].copy_from_slice(b"changed");
    assert_eq!(&sums[16..], &md5::Md5::digest(&last)[..]);
    assert_eq!(ask(&mut raw, &format!("1 32 {} 1 30", caps.manage.wire())), ["1", "0"]);
    // Only the manage key; a plain allocation has no digests (−63).
    assert_eq!(ask(&mut raw, &format!("1 31 {} 0 30", caps.read.wire())), ["-4"]);
    let plain = allocate(&mut raw, 1000, 600, false);
    assert_eq!(ask(&mut raw, &format!("1 31 {} 0 30", plain.manage.wire())), ["-63"]);
    assert_eq!(ask(&mut raw, &format!("1 32 {} 0 30", plain.manage.wire())), ["-63"]);
    // Type 0 is a plain allocation; bad types and block sizes are refused.
    let none = try_allocate_line(&mut raw, "1 29 0 0 1 1 1 600 1000 30").expect("type NONE");
    assert_eq!(ask(&mut raw, &format!("1 31 {} 0 30", none.manage.wire())), ["-63"]);
    assert_eq!(
        try_allocate_line(&mut raw, "1 29 9 65536 1 1 1 600 1000 30").err().and_then(|f| f.code()),
        Some(-64)
    );
    assert_eq!(
        try_allocate_line(&mut raw, "1 29 3 1000 1 1 1 600 1000 30").err().and_then(|f| f.code()),
        Some(-65)
    );
    // Every digest kind, with a small block.
    for (cs, len) in [(1, 32usize), (2, 64), (3, 20), (4, 16)] {
        let caps = try_allocate_line(&mut raw, &format!("1 29 {cs} 4096 1 1 1 600 9000 30"))
            .expect("alloc");
        store(&mut raw, &caps.write, &pattern(cs as u64, 5000));
        raw.send(format!("1 31 {} 0 30\n", caps.manage.wire()).as_bytes());
        assert_eq!(
            tokens(&raw.line()),
            ["1", &cs.to_string(), &len.to_string(), "4096", "2", &(2 * len).to_string()]
        );
        assert_eq!(raw.read_exact(2 * len).len(), 2 * len);
        assert_eq!(ask(&mut raw, &format!("1 32 {} 0 30", caps.manage.wire())), ["1", "0"]);
    }
}

#[test]
fn aliases_open_a_window_and_are_managed_through_their_master() {
    let d = depot();
    let mut raw = conn(&d);
    let caps = allocate(&mut raw, 10_000, 600, false);
    let data = pattern(40, 5000);
    store(&mut raw, &caps.write, &data);
    let reply = raw.cmd(&format!("1 14 {} 100 200 0 30", caps.manage.wire()));
    let alias = Caps::parse_reply(&reply).expect("ALIAS_ALLOCATE reply");
    assert_eq!(alias.read.typekey, "3862277");
    assert_eq!(load(&mut raw, &alias.read, 100, 200), &data[100..300]);
    assert_eq!(load(&mut raw, &alias.read, 150, 10), &data[150..160]);
    assert_eq!(ask(&mut raw, &format!("1 8 {} 99 10 30", alias.read.wire())), ["-19"]);
    assert_eq!(ask(&mut raw, &format!("1 8 {} 250 51 30", alias.read.wire())), ["-19"]);
    assert_eq!(ask(&mut raw, &format!("1 35 {} 2 100 1 0 1 30", alias.read.wire())), ["-19"]);
    write(&mut raw, &alias.write, 120, b"alias");
    assert_eq!(load(&mut raw, &caps.read, 120, 5), b"alias");
    assert_eq!(
        try_write(&mut raw, &alias.write, 299, b"xy").err().and_then(|f| f.code()),
        Some(-19)
    );
    let mut raw = conn(&d);
    assert_eq!(
        try_store(&mut raw, &alias.write, b"x").err().and_then(|f| f.code()),
        Some(-19),
        "no appends through a window"
    );
    let mut raw = conn(&d);
    // ALIAS_MANAGE PROBE, CHNG (needs the master's manage key), INCR/DECR.
    let secs = |t: &[String]| t[5].parse::<i64>().expect("seconds");
    let t = ask(&mut raw, &format!("1 15 {} 40 30", alias.manage.wire()));
    assert_eq!(&t[..5], ["1", "1", "0", "100", "200"]);
    assert!(secs(&t) > 590);
    let chng = format!("1 15 {} 43 0 50 60 {} 30", alias.manage.wire(), caps.manage.wire());
    assert_eq!(ask(&mut raw, &chng), ["1"]);
    let t = ask(&mut raw, &format!("1 15 {} 40 30", alias.manage.wire()));
    assert_eq!(&t[..5], ["1", "1", "0", "0", "50"]);
    assert!(secs(&t) <= 60);
    let wrong_master = format!("1 15 {} 43 0 50 0 {} 30", alias.manage.wire(), alias.manage.wire());
    assert_eq!(ask(&mut raw, &wrong_master), ["-4"]);
    let past = format!("1 15 {} 43 9000 2000 0 {} 30", alias.manage.wire(), caps.manage.wire());
    assert_eq!(ask(&mut raw, &past), ["-19"]);
    let incr = format!("1 15 {} 41 1 {} 30", alias.manage.wire(), caps.manage.wire());
    assert_eq!(ask(&mut raw, &incr), ["1"]);
    assert_eq!(ask(&mut raw, &format!("1 15 {} 40 30", alias.manage.wire()))[1], "2");
    let decr = format!("1 15 {} 42 1 {} 30", alias.manage.wire(), caps.manage.wire());
    assert_eq!(ask(&mut raw, &decr), ["1"]);
    assert_eq!(ask(&mut raw, &decr), ["1"]);
    assert_eq!(ask(&mut raw, &format!("1 15 {} 40 30", alias.manage.wire())), ["-4"], "alias gone");
    assert_eq!(ask(&mut raw, &format!("1 8 {} 0 1 30", alias.read.wire())), ["-4"]);
    assert_eq!(load(&mut raw, &caps.read, 0, 10), &data[..10], "master untouched");
    // Whole-allocation alias: appends allowed; bad windows refused; alias keys cannot MANAGE.
    let whole = Caps::parse_reply(&raw.cmd(&format!("1 14 {} 0 0 0 30", caps.manage.wire())))
        .expect("whole");
    store(&mut raw, &whole.write, b"tail");
    assert_eq!(probe(&mut raw, &caps.manage).size, 5004);
    assert_eq!(ask(&mut raw, &format!("1 14 {} 0 20000 0 30", caps.manage.wire())), ["-19"]);
    assert_eq!(ask(&mut raw, &format!("1 14 {} -1 5 0 30", caps.manage.wire())), ["-30"]);
    assert_eq!(ask(&mut raw, &format!("1 14 {} 0 5 99999 30", caps.manage.wire())), ["-28"]);
    assert_eq!(ask(&mut raw, &format!("1 14 {} 0 5 0 30", caps.read.wire())), ["-4"]);
    assert_eq!(ask(&mut raw, &format!("1 9 {} 45 10 30", whole.manage.wire())), ["-4"]);
    // The master's deletion takes its aliases with it.
    assert_eq!(manage_status(&mut raw, &caps.manage, "42 1"), 1);
    assert_eq!(ask(&mut raw, &format!("1 8 {} 0 1 30", whole.read.wire())), ["-4"]);
}

#[test]
fn rename_issues_new_caps_and_retires_the_old_ones() {
    let d = depot();
    let mut raw = conn(&d);
    let caps = allocate(&mut raw, 1000, 600, false);
    store(&mut raw, &caps.write, b"renamed data");
    let reply = raw.cmd(&format!("1 16 {} 30", caps.manage.wire()));
    let new = Caps::parse_reply(&reply).expect("RENAME reply");
    assert_eq!(new.manage.typekey, "3862277");
    assert_eq!(load(&mut raw, &new.read, 0, 12), b"renamed data");
    for old in [&caps.read, &caps.manage] {
        assert_eq!(ask(&mut raw, &format!("1 8 {} 0 1 30", old.wire())), ["-4"]);
    }
    assert_eq!(ask(&mut raw, &format!("1 9 {} 40 3 0 0 0 30", caps.manage.wire())), ["-4"]);
    assert_eq!(ask(&mut raw, &format!("1 16 {} 30", caps.manage.wire())), ["-4"]);
    assert_eq!(ask(&mut raw, &format!("1 16 {} 30", new.read.wire())), ["-4"], "manage key only");
    store(&mut raw, &new.write, b"!");
    assert_eq!(probe(&mut raw, &new.manage).size, 13);
}

#[test]
fn split_carves_free_space_and_merge_gives_it_back() {
    let d = depot();
    let mut raw = conn(&d);
    let caps = allocate(&mut raw, 1 << 20, 600, false);
    store(&mut raw, &caps.write, &pattern(50, 1000));
    let reply = raw.cmd(&format!("1 18 {} 1 1 600 500000 30", caps.manage.wire()));
    let child = Caps::parse_reply(&reply).expect("SPLIT reply");
    // The child takes whole 4 KiB blocks: 123 of them (503 808 bytes) for 500 000.
    assert_eq!(probe(&mut raw, &caps.manage).max_size, (1 << 20) - 503_808);
    let p = probe(&mut raw, &child.manage);
    assert_eq!((p.size, p.max_size, p.read_refs, p.write_refs), (0, 500_000, 1, 0));
    // The child's space reads as zeros and is its own.
    store(&mut raw, &child.write, &pattern(51, 300_000));
    assert_eq!(load(&mut raw, &child.read, 299_990, 10), &pattern(51, 300_000)[299_990..]);
    assert_eq!(
        try_write(&mut raw, &caps.write, (1 << 20) - 503_808, b"x").err().and_then(|f| f.code()),
        Some(-19)
    );
    let mut raw = conn(&d);
    assert_eq!(load(&mut raw, &caps.read, 0, 1000), pattern(50, 1000), "master data kept");
    // Not enough free space past the master's size: −19; bad parameters.
    assert_eq!(ask(&mut raw, &format!("1 18 {} 1 1 600 544000 30", caps.manage.wire())), ["-19"]);
    assert_eq!(ask(&mut raw, &format!("1 18 {} 1 1 600 0 30", caps.manage.wire())), ["-30"]);
    assert_eq!(ask(&mut raw, &format!("1 18 {} 3 1 600 10 30", caps.manage.wire())), ["-21"]);
    assert_eq!(ask(&mut raw, &format!("1 18 {} 1 2 600 10 30", caps.manage.wire())), ["-22"]);
    assert_eq!(ask(&mut raw, &format!("1 18 {} 1 1 600 10 30", caps.write.wire())), ["-4"]);
    // MERGE: the child must have refs 1/0.
    assert_eq!(manage_status(&mut raw, &child.manage, "41 1"), 1);
    let merge = format!("1 19 {} {} 30", caps.manage.wire(), child.manage.wire());
    assert_eq!(ask(&mut raw, &merge), ["-20"]);
    assert_eq!(manage_status(&mut raw, &child.manage, "42 1"), 1);
    assert_eq!(
        ask(&mut raw, &format!("1 19 {} {} 30", caps.manage.wire(), caps.manage.wire())),
        ["-30"]
    );
    // A new allocation goes to the shard with the most free space (the other one, here):
    // on the master's shard it is not adjacent (−30), on another it is not found there (−4).
    let other = allocate(&mut raw, 4096, 600, false);
    let code = if other.manage.port == caps.manage.port { "-30" } else { "-4" };
    assert_eq!(
        ask(&mut raw, &format!("1 19 {} {} 30", caps.manage.wire(), other.manage.wire())),
        [code],
        "not adjacent"
    );
    assert_eq!(ask(&mut raw, &merge), ["1"]);
    assert_eq!(probe(&mut raw, &caps.manage).max_size, 1 << 20);
    assert_eq!(
        ask(&mut raw, &format!("1 9 {} 40 3 0 0 0 30", child.manage.wire())),
        ["-4"],
        "child gone"
    );
    // The returned space is zeros again and writable by the master.
    assert_eq!(load_after_grow(&mut raw, &caps), vec![0u8; 16]);
    // SPLIT_ALLOCATE_CHKSUM gives the child disk digests.
    let reply = raw.cmd(&format!("1 30 3 8192 {} 1 1 600 20000 30", caps.manage.wire()));
    let child = Caps::parse_reply(&reply).expect("SPLIT_CHKSUM reply");
    store(&mut raw, &child.write, b"digested");
    assert_eq!(
        ask(&mut raw, &format!("1 31 {} 1 30", child.manage.wire())),
        ["1", "3", "20", "8192", "1", "20"]
    );
}

/// Writes the master up to just past where the child was, then reads 16 bytes of the space
/// the child gave back.
fn load_after_grow(raw: &mut Raw, caps: &Caps) -> Vec<u8> {
    write(raw, &caps.write, 900_000, b"z");
    load(raw, &caps.read, 800_000, 16)
}

#[test]
fn extended_state_survives_a_restart() {
    let mut d = depot();
    let mut raw = conn(&d);
    let caps = try_allocate_line(&mut raw, "1 29 1 8192 1 2 1 600 100000 30").expect("alloc");
    store(&mut raw, &caps.write, &pattern(60, 50_000));
    let alias = Caps::parse_reply(&raw.cmd(&format!("1 14 {} 10 20 0 30", caps.manage.wire())))
        .expect("alias");
    let renamed =
        Caps::parse_reply(&raw.cmd(&format!("1 16 {} 30", caps.manage.wire()))).expect("rename");
    let child =
        Caps::parse_reply(&raw.cmd(&format!("1 18 {} 2 1 600 40000 30", renamed.manage.wire())))
            .expect("split");
    drop(raw);
    d.kill9();
    d.restart();
    let mut raw = conn(&d);
    assert_eq!(load(&mut raw, &alias.read, 10, 20), &pattern(60, 50_000)[10..30]);
    assert_eq!(ask(&mut raw, &format!("1 8 {} 0 1 30", caps.read.wire())), ["-4"]);
    assert_eq!(load(&mut raw, &renamed.read, 0, 5), &pattern(60, 50_000)[..5]);
    assert_eq!(probe(&mut raw, &child.manage).max_size, 40_000);
    assert_eq!(probe(&mut raw, &renamed.manage).max_size, 60_000);
    raw.send(format!("1 31 {} 0 30\n", renamed.manage.wire()).as_bytes());
    assert_eq!(tokens(&raw.line()), ["1", "1", "32", "8192", "7", "224"]);
    raw.read_exact(224);
    assert_eq!(ask(&mut raw, &format!("1 32 {} 0 30", renamed.manage.wire())), ["1", "0"]);
}
