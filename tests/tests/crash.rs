//! Crash consistency: `kill -9` the real depot at random moments while 2-4 clients allocate and
//! store, restart it on the same port, and check that every acknowledged write is still there,
//! byte for byte.
//!
//! A write counts as acknowledged only once its final reply arrived: `1 <caps>` for ALLOCATE
//! (an allocation is a journal write too), `1 <n>` for STORE and WRITE. Each acknowledged data
//! write is remembered by offset, length and CRC-32, never by its bytes. After each restart the
//! allocations of the last two cycles are checked (so each survives two crashes), then those
//! of the older cycle are deleted to keep the depot's footprint bounded however many cycles
//! run. A missing allocation or a LOAD answering an error for acknowledged bytes is *lost*;
//! bytes that come back different are a *bad block served*. Both must be 0.
//!
//! `CRASH_SEED` replays the sizes, choices and kill delays; `CRASH_CYCLES` (default 20) sets
//! the length of the campaign.

use std::net::SocketAddr;
use std::thread;
use std::time::{Duration, Instant};

use ibp_tests::*;

/// Largest single STORE/WRITE.
const MAX_WRITE_BYTES: u64 = 300 * 1024;
/// Bytes one client thread writes per cycle at most (bounds the footprint and the check time).
const MAX_BYTES_PER_THREAD: u64 = 6 << 20;
/// Operations one client thread attempts per cycle at most.
const MAX_ALLOCS_PER_THREAD: usize = 400;
/// A client thread gives up after this long even if the depot was not killed.
const THREAD_DEADLINE: Duration = Duration::from_secs(5);
/// Wall-clock budget of the whole campaign (cycles stop early past it, and the test fails).
const CAMPAIGN_BUDGET: Duration = Duration::from_secs(150);

/// One acknowledged allocation and its acknowledged writes.
#[derive(Debug, Clone)]
struct Acked {
    caps: Caps,
    max_size: u64,
    hard: bool,
    /// (offset, length, CRC-32) of each acknowledged STORE/WRITE.
    writes: Vec<(u64, u64, u32)>,
    cycle: u32,
}

impl Acked {
    fn end(&self) -> u64 {
        self.writes.last().map(|(o, l, _)| o + l).unwrap_or(0)
    }
}

#[derive(Debug, Default)]
struct Tally {
    acked_allocs: u64,
    acked_writes: u64,
    acked_bytes: u64,
    lost_allocs: u64,
    lost_writes: u64,
    bad_blocks: u64,
    wrong_metadata: u64,
    refusals: u64,
}

#[test]
fn kill9_during_stores_loses_no_acknowledged_write() {
    let seed = Rng::seed_from_env("CRASH_SEED");
    let cycles: u32 = std::env::var("CRASH_CYCLES")
        .map(|v| v.parse().expect("CRASH_CYCLES is a number"))
        .unwrap_or(20);
    println!("crash: seed {seed} (CRASH_SEED={seed} replays it), {cycles} cycles");
    let mut rng = Rng::new(seed);
    let mut d = Depot::start(DepotOpts { capacity: "512MiB".into(), ..Default::default() });
    let started = Instant::now();
    let mut model: Vec<Acked> = Vec::new();
    let mut t = Tally::default();
    let mut recovery = Vec::new();
    let mut done = 0;

    for cycle in 0..cycles {
        if started.elapsed() > CAMPAIGN_BUDGET {
            break;
        }
        let threads = rng.range(2, 4) as usize;
        let kill_after = Duration::from_millis(rng.range(50, 400));
        let targets: Vec<SocketAddr> =
            (0..d.opts.cores).map(|i| d.shard_addr(i)).chain([d.addr()]).collect();
        let handles: Vec<_> = (0..threads)
            .map(|i| {
                let thread_seed = rng.next_u64();
                let targets = targets.clone();
                thread::spawn(move || client(cycle, i, thread_seed, &targets))
            })
            .collect();
        thread::sleep(kill_after);
        d.kill9();
        for h in handles {
            let (acked, refusals) = h.join().expect("a client thread panicked");
            t.refusals += refusals;
            for a in &acked {
                t.acked_allocs += 1;
                t.acked_writes += a.writes.len() as u64;
                t.acked_bytes += a.writes.iter().map(|w| w.1).sum::<u64>();
            }
            model.extend(acked);
        }
        d.restart();
        recovery.push(d.last_start);
        verify(&d, &model, &mut t);
        retire(&d, &mut model, cycle);
        done += 1;
    }

    let max_recovery = recovery.iter().max().copied().unwrap_or_default();
    let avg_recovery = recovery.iter().sum::<Duration>() / recovery.len().max(1) as u32;
    println!(
        "{done} cycles, {} acknowledged writes, {} lost, {} bad blocks served",
        t.acked_allocs + t.acked_writes,
        t.lost_allocs + t.lost_writes,
        t.bad_blocks
    );
    println!(
        "crash detail: {} allocations + {} stores/writes ({} MiB) acknowledged; lost {} allocations, {} writes; {} wrong metadata; {} refusals; recovery avg {avg_recovery:?} max {max_recovery:?}; {} bind retries; {:?} total",
        t.acked_allocs,
        t.acked_writes,
        t.acked_bytes >> 20,
        t.lost_allocs,
        t.lost_writes,
        t.wrong_metadata,
        t.refusals,
        d.bind_retries,
        started.elapsed()
    );
    assert_eq!(t.lost_allocs + t.lost_writes, 0, "acknowledged writes lost (seed {seed})");
    assert_eq!(t.bad_blocks, 0, "bad blocks served (seed {seed})");
    assert_eq!(t.wrong_metadata, 0, "allocations came back with other sizes (seed {seed})");
    assert_eq!(done, cycles, "only {done} of {cycles} cycles fit in {CAMPAIGN_BUDGET:?}");
    assert!(t.acked_writes > 0, "no write was acknowledged in {done} cycles: nothing was tested");
}

/// One client: allocates and writes until the connection dies; returns what was acknowledged
/// and how many requests the depot refused with an error code.
fn client(cycle: u32, index: usize, seed: u64, targets: &[SocketAddr]) -> (Vec<Acked>, u64) {
    let mut rng = Rng::new(seed);
    let mut acked: Vec<Acked> = Vec::new();
    let mut refusals = 0;
    let addr = targets[rng.range(0, targets.len() as u64 - 1) as usize];
    let Ok(mut raw) = Raw::try_connect(addr) else { return (acked, refusals) };
    raw.timeout = Duration::from_secs(5);
    let started = Instant::now();
    let mut bytes = 0;
    for _ in 0..MAX_ALLOCS_PER_THREAD {
        if started.elapsed() > THREAD_DEADLINE || bytes > MAX_BYTES_PER_THREAD {
            break;
        }
        let sizes: Vec<u64> = (0..rng.range(1, 3)).map(|_| write_size(&mut rng)).collect();
        let max_size = sizes.iter().sum::<u64>() + rng.range(0, 100);
        let hard = rng.chance(1, 2);
        let caps = match try_allocate(&mut raw, max_size, 3600, hard) {
            Ok(c) => c,
            Err(Fail::Code(_)) => {
                refusals += 1;
                return (acked, refusals);
            }
            Err(_) => return (acked, refusals),
        };
        acked.push(Acked { caps, max_size, hard, writes: Vec::new(), cycle });
        let a = acked.last_mut().expect("just pushed");
        for size in sizes {
            let mut data = vec![0u8; size as usize];
            rng.fill(&mut data);
            let offset = a.end();
            let result = match rng.range(0, 2) {
                0 => try_store(&mut raw, &a.caps.write, &data),
                1 => try_store_pipelined(&mut raw, &a.caps.write, &data),
                _ => try_write(&mut raw, &a.caps.write, offset, &data),
            };
            match result {
                Ok(n) if n == size => a.writes.push((offset, size, crc32(&data))),
                Err(Fail::Code(_)) => {
                    refusals += 1;
                    return (acked, refusals);
                }
                Ok(n) => panic!("thread {index}: acknowledged {n} of {size} bytes"),
                Err(_) => return (acked, refusals),
            }
            bytes += size;
        }
    }
    (acked, refusals)
}

/// 1 B to 300 KiB: a third tiny, a third small, a third large.
fn write_size(rng: &mut Rng) -> u64 {
    match rng.range(0, 2) {
        0 => rng.range(1, 100),
        1 => rng.range(100, 16 * 1024),
        _ => rng.range(16 * 1024, MAX_WRITE_BYTES),
    }
}

/// Checks every allocation in the model: it exists with the right limits, and every
/// acknowledged write loads back with the same CRC.
fn verify(d: &Depot, model: &[Acked], t: &mut Tally) {
    let mut raw = Raw::connect(d.addr());
    for a in model {
        let probe = match try_probe(&mut raw, &a.caps.manage) {
            Ok(p) => p,
            Err(e) => {
                eprintln!("lost allocation (cycle {}): {} -> {e:?}", a.cycle, a.caps.manage);
                t.lost_allocs += 1;
                t.lost_writes += a.writes.len() as u64;
                raw = Raw::connect(d.addr());
                continue;
            }
        };
        let reliability = if a.hard { 2 } else { 1 };
        if probe.max_size != a.max_size || probe.size < a.end() || probe.reliability != reliability
        {
            eprintln!(
                "wrong metadata (cycle {}): {probe:?} for max {} end {}",
                a.cycle,
                a.max_size,
                a.end()
            );
            t.wrong_metadata += 1;
        }
        for &(offset, len, crc) in &a.writes {
            match try_load(&mut raw, &a.caps.read, offset, len) {
                Ok(bytes) if crc32(&bytes) == crc => {}
                Ok(_) => {
                    eprintln!("bad block (cycle {}): {} @{offset}+{len}", a.cycle, a.caps.read);
                    t.bad_blocks += 1;
                }
                Err(e) => {
                    eprintln!(
                        "lost write (cycle {}): {} @{offset}+{len} -> {}",
                        a.cycle,
                        a.caps.read,
                        short(&format!("{e:?}"))
                    );
                    t.lost_writes += 1;
                    raw = Raw::connect(d.addr());
                }
            }
        }
    }
}

/// Deletes the allocations of cycles before `cycle` (they have survived two crashes), so the
/// depot's footprint stays bounded.
fn retire(d: &Depot, model: &mut Vec<Acked>, cycle: u32) {
    let mut raw = Raw::connect(d.addr());
    model.retain(|a| {
        if a.cycle >= cycle {
            return true;
        }
        // A failure here is not a loss (the bytes were verified); it only leaves space used.
        let code = manage_status(&mut raw, &a.caps.manage, "42 1");
        if code != 1 {
            eprintln!("DECR to delete {} (cycle {}) answered {code}", a.caps.manage, a.cycle);
            raw = Raw::connect(d.addr());
        }
        false
    });
}
