//! Restarts: the same dir, config, `--cores` and port must bring back every live capability
//! with its bytes, sizes, reference counts and lease, after SIGTERM and after `kill -9`; leases
//! that end (while the depot is down, or after it is back) answer -4 and stay gone.

use std::time::{Duration, Instant};

use ibp_tests::*;

/// What the test expects of one allocation.
struct Tracked {
    caps: Caps,
    data: Vec<u8>,
    max_size: u64,
    refs: (i64, i64),
    reliability: i64,
}

impl Tracked {
    fn verify(&self, d: &Depot, when: &str) {
        let mut raw = Raw::connect(d.addr());
        let p = try_probe(&mut raw, &self.caps.manage)
            .unwrap_or_else(|e| panic!("{when}: PROBE {}: {e:?}", self.caps.manage));
        assert_eq!(
            (p.size, p.max_size, (p.read_refs, p.write_refs), p.reliability),
            (self.data.len() as u64, self.max_size, self.refs, self.reliability),
            "{when}: PROBE {} = {p:?}",
            self.caps.manage
        );
        if !self.data.is_empty() {
            let back = load(&mut raw, &self.caps.read, 0, self.data.len() as u64);
            assert!(back == self.data, "{when}: {} loads different bytes", self.caps.read);
        }
    }
}

fn stores(raw: &mut Raw, t: &mut Tracked, seed: u64, len: usize) {
    let more = pattern(seed, len);
    store(raw, &t.caps.write, &more);
    t.data.extend_from_slice(&more);
}

/// Allocations on every shard (through its own port and the base port) in varied states.
fn populate(d: &Depot) -> Vec<Tracked> {
    let mut out = Vec::new();
    let mut seed = 1;
    let addrs: Vec<_> = (0..d.opts.cores).map(|i| d.shard_addr(i)).chain([d.addr()]).collect();
    for addr in addrs {
        let mut raw = Raw::connect(addr);
        for (size, max, hard) in [
            (0usize, 100u64, true),
            (1, 10, false),
            (100_000, 200_000, true),
            (1 << 20, 1 << 20, false),
        ] {
            let caps = allocate(&mut raw, max, 3600, hard);
            let mut t = Tracked {
                caps,
                data: Vec::new(),
                max_size: max,
                refs: (1, 0),
                reliability: if hard { 2 } else { 1 },
            };
            if size > 0 {
                stores(&mut raw, &mut t, seed, size);
            }
            seed += 1;
            out.push(t);
        }
    }
    // Varied state: a WRITE in the middle, refcounts, a CHNG and a TRUNCATE.
    let mut raw = Raw::connect(d.addr());
    let t = &mut out[2];
    write(&mut raw, &t.caps.write, 70_000, b"written in the middle");
    t.data[70_000..70_021].copy_from_slice(b"written in the middle");
    assert_eq!(manage_status(&mut raw, &out[3].caps.manage, "41 1"), 1);
    assert_eq!(manage_status(&mut raw, &out[3].caps.manage, "41 2"), 1);
    out[3].refs = (2, 1);
    assert_eq!(manage_status(&mut raw, &out[4].caps.manage, "43 3 500 1800 2"), 1);
    out[4].max_size = 500;
    out[4].reliability = 2;
    assert_eq!(manage_status(&mut raw, &out[6].caps.manage, "45 50000"), 1);
    out[6].max_size = 50_000;
    out[6].data.truncate(50_000);
    out
}

#[test]
fn restart_keeps_caps_and_data() {
    let mut d = Depot::start(DepotOpts::default());
    let port = d.port();
    let mut tracked = populate(&d);
    // One allocation deleted before the restart must stay deleted.
    let gone = tracked.pop().expect("populated");
    assert_eq!(manage_status(&mut Raw::connect(d.addr()), &gone.caps.manage, "42 1"), 1);
    for t in &tracked {
        t.verify(&d, "before restart");
    }

    let clean = d.stop();
    d.restart();
    assert_eq!(d.port(), port, "restarted on another port");
    println!("after SIGTERM (exited cleanly: {clean}): back in {:?}", d.last_start);
    for t in &tracked {
        t.verify(&d, "after SIGTERM + restart");
    }
    let mut raw = Raw::connect(d.addr());
    assert_eq!(
        try_probe(&mut raw, &gone.caps.manage).err().and_then(|e| e.code()),
        Some(-4),
        "deleted allocation came back"
    );

    // The caps keep working for writes, and new allocations name the same shard ports.
    for (i, t) in tracked.iter_mut().enumerate() {
        let room = (t.max_size - t.data.len() as u64).min(1000) as usize;
        if room > 0 {
            stores(&mut Raw::connect(d.addr()), t, 1000 + i as u64, room);
        }
    }
    let fresh = allocate(&mut Raw::connect(d.shard_addr(0)), 10, 60, true);
    let ports: Vec<u16> = (0..d.opts.cores).map(|i| d.shard_addr(i).port()).collect();
    assert!(ports.contains(&fresh.read.port), "a new cap names a shard port: {}", fresh.read.port);
    let secs_before: Vec<i64> = tracked
        .iter()
        .map(|t| probe(&mut Raw::connect(d.addr()), &t.caps.manage).secs_left)
        .collect();

    d.kill9();
    d.restart();
    println!("after kill -9: back in {:?} ({} bind retries in all)", d.last_start, d.bind_retries);
    for (t, before) in tracked.iter().zip(secs_before) {
        t.verify(&d, "after kill -9 + restart");
        let now = probe(&mut Raw::connect(d.addr()), &t.caps.manage).secs_left;
        assert!(
            now <= before && now >= before - 30,
            "lease moved from {before} to {now} s across the restart"
        );
    }
    println!("restart: {} allocations verified after SIGTERM and after kill -9", tracked.len());
}

#[test]
fn short_leases_end_across_restarts() {
    let mut d = Depot::start(DepotOpts::default());
    let t0 = Instant::now();
    let mut raw = Raw::connect(d.addr());
    let down = allocate(&mut raw, 100, 2, true);
    let after = allocate(&mut raw, 100, 6, false);
    let long = allocate(&mut raw, 100, 3600, true);
    for c in [&down, &after, &long] {
        store(&mut raw, &c.write, b"lease");
    }
    drop(raw);
    d.kill9();
    // `down` ends while the depot is down.
    sleep_until(t0 + Duration::from_millis(3200));
    d.restart();
    assert_gone(&d, &down, "a 2 s lease, 3 s later (ended while down)");
    let mut raw = Raw::connect(d.addr());
    let p = probe(&mut raw, &after.manage);
    assert!(p.secs_left <= 3, "a 6 s lease has {} s left after 3 s", p.secs_left);
    assert_eq!(load(&mut raw, &after.read, 0, 5), b"lease");
    // `after` ends while the depot is up.
    sleep_until(t0 + Duration::from_millis(7200));
    assert_gone(&d, &after, "a 6 s lease, 7 s later");
    assert_eq!(load(&mut Raw::connect(d.addr()), &long.read, 0, 5), b"lease");
    // Replaying the journal does not bring them back.
    d.kill9();
    d.restart();
    assert_gone(&d, &down, "after a second restart");
    assert_gone(&d, &after, "after a second restart");
    assert_eq!(load(&mut Raw::connect(d.addr()), &long.read, 0, 5), b"lease");
    println!(
        "restart: 2 short leases ended (one while down), 1 long lease intact, in {:?}",
        t0.elapsed()
    );
}

/// Restarting right after `kill -9` should not depend on how fast the kernel tears down the
/// dead process's io_uring (which holds its listening sockets for a while).
#[test]
fn restart_right_after_kill9_binds_at_once() {
    let mut d = Depot::start(DepotOpts::default());
    for i in 0..d.opts.cores {
        let mut raw = Raw::connect(d.shard_addr(i));
        assert_eq!(status_of(&raw.cmd("1 4 3 30")), 1);
    }
    d.kill9();
    d.restart();
    assert_eq!(d.bind_retries, 0, "the restart waited {:?} for its ports", d.last_start);
}

fn sleep_until(t: Instant) {
    let now = Instant::now();
    if t > now {
        std::thread::sleep(t - now);
    }
}

fn assert_gone(d: &Depot, caps: &Caps, what: &str) {
    let probe = try_probe(&mut Raw::connect(d.addr()), &caps.manage).err().and_then(|e| e.code());
    assert_eq!(probe, Some(-4), "{what}: PROBE");
    let load = try_load(&mut Raw::connect(d.addr()), &caps.read, 0, 5).err().and_then(|e| e.code());
    assert_eq!(load, Some(-4), "{what}: LOAD");
    let store =
        try_store(&mut Raw::connect(d.addr()), &caps.write, b"x").err().and_then(|e| e.code());
    assert_eq!(store, Some(-4), "{what}: STORE");
}
