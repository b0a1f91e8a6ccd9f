//! The client library's calls for the rest of the IBP 1.4 command set (`ibp_client::ext`)
//! against the real `ibp-depot` on loopback: vector I/O in list order, aliases and their
//! windows, RENAME, SPLIT/MERGE, ALLOCATE_CHKSUM with GET/VALIDATE_CHKSUM, checksummed
//! STORE/WRITE/LOAD and vector transfers for every digest, the refusals the library makes
//! itself (wrong capability kinds, overlong vectors, bad checksum specs), and a load whose
//! bytes a proxy damages on the way, which must fail with the bad block's offset.
//!
//! Depots come from the shared harness (`ibp_tests::Depot`): build the binaries first
//! (`cargo build --workspace --bins`). Digests expected from the depot are computed here with
//! the `md-5`/`sha1`/`sha2` crates directly, not with the library's own hashing.

use std::time::Duration;

use md5::Digest as _;

use ibp_client::proto::request::{ChksumSpec, Reliability, IOVEC_MAX};
use ibp_client::proto::{CapKind, Capability, ErrorCode};
use ibp_client::{AllocCaps, Config, Depot, Error};
use ibp_tests::{pattern, Depot as TestDepot, DepotOpts, FlipProxy};

fn config() -> Config {
    Config {
        connect_timeout: Duration::from_secs(5),
        io_timeout: Duration::from_secs(10),
        op_timeout: Duration::from_secs(30),
        ..Config::default()
    }
}

/// A library endpoint for the depot's main port (it serves every shard's capabilities).
fn endpoint(proc: &TestDepot) -> Depot {
    Depot::parse(&proc.addr().to_string(), config()).expect("address")
}

fn alloc(depot: &Depot, size: u64) -> AllocCaps {
    depot.allocate(size, 600, Reliability::Hard, None).expect("allocate")
}

fn spec(cstype: i32, blocksize: i64) -> ChksumSpec {
    ChksumSpec { cstype, blocksize }
}

/// The four digests (DLS `chksum.h` codes) with the network block sizes the depot's raw
/// transcript uses: aligned and not with its chunks, smaller and larger than them.
const NET_SPECS: [(i32, i64); 4] = [(4, 1024), (3, 1000), (1, 65536), (2, 100_000)];

/// Binary digest of `data` for checksum type `cs`, computed without the library.
fn digest(cs: i32, data: &[u8]) -> Vec<u8> {
    match cs {
        1 => sha2::Sha256::digest(data).to_vec(),
        2 => sha2::Sha512::digest(data).to_vec(),
        3 => sha1::Sha1::digest(data).to_vec(),
        4 => md5::Md5::digest(data).to_vec(),
        _ => panic!("checksum type {cs}"),
    }
}

#[track_caller]
fn assert_code<T: std::fmt::Debug>(result: Result<T, Error>, code: ErrorCode) {
    match result {
        Err(Error::Ibp(got)) => assert_eq!(got, code),
        other => panic!("expected depot refusal {}, got {other:?}", code.name()),
    }
}

#[track_caller]
fn assert_wrong_kind<T: std::fmt::Debug>(result: Result<T, Error>, expected: CapKind) {
    match result {
        Err(Error::WrongCapKind { expected: e, .. }) => assert_eq!(e, expected),
        other => panic!("expected WrongCapKind({expected:?}), got {other:?}"),
    }
}

#[track_caller]
fn assert_invalid<T: std::fmt::Debug>(result: Result<T, Error>) {
    assert!(matches!(result, Err(Error::InvalidArgument(_))), "{result:?}");
}

#[test]
fn vector_io_moves_data_in_list_order() {
    let proc = TestDepot::start(DepotOpts::default());
    let depot = endpoint(&proc);
    let caps = alloc(&depot, 300_000);
    let (w, r) = (depot.handle(&caps.write), depot.handle(&caps.read));
    let (a, b, c) = (pattern(1, 70_000), pattern(2, 10), pattern(3, 5));
    // Out of order, across the depot's checksum blocks.
    let spans: [(u64, &[u8]); 3] = [(100_000, &a), (0, &b), (65_530, &c)];
    assert_eq!(w.vec_write(&spans).expect("vec_write"), 70_015);
    assert_eq!(depot.handle(&caps.manage).probe().expect("probe").size, 170_000);
    // Reversed list order comes back in that order; a hole reads as zeros.
    let got = r.vec_read(&[(99_998, 4), (65_530, 5), (0, 10), (100_000, 10)]).expect("vec_read");
    assert_eq!(got, vec![vec![0, 0, a[0], a[1]], c.clone(), b.clone(), a[..10].to_vec()]);
    assert_eq!(r.load(100_000, 70_000).expect("load"), a, "agrees with a plain LOAD");
    // Overlapping spans: the later one wins.
    assert_eq!(w.vec_write(&[(10, b"xxxxxx"), (12, b"YY")]).expect("overlap"), 8);
    assert_eq!(r.load(10, 6).expect("load"), b"xxYYxx");
    // The largest vector the protocol allows.
    let many: Vec<(u64, u64)> = (0..IOVEC_MAX as u64).map(|i| (i % 10, 1)).collect();
    let got = r.vec_read(&many).expect("4096 spans");
    assert_eq!(got.len(), IOVEC_MAX);
    assert!(got
        .iter()
        .enumerate()
        .all(|(i, s)| s[..] == r.load(i as u64 % 10, 1).expect("ld")[..]));
    // Past the size: the depot's code, and the connection pool recovers.
    assert_code(r.vec_read(&[(0, 1), (299_990, 20)]), ErrorCode::WouldExceedLimit);
    assert_eq!(r.vec_read(&[(0, 2)]).expect("after a refusal"), vec![b[..2].to_vec()]);
    // Checksummed forms, every digest: the framing runs over the spans in list order.
    for (cs, bs) in NET_SPECS {
        let (x, y) = (pattern(10 + cs as u64, 700), pattern(20 + cs as u64, 900));
        let n = w.vec_write_chksum(&[(250_000, &x), (200_000, &y)], spec(cs, bs)).expect("vwc");
        assert_eq!(n, 1600);
        let got = r.vec_read_chksum(&[(200_000, 900), (250_000, 700)], spec(cs, bs)).expect("vrc");
        assert_eq!(got, vec![y, x], "digest {cs}");
    }
}

#[test]
fn the_library_refuses_bad_calls_before_sending() {
    let proc = TestDepot::start(DepotOpts::default());
    let caps = alloc(&endpoint(&proc), 100_000);
    // An endpoint where nothing listens: any call that reached the network would be Io.
    let dead = Depot::parse("127.0.0.1:1", config()).expect("address");
    let (r, w, m) = (dead.handle(&caps.read), dead.handle(&caps.write), dead.handle(&caps.manage));
    let md5 = spec(4, 4096);
    assert_wrong_kind(r.vec_write(&[(0, b"x")]), CapKind::Write);
    assert_wrong_kind(w.vec_read(&[(0, 1)]), CapKind::Read);
    assert_wrong_kind(m.vec_read_chksum(&[(0, 1)], md5), CapKind::Read);
    assert_wrong_kind(r.store_chksum(b"x", md5), CapKind::Write);
    assert_wrong_kind(m.write_chksum(0, b"x", md5), CapKind::Write);
    assert_wrong_kind(w.load_chksum(0, 1, md5), CapKind::Read);
    assert_wrong_kind(r.get_chksum(false), CapKind::Manage);
    assert_wrong_kind(w.validate_chksum(false), CapKind::Manage);
    assert_wrong_kind(r.rename(), CapKind::Manage);
    assert_wrong_kind(w.split(10, 60, Reliability::Soft, None), CapKind::Manage);
    assert_wrong_kind(r.merge(&caps.manage), CapKind::Manage);
    assert_wrong_kind(m.merge(&caps.read), CapKind::Manage);
    assert_wrong_kind(w.alias_allocate(0, 0, 0), CapKind::Manage);
    assert_wrong_kind(r.alias_probe(), CapKind::Manage);
    assert_wrong_kind(m.alias_incr(CapKind::Read, &caps.write), CapKind::Manage);
    assert_wrong_kind(m.alias_decr(CapKind::Read, &caps.read), CapKind::Manage);
    assert_wrong_kind(m.alias_change(0, 1, 0, &caps.read), CapKind::Manage);
    // Vectors: empty, one span too many, lengths that overflow, an offset past i64.
    let overlong: Vec<(u64, u64)> = (0..=IOVEC_MAX as u64).map(|i| (i, 1)).collect();
    assert_invalid(r.vec_read(&overlong));
    assert_invalid(r.vec_read(&[]));
    assert_invalid(r.vec_read(&[(0, u64::MAX), (0, 1)]));
    assert_invalid(r.vec_read(&[(0, i64::MAX as u64), (0, 1)]));
    assert_invalid(r.vec_read(&[(u64::MAX, 1)]));
    let parts: Vec<(u64, &[u8])> = (0..=IOVEC_MAX as u64).map(|i| (i, &b"z"[..])).collect();
    assert_invalid(w.vec_write(&parts));
    // Checksum specs: unknown type, NONE (nothing to frame with), bad block sizes.
    for bad in [spec(9, 4096), spec(0, 4096), spec(4, 0), spec(4, -5), spec(4, (1 << 31) + 1)] {
        assert_invalid(w.store_chksum(b"x", bad));
        assert_invalid(r.load_chksum(0, 1, bad));
    }
    assert_invalid(r.load_chksum(0, u64::MAX, md5));
    // A call that passes the checks does reach the network (and finds nothing there).
    assert!(matches!(r.vec_read(&[(0, 1)]), Err(Error::Io(_) | Error::Timeout { .. })));
}

#[test]
fn checksummed_transfers_and_disk_digests_for_every_digest() {
    let proc = TestDepot::start(DepotOpts::default());
    let depot = endpoint(&proc);
    for (cs, bs) in NET_SPECS {
        let disk = spec(cs, 65536);
        let caps = depot
            .allocate_chksum(1 << 20, 600, Reliability::Hard, None, disk)
            .expect("ALLOCATE_CHKSUM");
        let (w, r, m) =
            (depot.handle(&caps.write), depot.handle(&caps.read), depot.handle(&caps.manage));
        let mut data = pattern(cs as u64, 300_001);
        assert_eq!(w.store_chksum(&data, spec(cs, bs)).expect("store_chksum"), 300_001);
        assert_eq!(r.load(0, 300_001).expect("plain load"), data, "digest {cs}");
        let got = r.load_chksum(17, 250_000, spec(cs, bs)).expect("load_chksum");
        assert!(got == data[17..250_017], "load_chksum {cs} differs");
        let patch = pattern(9, 5000);
        assert_eq!(w.write_chksum(1234, &patch, spec(cs, bs)).expect("write_chksum"), 5000);
        data[1234..6234].copy_from_slice(&patch);
        assert!(r.load_chksum(0, 300_001, spec(cs, bs)).expect("whole") == data);
        assert_eq!(r.load_chksum(5, 0, spec(cs, bs)).expect("empty load"), b"");
        // The disk digests: one per 64 KiB block holding data, the last zero-padded.
        let (info, body) = m.get_chksum(false).expect("get_chksum");
        let dlen = digest(cs, b"").len();
        assert_eq!(
            (info.cstype, info.digest_bytes, info.blocksize, info.nblocks, info.nbytes),
            (cs, dlen as i64, 65536, 5, 5 * dlen as i64)
        );
        let body = body.expect("digests");
        let mut padded = data.clone();
        padded.resize(5 * 65536, 0);
        for (i, block) in padded.chunks(65536).enumerate() {
            assert_eq!(&body[i * dlen..(i + 1) * dlen], &digest(cs, block)[..], "block {i}");
        }
        let (again, none) = m.get_chksum(true).expect("info only");
        assert_eq!((again, none), (info, None));
        assert_eq!(m.validate_chksum(false).expect("validate"), 0);
        assert_eq!(m.validate_chksum(true).expect("validate and correct"), 0);
    }
    // A plain allocation has no digests (-63); a bad disk spec is the depot's to refuse.
    let plain = alloc(&depot, 1000);
    assert_code(depot.handle(&plain.manage).get_chksum(false), ErrorCode::Chksum);
    assert_code(depot.handle(&plain.manage).validate_chksum(false), ErrorCode::Chksum);
    let bad = depot.allocate_chksum(1000, 600, Reliability::Hard, None, spec(3, 1000));
    assert_code(bad, ErrorCode::ChksumBlocksize);
    // A network block larger than the depot's buffers: refused before the ack (-65).
    let w = depot.handle(&plain.write);
    assert_code(w.store_chksum(b"abc", spec(4, 1 << 31)), ErrorCode::ChksumBlocksize);
}

#[test]
fn aliases_open_a_window_managed_through_the_master() {
    let proc = TestDepot::start(DepotOpts::default());
    let depot = endpoint(&proc);
    let caps = alloc(&depot, 10_000);
    let data = pattern(40, 5000);
    depot.handle(&caps.write).store(&data).expect("store");
    let master = depot.handle(&caps.manage);
    let alias = master.alias_allocate(100, 200, 0).expect("alias_allocate");
    let (ar, aw, am) =
        (depot.handle(&alias.read), depot.handle(&alias.write), depot.handle(&alias.manage));
    // Offsets stay the master's; the window bounds reads and writes.
    assert_eq!(ar.load(100, 200).expect("window"), &data[100..300]);
    assert_eq!(
        ar.vec_read(&[(150, 10), (100, 5)]).expect("vec"),
        [&data[150..160], &data[100..105]]
    );
    assert_code(ar.load(99, 10), ErrorCode::WouldExceedLimit);
    assert_code(ar.load(250, 51), ErrorCode::WouldExceedLimit);
    assert_eq!(aw.write(120, b"alias").expect("write in window"), 5);
    assert_eq!(depot.handle(&caps.read).load(120, 5).expect("master sees it"), b"alias");
    assert_code(aw.write(299, b"xy"), ErrorCode::WouldExceedLimit);
    assert_code(aw.store(b"x"), ErrorCode::WouldExceedLimit);
    // PROBE, CHNG through the master, INCR/DECR.
    let p = am.alias_probe().expect("alias_probe");
    assert_eq!((p.read_refs, p.write_refs, p.offset, p.len), (1, 0, 100, 200));
    assert!(p.seconds_left > 590, "{p:?}");
    am.alias_change(0, 50, 60, &caps.manage).expect("alias_change");
    let p = am.alias_probe().expect("alias_probe");
    assert_eq!((p.offset, p.len), (0, 50));
    assert!(p.seconds_left <= 60 && p.seconds_left > 30, "{p:?}");
    assert_eq!(ar.load(0, 50).expect("moved window"), &data[..50]);
    assert_code(am.alias_change(0, 50, 0, &alias.manage), ErrorCode::CapNotFound);
    assert_code(am.alias_change(9000, 2000, 0, &caps.manage), ErrorCode::WouldExceedLimit);
    am.alias_incr(CapKind::Read, &caps.manage).expect("alias_incr");
    assert_eq!(am.alias_probe().expect("probe").read_refs, 2);
    am.alias_decr(CapKind::Read, &caps.manage).expect("alias_decr");
    am.alias_decr(CapKind::Read, &caps.manage).expect("alias_decr to zero");
    assert_code(am.alias_probe(), ErrorCode::CapNotFound);
    assert_code(ar.load(0, 1), ErrorCode::CapNotFound);
    assert_eq!(depot.handle(&caps.read).load(0, 10).expect("master"), &data[..10]);
    // A whole-allocation alias may append.
    let whole = master.alias_allocate(0, 0, 0).expect("whole");
    assert_eq!(depot.handle(&whole.write).store(b"tail").expect("append"), 4);
    assert_eq!(master.probe().expect("probe").size, 5004);
    assert_code(master.alias_allocate(0, 20_000, 0), ErrorCode::WouldExceedLimit);
}

#[test]
fn rename_issues_new_caps_and_retires_the_old_ones() {
    let proc = TestDepot::start(DepotOpts::default());
    let depot = endpoint(&proc);
    let caps = alloc(&depot, 1000);
    depot.handle(&caps.write).store(b"renamed data").expect("store");
    let new = depot.handle(&caps.manage).rename().expect("rename");
    assert_ne!(new.read.key, caps.read.key);
    assert_eq!(depot.handle(&new.read).load(0, 12).expect("new read"), b"renamed data");
    assert_code(depot.handle(&caps.read).load(0, 1), ErrorCode::CapNotFound);
    assert_code(depot.handle(&caps.write).store(b"x"), ErrorCode::CapNotFound);
    assert_code(depot.handle(&caps.manage).probe(), ErrorCode::CapNotFound);
    assert_code(depot.handle(&caps.manage).rename(), ErrorCode::CapNotFound);
    assert_eq!(depot.handle(&new.write).store(b"!").expect("new write"), 1);
    assert_eq!(depot.handle(&new.manage).probe().expect("probe").size, 13);
}

#[test]
fn split_and_merge_give_the_master_its_space_back() {
    let proc = TestDepot::start(DepotOpts::default());
    let depot = endpoint(&proc);
    let caps = alloc(&depot, 1 << 20);
    depot.handle(&caps.write).store(&pattern(50, 1000)).expect("store");
    let master = depot.handle(&caps.manage);
    let child = master.split(500_000, 600, Reliability::Soft, None).expect("split");
    // The child takes whole 4 KiB blocks: 123 of them for 500 000 bytes.
    assert_eq!(master.probe().expect("probe").max_size, (1 << 20) - 503_808);
    let p = depot.handle(&child.manage).probe().expect("child probe");
    assert_eq!(
        (p.size, p.max_size, p.read_refs, p.write_refs, p.reliability),
        (0, 500_000, 1, 0, 1)
    );
    let stored = pattern(51, 300_000);
    depot.handle(&child.write).store(&stored).expect("child store");
    assert_eq!(
        depot.handle(&child.read).load(299_990, 10).expect("child load"),
        &stored[299_990..]
    );
    assert_eq!(depot.handle(&caps.read).load(0, 1000).expect("master"), pattern(50, 1000));
    assert_code(master.split(544_000, 600, Reliability::Soft, None), ErrorCode::WouldExceedLimit);
    assert_code(master.merge(&caps.manage), ErrorCode::InvalidParameter);
    master.merge(&child.manage).expect("merge");
    assert_eq!(master.probe().expect("probe").max_size, 1 << 20, "max size restored");
    assert_code(depot.handle(&child.manage).probe(), ErrorCode::CapNotFound);
    // A checksummed split keeps disk digests for the child.
    let child = master.split(20_000, 600, Reliability::Hard, Some(spec(3, 8192))).expect("split");
    depot.handle(&child.write).store(b"digested").expect("store");
    let (info, body) = depot.handle(&child.manage).get_chksum(false).expect("get_chksum");
    assert_eq!((info.cstype, info.blocksize, info.nblocks), (3, 8192, 1));
    let mut block = b"digested".to_vec();
    block.resize(8192, 0);
    assert_eq!(body.expect("digest"), digest(3, &block));
}

#[test]
fn a_damaged_load_names_the_bad_block() {
    let proc = TestDepot::start(DepotOpts::default());
    let caps = alloc(&endpoint(&proc), 100_000);
    let data = pattern(77, 10_000);
    endpoint(&proc).handle(&caps.write).store(&data).expect("store");
    let md5 = spec(4, 1024);
    let frame = 1024 + 32;
    let load = |flip_at: Option<usize>, cap: &Capability| {
        let proxy = FlipProxy::start(proc.addr(), flip_at);
        let depot = Depot::parse(&proxy.addr().to_string(), config()).expect("address");
        let got = depot.handle(cap).load_chksum(0, 10_000, md5);
        drop(depot);
        got
    };
    // Through an honest proxy the data arrives intact.
    assert!(load(None, &caps.read).expect("clean") == data);
    // A payload byte of block 3, a digest character of block 5, the final partial block.
    for (at, offset) in [(3 * frame + 5, 3072), (5 * frame + 1024 + 7, 5120), (9 * frame + 1, 9216)]
    {
        match load(Some(at), &caps.read) {
            Err(Error::DigestMismatch { offset: got }) => assert_eq!(got, offset, "flip at {at}"),
            other => panic!("flip at {at}: expected DigestMismatch, got {other:?}"),
        }
    }
    let err = load(Some(5), &caps.read).expect_err("damaged");
    assert!(err.to_string().contains("offset 0"), "{err}");
    assert!(!err.to_string().contains(&caps.read.key), "no key in the message");
    // A vector read: offsets count in the spans' bytes, in list order.
    let proxy = FlipProxy::start(proc.addr(), Some(2 * frame + 10));
    let depot = Depot::parse(&proxy.addr().to_string(), config()).expect("address");
    let got = depot.handle(&caps.read).vec_read_chksum(&[(5000, 3000), (0, 3000)], md5);
    assert!(matches!(got, Err(Error::DigestMismatch { offset: 2048 })), "{got:?}");
}
