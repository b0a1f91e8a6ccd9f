//! Hostile and broken clients against a real depot: malformed lines, a line over the limit,
//! huge lengths and offsets, unknown commands, wrong/truncated/overlong capabilities, writes
//! past the max size, idle and slowloris connections, connection floods, pipelined floods and
//! clients that vanish mid-transfer.
//!
//! Each input must get a clear IBP error (a negative code, the documented one where the
//! protocol fixes it), and after every case a fresh client must still allocate, store and load
//! correctly. Data stored before the first case must be intact after the last, and the depot's
//! memory must not grow with the lengths clients claim. Prints `inputs tried: N`.

use std::thread;
use std::time::{Duration, Instant};

use ibp_tests::raw::is_close_notice;
use ibp_tests::*;

/// Connections one core accepts in this suite's depot (small, to flood quickly).
const CONN_CAP: usize = 8;
/// How much the depot's RSS may grow over the whole suite.
const RSS_GROWTH_LIMIT_KIB: u64 = 96 * 1024;

type Case = fn(&mut Runner, &Depot);

const CASES: &[(&str, Case)] = &[
    ("malformed_lines", malformed_lines),
    ("odd_values", odd_values),
    ("line_over_limit", line_over_limit),
    ("huge_lengths", huge_lengths),
    ("unknown_commands", unknown_commands),
    ("bad_capabilities", bad_capabilities),
    ("writes_past_max_size", writes_past_max_size),
    ("idle_and_slowloris", idle_and_slowloris),
    ("slow_but_live_transfers", slow_but_live_transfers),
    ("connection_flood_on_a_shard_port", connection_flood_on_a_shard_port),
    ("connection_flood_on_the_base_port", connection_flood_on_the_base_port),
    ("pipelined_flood", pipelined_flood),
    ("vanishing_clients", vanishing_clients),
];

/// Cases that fail because of a depot bug (name, what).
const KNOWN_BUGS: &[(&str, &str)] = &[];

fn suite_depot() -> Depot {
    Depot::start(DepotOpts { max_connections_per_core: CONN_CAP, ..Default::default() })
}

#[test]
fn bad_input() {
    let depot = suite_depot();
    // Data that must survive everything below.
    let keep = pattern(1, 200_000);
    let mut raw = Raw::connect(depot.addr());
    let kept = allocate(&mut raw, keep.len() as u64, 3600, true);
    store(&mut raw, &kept.write, &keep);
    drop(raw);
    let rss_before = depot.rss_kib().expect("the depot's RSS is readable");

    let mut r = Runner::new();
    for (i, (name, case)) in CASES.iter().enumerate() {
        if KNOWN_BUGS.iter().any(|(n, _)| n == name) {
            println!("case {name}: skipped (known depot bug)");
            continue;
        }
        r.case(name, |r| {
            case(r, &depot);
            sanity(&depot, 100 + i as u64);
        });
    }
    let back = load(&mut Raw::connect(depot.addr()), &kept.read, 0, keep.len() as u64);
    let lost = back.iter().zip(&keep).filter(|(a, b)| a != b).count();
    let rss_after = depot.rss_kib().expect("the depot is still running");
    println!(
        "bad input: inputs tried: {}; {} cases ok, {} failed; kept bytes lost: {lost}; depot RSS {} -> {} KiB",
        r.counter,
        r.passed,
        r.failed.len(),
        rss_before,
        rss_after
    );
    r.finish("bad_input");
    assert_eq!(lost, 0, "bytes stored before the hostile clients changed");
    assert!(
        rss_after < rss_before + RSS_GROWTH_LIMIT_KIB,
        "depot RSS grew from {rss_before} KiB to {rss_after} KiB"
    );
}

// ---------------------------------------------------------------------------------------------
// Helpers

fn conn(d: &Depot) -> Raw {
    Raw::connect(d.addr())
}

/// Sends raw `bytes` on a fresh connection and returns the first reply line.
fn reply_to(r: &mut Runner, d: &Depot, bytes: &[u8]) -> (Raw, String) {
    r.tried(1);
    let mut raw = conn(d);
    raw.send(bytes);
    let line = raw.line();
    (raw, line)
}

/// The reply must be exactly `want`, then `-66 <secs>` and a close.
fn expect_error_and_close(r: &mut Runner, d: &Depot, bytes: &[u8], want: i64) {
    let (mut raw, line) = reply_to(r, d, bytes);
    let shown = String::from_utf8_lossy(bytes);
    assert_eq!(
        tokens(&line),
        [want.to_string()],
        "{:?} answered {line:?}, want `{want} `",
        short(&shown)
    );
    raw.expect_close_notice();
}

/// The reply must be exactly `want` (the connection's fate is not checked).
fn expect_error(r: &mut Runner, d: &Depot, line: &str, want: i64) {
    let (_, reply) = reply_to(r, d, format!("{line}\n").as_bytes());
    assert_eq!(
        tokens(&reply),
        [want.to_string()],
        "{:?} answered {reply:?}, want `{want} `",
        short(line)
    );
}

/// The reply must be a single negative code among `allowed`.
fn expect_one_of(r: &mut Runner, d: &Depot, line: &str, allowed: &[i64]) -> i64 {
    let (_, reply) = reply_to(r, d, format!("{line}\n").as_bytes());
    let code = status_of(&reply);
    assert!(
        tokens(&reply).len() == 1 && allowed.contains(&code),
        "{:?} answered {reply:?}, want one of {allowed:?}",
        short(line)
    );
    code
}

/// An allocation with `data` stored, for the cases that need a live capability.
fn live(d: &Depot, max: u64, data: &[u8]) -> Caps {
    let mut raw = conn(d);
    let caps = allocate(&mut raw, max, 600, true);
    if !data.is_empty() {
        store(&mut raw, &caps.write, data);
    }
    caps
}

fn assert_intact(d: &Depot, caps: &Caps, data: &[u8]) {
    let mut raw = conn(d);
    let p = probe(&mut raw, &caps.manage);
    assert_eq!(p.size, data.len() as u64, "size changed by refused requests: {p:?}");
    assert!(load(&mut raw, &caps.read, 0, p.size) == data, "contents changed by refused requests");
}

// ---------------------------------------------------------------------------------------------
// Cases

fn malformed_lines(r: &mut Runner, d: &Depot) {
    let lines: &[&[u8]] = &[
        b"\n",
        b" \n",
        b"hello\n",
        b"1\n",
        b"1 1\n",
        b"1 8\n",
        b"1 2 1#key\n",
        b"x 1 1 2 1 60 10 30\n",
        b"1 x 30\n",
        b"1 1 1 2 1 60 abc 30\n",
        b"1 1 1 2 x 60 10 30\n",
        b"1 1 1 2 1 sixty 10 30\n",
        b"1 9 1#k 0\n",
        b"1 8 1#k 0 0 x 5 30\n",
        b"\x00\x01\x02\xff\xfe\n",
        b"1 4\n",
    ];
    for line in lines {
        expect_error_and_close(r, d, line, -21);
    }
}

fn odd_values(r: &mut Runner, d: &Depot) {
    let caps = live(d, 100, b"odd");
    let (rd, m) = (caps.read.wire(), caps.manage.wire());
    let any = [-4, -19, -20, -21, -22, -25, -27, -30, -43, -45, -50];
    for line in [
        "1 1 1 2 1 600 -5 30".to_string(),
        "1 1 1 2 1 -7 100 30".to_string(),
        "-1 4 3 30".to_string(),
        "1 -1 30".to_string(),
        "1 99999999999999999999999 30".to_string(),
        "99999999999999999999 4 3 30".to_string(),
        "1 4 9 30".to_string(),
        format!("1 8 {rd} -1 2 30"),
        format!("1 8 {rd} 0 -2 30"),
        format!("1 9 {m} 99 30"),
        format!("1 9 {m} 41 7 30"),
        format!("1 9 {m} 42 0 30"),
        format!("1 9 {m} 43 3 -5 -1 -1 30"),
        format!("1 9 {m} 43 3 10 -1 7 30"),
        format!("1 9 {m} 45 -1 30"),
    ] {
        expect_one_of(r, d, &line, &any);
    }
    assert_intact(d, &caps, b"odd");
    assert_eq!(probe(&mut conn(d), &caps.manage).read_refs, 1, "refcount unchanged");
}

fn line_over_limit(r: &mut Runner, d: &Depot) {
    // Just over 200 KiB, no newline: -21 and a close.
    let mut raw = conn(d);
    r.tried(1);
    let mut line = b"1 4 3 ".to_vec();
    line.resize(200 * 1024 + 100, b'7');
    let _ = raw.try_send(&line);
    let reply = raw.try_line();
    assert!(
        matches!(&reply, Ok(l) if tokens(l) == ["-21"]),
        "a line over 200 KiB answered {reply:?}, want -21"
    );
    let rest = raw.expect_closed();
    let rest = String::from_utf8_lossy(&rest);
    assert!(rest.is_empty() || is_close_notice(rest.trim_end()), "after -21: {rest:?}");

    // 8 MiB of spaces and digits, sent as fast as possible: the depot must close, not buffer.
    let mut raw = conn(d);
    r.tried(1);
    let chunk = vec![b' '; 64 * 1024];
    let started = Instant::now();
    let mut sent = 0usize;
    while sent < 8 << 20 && started.elapsed() < Duration::from_secs(10) {
        if raw.try_send(&chunk).is_err() {
            break;
        }
        sent += chunk.len();
    }
    assert!(raw.closed_within(Duration::from_secs(5)), "still open after {sent} bytes of one line");
}

fn huge_lengths(r: &mut Runner, d: &Depot) {
    let caps = live(d, 1024, b"small");
    let (rd, w) = (caps.read.wire(), caps.write.wire());
    let rss_before = d.rss_kib().expect("RSS");
    // STORE/WRITE past the max size: -19, then close (the payload cannot be trusted).
    // Offsets and lengths are signed 64-bit on the wire (ACCRE), so values from 2^63 up may
    // also be refused as malformed (-21); either way the connection closes.
    let (fits, beyond) = (&[-19][..], &[-19, -21][..]);
    for (line, allowed) in [
        (format!("1 2 {w} 4611686018427387904 30"), fits),
        (format!("1 13 {w} 9223372036854775807 10 30"), fits),
        (format!("1 13 {w} 0 4611686018427387904 30"), fits),
        (format!("1 13 {w} 4611686018427387904 4611686018427387904 30"), fits),
        (format!("0 2 {w} 1020 30"), fits),
        (format!("1 2 {w} 18446744073709551615 30"), beyond),
        (format!("1 13 {w} 18446744073709551615 1 30"), beyond),
        (format!("1 13 {w} 1 9223372036854775808 30"), beyond),
    ] {
        let (mut raw, reply) = reply_to(r, d, format!("{line}\n").as_bytes());
        let code = status_of(&reply);
        assert!(
            tokens(&reply).len() == 1 && allowed.contains(&code),
            "{} answered {reply:?}, want one of {allowed:?}",
            short(&line)
        );
        raw.expect_close_notice();
    }
    // Numbers that do not fit in 64 bits are malformed.
    expect_error_and_close(r, d, format!("1 2 {w} 18446744073709551616 30\n").as_bytes(), -21);
    // LOAD past the size: -19, and the connection stays open.
    let mut raw = conn(d);
    for line in [
        format!("1 8 {rd} 0 4611686018427387904 30"),
        format!("1 8 {rd} 9223372036854775807 1 30"),
        format!("1 8 {rd} 4611686018427387904 4611686018427387904 30"),
        format!("1 8 {rd} 4 6 30"),
    ] {
        r.tried(1);
        let reply = raw.cmd(&line);
        assert_eq!(tokens(&reply), ["-19"], "{line:?} answered {reply:?}");
    }
    for line in [
        format!("1 8 {rd} 9223372036854775808 1 30"),
        format!("1 8 {rd} 4 18446744073709551615 30"),
    ] {
        expect_one_of(r, d, &line, &[-19, -21]);
    }
    assert_eq!(load(&mut raw, &caps.read, 0, 5), b"small", "the connection stays open after -19");
    expect_error(r, d, "1 1 1 2 1 600 4611686018427387904 30", -45);
    expect_one_of(r, d, "1 1 1 2 1 600 18446744073709551615 30", &[-45, -21]);
    expect_one_of(r, d, "1 1 1 2 1 600 18446744073709551616 30", &[-45, -21]);
    let rss_after = d.rss_kib().expect("RSS");
    assert!(
        rss_after < rss_before + 32 * 1024,
        "claimed lengths grew the depot from {rss_before} to {rss_after} KiB"
    );
    assert_intact(d, &caps, b"small");
}

fn unknown_commands(r: &mut Runner, d: &Depot) {
    // Numbers no IBP depot assigns, and LoCI-only commands (DELIVER, REMOTE_STORE, SEND_BU,
    // CT_COPY, NFU) that ACCRE does not have.
    for n in [0u64, 3, 7, 10, 11, 12, 37, 50, 77, 89, 101, 255, 65_536, 4_294_967_296] {
        expect_error(r, d, &format!("1 {n} 1 2 3 30"), -43);
        expect_error(r, d, &format!("0 {n} 30"), -43);
    }
}

fn bad_capabilities(r: &mut Runner, d: &Depot) {
    let caps = live(d, 100, b"secret");
    let key = caps.read.key.clone();
    let mut flipped = key.clone().into_bytes();
    let last = flipped.len() - 1;
    flipped[last] = if flipped[last] == b'A' { b'B' } else { b'A' };
    let flipped = String::from_utf8(flipped).expect("ascii");
    let garbage = "Z".repeat(key.len());
    let tk = &caps.read.typekey;
    // Well-formed keys that are not this allocation's key for this right: exactly -4.
    let exact_4 = [
        format!("1#{garbage} {tk}"),
        format!("1#{} {tk}", &key[..key.len() / 2]),
        format!("1#{} {tk}", &key[..key.len() - 1]),
        format!("1#{key}AAAA {tk}"),
        format!("1#{key}{} {tk}", "A".repeat(200)),
        format!("1#{flipped} {tk}"),
        format!("1#{} {tk}", caps.write.key),
        format!("1#{} {tk}", caps.manage.key),
        format!("1#{} {tk}", key.to_lowercase()),
    ];
    for cap in &exact_4 {
        expect_error(r, d, &format!("1 8 {cap} 0 6 30"), -4);
    }
    // Keys no depot could have issued (too long for any key, a `/`, control or non-ASCII
    // bytes), or no `RID#`: refused as not found, malformed, or wrong capability format.
    let malformed = [-4, -11, -21, -50];
    for cap in [
        format!("1#{key}{} {tk}", "A".repeat(10_000)),
        format!("1#{}/x {tk}", &key[..key.len() - 2]),
        format!("1#{} {tk}", "!".repeat(key.len())),
        format!("1#{}\u{7} {tk}", &key[..key.len() - 1]),
        format!("9#{key} {tk}"),
        format!("#{key} {tk}"),
        format!("1# {tk}"),
        format!("1#{key}"),
        format!("{}#{key} {tk}", "1".repeat(300)),
    ] {
        expect_one_of(r, d, &format!("1 8 {cap} 0 6 30"), &malformed);
    }
    // A key without `RID#` means the default resource to LoCI; ACCRE refuses it. Either is
    // fine, as long as a success serves the right bytes.
    r.tried(1);
    let mut raw = conn(d);
    let reply = raw.cmd(&format!("1 8 {key} {tk} 0 6 30"));
    if status_of(&reply) == 1 {
        assert_eq!(tokens(&reply), ["1", "6"], "a key without RID#");
        assert_eq!(raw.read_exact(6), b"secret");
    } else {
        assert!(malformed.contains(&status_of(&reply)), "a key without RID# answered {reply:?}");
    }
    // The typekey is ignored (ACCRE), however odd.
    r.tried(1);
    let mut raw = conn(d);
    let reply = raw.cmd(&format!("1 8 1#{key} 99999999999999999999999 0 6 30"));
    assert_eq!(tokens(&reply), ["1", "6"], "an odd typekey with the right key");
    assert_eq!(raw.read_exact(6), b"secret");
    let mut line = b"1 8 1#".to_vec();
    line.extend_from_slice(&[0xff; 36]);
    line.extend_from_slice(b" 0 0 6 30\n");
    let (_, reply) = reply_to(r, d, &line);
    assert!(malformed.contains(&status_of(&reply)), "a non-UTF-8 key answered {reply:?}");
    assert_intact(d, &caps, b"secret");
}

fn writes_past_max_size(r: &mut Runner, d: &Depot) {
    let caps = live(d, 100, &[5u8; 90]);
    let w = caps.write.wire();
    for line in [
        format!("1 2 {w} 11 30"),
        format!("1 13 {w} 100 1 30"),
        format!("1 13 {w} 99 2 30"),
        format!("1 13 {w} 0 101 30"),
    ] {
        expect_error_and_close(r, d, format!("{line}\n").as_bytes(), -19);
    }
    // The same with the payload already on its way (LStore pipelining): refused, closed.
    let mut raw = conn(d);
    r.tried(1);
    let mut req = format!("1 2 {w} 20 30\n").into_bytes();
    req.extend_from_slice(&[9u8; 20]);
    raw.send(&req);
    match raw.try_line() {
        Ok(l) => assert_eq!(tokens(&l), ["-19"], "pipelined STORE past max answered {l:?}"),
        Err(e) => panic!("pipelined STORE past max: no -19 ({e:?})"),
    }
    assert!(raw.closed_within(Duration::from_secs(5)), "open after a refused pipelined STORE");
    assert_intact(d, &caps, &[5u8; 90]);
    let mut raw = conn(d);
    store(&mut raw, &caps.write, &[6u8; 10]);
    assert_eq!(probe(&mut raw, &caps.manage).size, 100, "exactly max size still fits");
}

fn idle_and_slowloris(r: &mut Runner, d: &Depot) {
    let idle = d.addr();
    r.tried(3);
    let silent = thread::spawn(move || {
        let mut raw = Raw::connect(idle);
        raw.timeout = Duration::from_secs(10);
        let started = Instant::now();
        let line = raw.line();
        let waited = started.elapsed();
        assert!(is_close_notice(&line), "silent client got {line:?}, want -66");
        assert!(
            waited >= Duration::from_millis(2500),
            "silent client closed after {waited:?} (< 3 s)"
        );
        assert!(raw.expect_closed().is_empty(), "bytes after -66");
    });
    let half = thread::spawn(move || {
        let mut raw = Raw::connect(idle);
        raw.timeout = Duration::from_secs(10);
        raw.send(b"1 4 ");
        let line = raw.line();
        assert!(is_close_notice(&line), "half-line client got {line:?}, want -66");
        assert!(raw.expect_closed().is_empty(), "bytes after -66");
    });
    let slow = thread::spawn(move || {
        let mut raw = Raw::connect(idle);
        let started = Instant::now();
        let mut sent = 0;
        // One byte of a never-ending line every 200 ms, for at most 15 s.
        while started.elapsed() < Duration::from_secs(15) {
            if raw.try_send(b"1").is_err() {
                break;
            }
            sent += 1;
            if raw.closed_within(Duration::from_millis(200)) {
                break;
            }
        }
        let took = started.elapsed();
        assert!(
            took < Duration::from_secs(10),
            "slowloris ({sent} bytes) still connected after {took:?}"
        );
        let said = raw.buffered();
        assert!(
            said.is_empty() || said.starts_with("-66 ") || said.starts_with("-21 "),
            "slowloris was told {said:?}"
        );
        took
    });
    let took = slow.join();
    for (name, handle) in [("silent", silent), ("half-line", half)] {
        if let Err(e) = handle.join() {
            eprintln!("the {name} client failed");
            std::panic::resume_unwind(e);
        }
    }
    let took = took.unwrap_or_else(|e| std::panic::resume_unwind(e));
    println!("slowloris closed after {took:?}");
}

/// A legitimate slow client is not idle: a 12 MiB STORE and a 12 MiB LOAD paced at about
/// 3 MB/s each take longer than the 3 s idle timeout and must complete.
fn slow_but_live_transfers(r: &mut Runner, d: &Depot) {
    const N: usize = 12 << 20;
    const CHUNK: usize = 256 * 1024;
    const PAUSE: Duration = Duration::from_millis(80);
    r.tried(2);
    let data = pattern(77, N);
    let mut raw = conn(d);
    let up = allocate(&mut raw, N as u64, 600, true);
    let down = allocate(&mut raw, N as u64, 600, true);
    store(&mut raw, &down.write, &data);
    let addr = d.addr();
    let upload = {
        let data = data.clone();
        thread::spawn(move || {
            let mut raw = Raw::connect(addr);
            raw.send(format!("1 2 {} {N} 30\n", up.write.wire()).as_bytes());
            assert_eq!(tokens(&raw.line()), ["1"], "slow STORE ack");
            let started = Instant::now();
            for chunk in data.chunks(CHUNK) {
                raw.send(chunk);
                thread::sleep(PAUSE);
            }
            assert_eq!(tokens(&raw.line()), ["1".to_string(), N.to_string()], "slow STORE done");
            let took = started.elapsed();
            assert!(load(&mut raw, &up.read, 0, N as u64) == data, "slow STORE stored other bytes");
            took
        })
    };
    let mut raw = conn(d);
    raw.send(format!("1 8 {} 0 {N} 30\n", down.read.wire()).as_bytes());
    assert_eq!(tokens(&raw.line()), ["1".to_string(), N.to_string()], "slow LOAD header");
    let started = Instant::now();
    let mut got = Vec::with_capacity(N);
    while got.len() < N {
        got.extend(raw.read_exact(CHUNK.min(N - got.len())));
        thread::sleep(PAUSE);
    }
    let down_took = started.elapsed();
    assert!(got == data, "slow LOAD returned other bytes");
    let up_took = upload.join().unwrap_or_else(|e| std::panic::resume_unwind(e));
    assert!(up_took > Duration::from_secs(3) && down_took > Duration::from_secs(3), "transfers were not slower than the idle timeout ({up_took:?}, {down_took:?}): nothing tested");
    println!("slow transfers: 12 MiB up in {up_took:?}, 12 MiB down in {down_took:?}");
}

/// Opens `n` connections to `addr` and sorts them into rejected (got `-66` and a close within
/// `wait`) and accepted (still open, nothing received).
fn flood(addr: std::net::SocketAddr, n: usize, wait: Duration) -> (Vec<Raw>, usize) {
    let mut conns: Vec<Raw> = (0..n).map(|_| Raw::connect(addr)).collect();
    thread::sleep(wait);
    let mut accepted = Vec::new();
    let mut rejected = 0;
    for mut raw in conns.drain(..) {
        raw.timeout = Duration::from_millis(50);
        match raw.try_line() {
            Ok(line) => {
                assert!(is_close_notice(&line), "a flooding connection got {line:?}");
                raw.timeout = Duration::from_secs(5);
                assert!(raw.expect_closed().is_empty(), "bytes after -66");
                rejected += 1;
            }
            Err(ReadEnd::Timeout) => accepted.push(raw),
            Err(e) => panic!("a flooding connection ended without -66: {e:?}"),
        }
    }
    (accepted, rejected)
}

fn connection_flood_on_a_shard_port(r: &mut Runner, d: &Depot) {
    let excess = 5;
    r.tried((CONN_CAP + excess) as u64);
    let (mut accepted, rejected) =
        flood(d.shard_addr(0), CONN_CAP + excess, Duration::from_millis(300));
    assert_eq!(
        rejected,
        excess,
        "over a cap of {CONN_CAP} per core, {rejected} of {} rejected",
        CONN_CAP + excess
    );
    for raw in accepted.iter_mut() {
        raw.timeout = Duration::from_secs(5);
        assert_eq!(status_of(&raw.cmd("1 4 3 30")), 1, "an accepted connection serves");
    }
    drop(accepted);
    // Slots free up once the depot sees the closes.
    let started = Instant::now();
    loop {
        let (accepted, rejected) = flood(d.shard_addr(0), 1, Duration::from_millis(50));
        if rejected == 0 {
            drop(accepted);
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "shard 0 still full 5 s after the flood left"
        );
    }
}

fn connection_flood_on_the_base_port(r: &mut Runner, d: &Depot) {
    let total = CONN_CAP * d.opts.cores + 6;
    r.tried(total as u64);
    let (accepted, rejected) = flood(d.addr(), total, Duration::from_millis(300));
    assert!(
        rejected >= 6,
        "{total} connections over {} cores with cap {CONN_CAP}: only {rejected} rejected",
        d.opts.cores
    );
    assert!(accepted.len() <= CONN_CAP * d.opts.cores, "{} accepted over the caps", accepted.len());
    drop(accepted);
    thread::sleep(Duration::from_millis(200));
}

fn pipelined_flood(r: &mut Runner, d: &Depot) {
    // 5000 commands in one write; every reply comes back, in order.
    let caps = live(d, 64, b"0123456789");
    let rd = caps.read.wire();
    let n = 5000;
    let mut burst = String::new();
    for i in 0..n {
        if i % 2 == 0 {
            burst += "1 4 3 30\n";
        } else {
            burst += &format!("1 8 {rd} {} 1 30\n", i % 10);
        }
    }
    r.tried(n as u64);
    // The replies (about 40 KB) fit in the socket buffers, so writing all before reading
    // cannot deadlock.
    let mut raw = conn(d);
    raw.send(burst.as_bytes());
    for i in 0..n {
        let line = raw.line();
        if i % 2 == 0 {
            assert_eq!(status_of(&line), 1, "reply {i}: {line:?}");
        } else {
            assert_eq!(tokens(&line), ["1", "1"], "reply {i}: {line:?}");
            let b = raw.read_exact(1);
            assert_eq!(b[0], b'0' + (i % 10) as u8, "reply {i} out of order");
        }
    }
}

fn vanishing_clients(r: &mut Runner, d: &Depot) {
    let big = pattern(3, 512 * 1024);
    let caps = live(d, 2 * big.len() as u64, &big);
    // A client that sends half a STORE payload and closes.
    let mut raw = conn(d);
    r.tried(1);
    raw.send(format!("1 2 {} 1000 30\n", caps.write.wire()).as_bytes());
    assert_eq!(tokens(&raw.line()), ["1"], "STORE ack");
    raw.send(&[1u8; 500]);
    raw.shutdown_write();
    let rest = raw.expect_closed();
    let rest = String::from_utf8_lossy(&rest);
    assert!(!rest.starts_with("1 "), "a STORE cut at 500 of 1000 bytes was acknowledged: {rest:?}");
    // A client that asks for 512 KiB and closes without reading.
    for _ in 0..5 {
        r.tried(1);
        let mut raw = conn(d);
        raw.send(format!("1 8 {} 0 {} 30\n", caps.read.wire(), big.len()).as_bytes());
        drop(raw);
    }
    // A client that closes in the middle of a header.
    r.tried(1);
    let mut raw = conn(d);
    raw.send(b"1 1 1 2 1 6");
    drop(raw);
    let back = load(&mut conn(d), &caps.read, 0, big.len() as u64);
    assert!(back == big, "stored bytes changed after vanishing clients");
}
