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
/// Wall-clock budget per cycle (a campaign that runs past cycles x this stops and fails).
const CYCLE_BUDGET: Duration = Duration::from_secs(6);

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
    let cycles = crash_cycles();
    let budget = CYCLE_BUDGET * cycles;
    println!("crash: seed {seed} (CRASH_SEED={seed} replays it), {cycles} cycles");
    let mut rng = Rng::new(seed);
    let mut d = Depot::start(DepotOpts { capacity: "512MiB".into(), ..compacting() });
    let started = Instant::now();
    let mut model: Vec<Acked> = Vec::new();
    let mut t = Tally::default();
    let mut recovery = Vec::new();
    let mut done = 0;

    for cycle in 0..cycles {
        if started.elapsed() > budget {
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
        "crash detail: {} allocations + {} stores/writes ({} MiB) acknowledged; lost {} allocations, {} writes; {} wrong metadata; {} refusals; recovery avg {avg_recovery:?} max {max_recovery:?}; {} bind retries; {} journal compactions; {:?} total",
        t.acked_allocs,
        t.acked_writes,
        t.acked_bytes >> 20,
        t.lost_allocs,
        t.lost_writes,
        t.wrong_metadata,
        t.refusals,
        d.bind_retries,
        compactions(&d),
        started.elapsed()
    );
    assert_eq!(t.lost_allocs + t.lost_writes, 0, "acknowledged writes lost (seed {seed})");
    assert_eq!(t.bad_blocks, 0, "bad blocks served (seed {seed})");
    assert_eq!(t.wrong_metadata, 0, "allocations came back with other sizes (seed {seed})");
    assert_eq!(done, cycles, "only {done} of {cycles} cycles fit in {budget:?}");
    assert!(t.acked_writes > 0, "no write was acknowledged in {done} cycles: nothing was tested");
    assert!(compactions(&d) > 0, "no journal compaction ran: compaction was not tested");
}

/// A depot whose journals are small, so the campaign also crashes it around compactions
/// (the snapshot written into the other journal file), and which logs them.
fn compacting() -> DepotOpts {
    DepotOpts {
        journal_size: Some("1MiB".into()),
        rust_log: "info,ibp_depot::journal=debug".into(),
        ..Default::default()
    }
}

/// Journal compactions logged by `d` over all its runs.
fn compactions(d: &Depot) -> usize {
    d.stderr_log().matches("journal compacted").count()
}

/// `CRASH_CYCLES`, default 20.
fn crash_cycles() -> u32 {
    std::env::var("CRASH_CYCLES")
        .map(|v| v.parse().expect("CRASH_CYCLES is a number"))
        .unwrap_or(20)
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

// ---------------------------------------------------------------------------------------------
// Overwrites: a WRITE in flight at the crash may land, partly land or not land, but it must
// not take the acknowledged bytes around it down with it (a checksum block rewritten in place
// whose new CRC never reached the journal would make its untouched bytes unreadable).

/// Size of each overwrite-test allocation (several checksum blocks).
const OVERWRITE_ALLOC_BYTES: usize = 256 * 1024;
/// Longest overwrite.
const MAX_OVERWRITE_BYTES: u64 = 20_000;
/// The test depot's checksum block (`64KiB`): the unit a torn write can damage.
const OVERWRITE_BLOCK: usize = 64 * 1024;

/// The acknowledged image of one allocation, and the write in flight when the depot died.
#[derive(Debug)]
struct Image {
    caps: Caps,
    bytes: Vec<u8>,
    /// (offset, new bytes) of an unacknowledged WRITE: each of its bytes may be old or new.
    in_flight: Option<(usize, Vec<u8>)>,
}

#[test]
fn kill9_during_overwrites_keeps_acknowledged_bytes() {
    let seed = Rng::seed_from_env("CRASH_SEED");
    let cycles = crash_cycles().div_ceil(2);
    println!("crash overwrites: seed {seed} (CRASH_SEED={seed} replays it), {cycles} cycles");
    let mut rng = Rng::new(seed ^ 0x5EED);
    let mut d = Depot::start(compacting());
    let started = Instant::now();
    let (mut acked, mut in_flight, mut checked) = (0u64, 0u64, 0u64);
    let mut blocks = BlockTally::default();
    for _ in 0..cycles {
        // Allocations filled before the workload starts, so every byte is acknowledged.
        let mut images = Vec::new();
        let mut raw = Raw::connect(d.addr());
        for _ in 0..4 {
            let caps = allocate(&mut raw, OVERWRITE_ALLOC_BYTES as u64, 3600, rng.chance(1, 2));
            let bytes = pattern(rng.next_u64(), OVERWRITE_ALLOC_BYTES);
            store(&mut raw, &caps.write, &bytes);
            images.push(Image { caps, bytes, in_flight: None });
        }
        drop(raw);
        let targets: Vec<SocketAddr> =
            (0..d.opts.cores).map(|i| d.shard_addr(i)).chain([d.addr()]).collect();
        let handles: Vec<_> = images
            .chunks(2)
            .map(|pair| pair.iter().map(|i| (i.caps.clone(), i.bytes.clone())).collect::<Vec<_>>())
            .map(|pair| {
                let thread_seed = rng.next_u64();
                let targets = targets.clone();
                thread::spawn(move || overwriter(pair, thread_seed, &targets))
            })
            .collect();
        thread::sleep(Duration::from_millis(rng.range(50, 400)));
        d.kill9();
        let mut after: Vec<Image> = Vec::new();
        for h in handles {
            let (imgs, n) = h.join().expect("an overwrite thread panicked");
            acked += n;
            after.extend(imgs);
        }
        in_flight += after.iter().filter(|i| i.in_flight.is_some()).count() as u64;
        d.restart();
        for img in &after {
            check_image(&d, img, &mut blocks);
            checked += 1;
            assert_eq!(manage_status(&mut Raw::connect(d.addr()), &img.caps.manage, "42 1"), 1);
        }
    }
    let lost = blocks.clean_lost + blocks.torn_lost;
    println!(
        "{cycles} cycles, {acked} acknowledged writes, {lost} lost, {} bad blocks served",
        blocks.bad
    );
    println!(
        "crash overwrites detail: {checked} allocations of {} KiB ({} blocks) checked, {in_flight} writes in flight at a crash; unreadable blocks: {} under an in-flight write, {} outside; {} journal compactions; {:?} total",
        OVERWRITE_ALLOC_BYTES / 1024,
        blocks.blocks,
        blocks.torn_lost,
        blocks.clean_lost,
        compactions(&d),
        started.elapsed()
    );
    assert_eq!(blocks.bad, 0, "wrong bytes served after a crash during overwrites (seed {seed})");
    assert_eq!(
        blocks.clean_lost, 0,
        "blocks no in-flight write touched became unreadable (seed {seed})"
    );
    assert_eq!(
        blocks.torn_lost, 0,
        "an unacknowledged WRITE made acknowledged bytes of its blocks unreadable (seed {seed})"
    );
    assert!(acked > 0, "no overwrite was acknowledged: nothing was tested");
    assert!(compactions(&d) > 0, "no journal compaction ran: compaction was not tested");
}

/// Overwrites random ranges of its allocations until the connection dies.
fn overwriter(start: Vec<(Caps, Vec<u8>)>, seed: u64, targets: &[SocketAddr]) -> (Vec<Image>, u64) {
    let mut rng = Rng::new(seed);
    let mut images: Vec<Image> =
        start.into_iter().map(|(caps, bytes)| Image { caps, bytes, in_flight: None }).collect();
    let mut acked = 0;
    let addr = targets[rng.range(0, targets.len() as u64 - 1) as usize];
    let Ok(mut raw) = Raw::try_connect(addr) else { return (images, acked) };
    raw.timeout = Duration::from_secs(5);
    let started = Instant::now();
    for _ in 0..10_000 {
        if started.elapsed() > THREAD_DEADLINE {
            break;
        }
        let img = &mut images[rng.range(0, 1) as usize];
        let len = rng.range(1, MAX_OVERWRITE_BYTES) as usize;
        let offset = rng.range(0, (OVERWRITE_ALLOC_BYTES - len) as u64) as usize;
        let mut data = vec![0u8; len];
        rng.fill(&mut data);
        let result = if rng.chance(1, 2) {
            try_write(&mut raw, &img.caps.write, offset as u64, &data)
        } else {
            try_write_pipelined(&mut raw, &img.caps.write, offset as u64, &data)
        };
        match result {
            Ok(n) if n == len as u64 => {
                img.bytes[offset..offset + len].copy_from_slice(&data);
                acked += 1;
            }
            Ok(n) => panic!("WRITE acknowledged {n} of {len} bytes"),
            Err(_) => {
                img.in_flight = Some((offset, data));
                break;
            }
        }
    }
    (images, acked)
}

/// Per-allocation outcome of the overwrite check, counted in checksum blocks.
#[derive(Debug, Default)]
struct BlockTally {
    /// Blocks the in-flight write did not touch that failed to load.
    clean_lost: u64,
    /// Blocks under the in-flight write that failed to load (their other bytes were
    /// acknowledged, so this is loss too: a torn block).
    torn_lost: u64,
    /// Blocks that served a byte that was never written there.
    bad: u64,
    blocks: u64,
}

/// Loads the allocation one checksum block at a time: bytes outside the in-flight write must
/// equal the image, bytes inside it may be old or new.
fn check_image(d: &Depot, img: &Image, tally: &mut BlockTally) {
    let mut raw = Raw::connect(d.addr());
    let flight = img.in_flight.as_ref().map(|(o, b)| (*o, *o + b.len()));
    for start in (0..img.bytes.len()).step_by(OVERWRITE_BLOCK) {
        let end = (start + OVERWRITE_BLOCK).min(img.bytes.len());
        tally.blocks += 1;
        let touched = flight.is_some_and(|(o, e)| o < end && start < e);
        let got = match try_load(&mut raw, &img.caps.read, start as u64, (end - start) as u64) {
            Ok(b) => b,
            Err(e) => {
                eprintln!(
                    "lost: block {start}..{end} of {} ({} the write in flight at {flight:?}): {}",
                    img.caps.read,
                    if touched { "under" } else { "outside" },
                    short(&format!("{e:?}"))
                );
                if touched {
                    tally.torn_lost += 1;
                } else {
                    tally.clean_lost += 1;
                }
                raw = Raw::connect(d.addr());
                continue;
            }
        };
        let wrong = got
            .iter()
            .zip(&img.bytes[start..end])
            .enumerate()
            .filter(|&(i, (&g, &want))| {
                let new = img
                    .in_flight
                    .as_ref()
                    .and_then(|(o, b)| (start + i).checked_sub(*o).and_then(|k| b.get(k)));
                g != want && new != Some(&g)
            })
            .count();
        if wrong > 0 {
            eprintln!(
                "bad: block {start}..{end} of {} serves {wrong} bytes never written there",
                img.caps.read
            );
            tally.bad += 1;
        }
    }
}

/// A WRITE whose header and first half of its payload have arrived when the depot is killed:
/// the blocks it touches still load (old or new bytes inside the write's range).
#[test]
fn kill9_mid_write_payload_keeps_block_readable() {
    let mut d = Depot::start(DepotOpts::default());
    let mut raw = Raw::connect(d.addr());
    let caps = allocate(&mut raw, OVERWRITE_ALLOC_BYTES as u64, 3600, true);
    let old = pattern(1, OVERWRITE_ALLOC_BYTES);
    store(&mut raw, &caps.write, &old);
    let (offset, len) = (70_000usize, 20_000usize);
    let new = pattern(2, len);
    raw.send(format!("1 13 {} {offset} {len} 30\n", caps.write.wire()).as_bytes());
    assert_eq!(tokens(&raw.line()), ["1"], "WRITE ack");
    raw.send(&new[..len / 2]);
    thread::sleep(Duration::from_millis(300));
    d.kill9();
    d.restart();
    let img = Image { caps, bytes: old, in_flight: Some((offset, new)) };
    let mut blocks = BlockTally::default();
    check_image(&d, &img, &mut blocks);
    assert_eq!((blocks.torn_lost, blocks.clean_lost, blocks.bad), (0, 0, 0), "{blocks:?}");
}

/// The torn-block hazard in its simplest form: one 20 000-byte WRITE inside 256 KiB of
/// acknowledged data, fully sent, and the depot killed 0-3 ms later, before its reply. Tried up
/// to 30 times; every block must load each time.
#[test]
fn kill9_right_after_write_payload_keeps_blocks_readable() {
    torn_write_attempts(|raw, caps, attempt| {
        let old = pattern(attempt, OVERWRITE_ALLOC_BYTES);
        store(raw, &caps.write, &old);
        old
    });
}

/// The same over a hole: the allocation holds only its last 4 bytes, so the WRITE lands on
/// blocks that read as zeros (the depot journals only their range, not their bytes, and
/// zeroes them again on replay when the write was torn). Every block must load, as zeros or
/// the new bytes.
#[test]
fn kill9_right_after_write_into_a_hole_keeps_blocks_readable() {
    torn_write_attempts(|raw, caps, attempt| {
        let mut old = vec![0u8; OVERWRITE_ALLOC_BYTES];
        let tail = pattern(attempt, 4);
        write(raw, &caps.write, OVERWRITE_ALLOC_BYTES as u64 - 4, &tail);
        old[OVERWRITE_ALLOC_BYTES - 4..].copy_from_slice(&tail);
        old
    });
}

/// Up to 30 attempts: fill a hard allocation with `fill` (which returns what it holds), send a
/// 20 000-byte WRITE at 70 000 whole, kill the depot 0-3 ms later, restart, check every block.
fn torn_write_attempts(fill: impl Fn(&mut Raw, &Caps, u64) -> Vec<u8>) {
    let mut d = Depot::start(DepotOpts::default());
    let mut rng = Rng::new(7);
    for attempt in 0..30 {
        let mut raw = Raw::connect(d.addr());
        let caps = allocate(&mut raw, OVERWRITE_ALLOC_BYTES as u64, 3600, true);
        let old = fill(&mut raw, &caps, attempt);
        let (offset, len) = (70_000usize, 20_000usize);
        let new = pattern(1000 + attempt, len);
        let mut req = format!("1 13 {} {offset} {len} 30\n", caps.write.wire()).into_bytes();
        req.extend_from_slice(&new);
        raw.send(&req);
        thread::sleep(Duration::from_micros(rng.range(0, 3000)));
        d.kill9();
        let said = String::from_utf8_lossy(&raw.expect_closed()).into_owned();
        d.restart();
        let img = Image { caps, bytes: old, in_flight: Some((offset, new)) };
        let mut blocks = BlockTally::default();
        check_image(&d, &img, &mut blocks);
        assert_eq!(
            (blocks.torn_lost, blocks.clean_lost, blocks.bad),
            (0, 0, 0),
            "attempt {attempt}: `1 13 <wkey> <tk> {offset} {len} 30` + payload, killed before its reply (it had said {said:?}): {blocks:?}"
        );
    }
}
