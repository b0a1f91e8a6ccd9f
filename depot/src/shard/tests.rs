//! Shard-level tests on a real io_uring runtime and real O_DIRECT files: expiry through the
//! clock seam, journal compaction and recovery, and storage-fault latching.

use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::AtomicI64;
use std::sync::Arc;

use ibp_io::seam::{ManualClock, SeededEntropy};
use ibp_io::{Runtime, RuntimeConfig};

use super::*;
use crate::config::{Config, FileConfig, Overrides};
use crate::keys::KeyKind;
use crate::store::FaultPlan;
use crate::table::AllocRequest;

struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let mut r = [0u8; 8];
        getrandom::fill(&mut r).expect("random");
        let p = PathBuf::from(format!("/var/tmp/ibp-shard-test-{tag}-{:x}", u64::from_le_bytes(r)));
        std::fs::create_dir_all(&p).expect("temp dir");
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn shared(dir: &Path, journal: &str) -> Shared {
    let text = format!(
        "[depot]\njournal_size = \"{journal}\"\nbuffers_per_core = 8\n[[resource]]\npath = \"{}\"\ncapacity = \"64MiB\"\nmax_duration = \"1h\"\n",
        dir.display()
    );
    let f: FileConfig = toml::from_str(&text).expect("config parses");
    let cfg = Config::resolve(f, &Overrides { cores: Some(1), ..Default::default() })
        .expect("valid config");
    let cfg = Arc::new(cfg);
    Shared {
        secret: DepotSecret([5; 32]),
        all_stats: Arc::new(vec![Arc::new(ShardStats::new(1))]),
        ports: Arc::new(vec![1]),
        max_durations: Arc::new(vec![AtomicI64::new(3600)]),
        cfg,
    }
}

fn runtime() -> Runtime {
    Runtime::new(RuntimeConfig { buffer_count: 8, ..Default::default() }).expect("io_uring runtime")
}

fn open(s: &Shared, clock: &ManualClock) -> Rc<Shard> {
    let (shard, _) = Shard::open(0, s, Rc::new(clock.clone()), Box::new(SeededEntropy::new(7)))
        .expect("shard opens");
    Rc::new(shard)
}

/// Allocates through the table and commits, as ALLOCATE does. Returns (id, read key).
async fn allocate(shard: &Shard, d: Durability, size: u64, duration_s: i64) -> (u64, String) {
    let now = shard.clock.now_unix_s();
    let g = {
        let mut t = shard.table.borrow_mut();
        let mut fill = |b: &mut [u8]| shard.fill_random(b);
        let mut zero = |r: u16, e: Extent| shard.zero_extent(r, e);
        t.allocate(
            AllocRequest { resource: 0, durability: d, duration_s, size, digest: None },
            &shard.secret,
            now,
            &mut fill,
            &mut zero,
        )
        .expect("fits")
    };
    shard.commit(0, &g.records, d == Durability::Hard).await.expect("committed");
    (g.id, g.keys[0].clone())
}

#[test]
fn expiry_through_the_clock_seam_frees_space() {
    let dir = TempDir::new("expiry");
    let s = shared(&dir.0, "1MiB");
    let clock = ManualClock::new(1_000_000);
    runtime().block_on(async {
        let shard = open(&s, &clock);
        ibp_io::spawn(shard.clone().run_committer());
        let free0 = shard.table.borrow().regions[0].free_bytes();
        let (_, key) = allocate(&shard, Durability::Hard, 100_000, 10).await;
        assert!(shard
            .table
            .borrow()
            .find(&shard.secret, KeyKind::Read, &key, clock.now_unix_s())
            .is_ok());
        clock.advance(9);
        assert_eq!(shard.reap_once().await, 0, "not yet expired");
        clock.advance(1);
        assert!(
            shard
                .table
                .borrow()
                .find(&shard.secret, KeyKind::Read, &key, clock.now_unix_s())
                .is_err(),
            "an expired capability is not found even before the reaper runs"
        );
        assert_eq!(shard.reap_once().await, 1);
        assert_eq!(shard.table.borrow().regions[0].free_bytes(), free0, "all space back");
    });
}

#[test]
fn journal_stays_bounded_and_recovers_after_compaction() {
    let dir = TempDir::new("compact");
    let s = shared(&dir.0, "1MiB");
    let clock = ManualClock::new(1_000_000);
    let kept: Vec<(u64, String)> = runtime().block_on(async {
        let shard = open(&s, &clock);
        ibp_io::spawn(shard.clone().run_committer());
        let mut kept = Vec::new();
        let mut compactions = 0;
        let mut last_pos = 0;
        // ~1.5 MiB of records through a 1 MiB journal: it must compact.
        for i in 0..6000u64 {
            let (id, key) = allocate(&shard, Durability::Soft, 64 * 1024, 3600).await;
            let rec =
                shard.table.borrow_mut().apply_data(id, 1000, 0, &[i as u32; 1]).expect("live");
            shard.commit(0, &[rec], false).await.expect("committed");
            if i % 500 == 0 {
                kept.push((id, key));
            } else {
                assert!(shard.delete(id).await.expect("deleted"));
            }
            let pos = shard.journal.file_pos();
            assert!(pos < 1 << 20, "journal bounded at record {i}");
            if pos < last_pos {
                compactions += 1;
            }
            last_pos = pos;
        }
        assert!(compactions >= 1, "the journal was compacted");
        // STATUS reports them on a line of their own, with their latency.
        let text = crate::cmd::status::version_text(&shard);
        let line = text
            .lines()
            .find(|l| l.starts_with("journal compaction: count "))
            .unwrap_or_else(|| panic!("no compaction line in STATUS:\n{text}"));
        let count: usize = line["journal compaction: count ".len()..]
            .split(' ')
            .next()
            .and_then(|n| n.parse().ok())
            .expect("a count");
        assert!(count >= compactions, "{line} (saw {compactions})");
        assert!(line.contains(" errors 0 "), "{line}");
        kept
    });
    runtime().block_on(async {
        let shard = open(&s, &clock);
        assert_eq!(shard.table.borrow().len(), kept.len());
        for (id, key) in &kept {
            let t = shard.table.borrow();
            let a =
                t.find(&shard.secret, KeyKind::Read, key, clock.now_unix_s()).expect("survives");
            assert_eq!((a.id, a.size), (*id, 1000));
        }
    });
}

/// Soft allocations with a size, committed; returns (id, read key) of each.
async fn some_allocations(shard: &Shard, n: u64) -> Vec<(u64, String)> {
    let mut out = Vec::new();
    for i in 0..n {
        let (id, key) = allocate(shard, Durability::Soft, 64 * 1024, 3600).await;
        let rec = shard.table.borrow_mut().apply_data(id, 1000 + i, 0, &[i as u32]).expect("live");
        shard.commit(0, &[rec], false).await.expect("committed");
        out.push((id, key));
    }
    out
}

/// Asserts that exactly `kept` are in the table, each with the size `some_allocations` gave it.
fn assert_table(shard: &Shard, clock: &ManualClock, kept: &[(u64, String)]) {
    let t = shard.table.borrow();
    assert_eq!(t.len(), kept.len());
    for (i, (id, key)) in kept.iter().enumerate() {
        let a = t.find(&shard.secret, KeyKind::Read, key, clock.now_unix_s()).expect("survives");
        assert_eq!((a.id, a.size), (*id, 1000 + i as u64));
    }
}

/// A shard directory with a 1 MiB journal holding `n` committed allocations, the shard closed
/// again: (dir, config, clock, the allocations).
fn closed_shard_with(tag: &str, n: u64) -> (TempDir, Shared, ManualClock, Vec<(u64, String)>) {
    let dir = TempDir::new(tag);
    let s = shared(&dir.0, "1MiB");
    let clock = ManualClock::new(1_000_000);
    let kept = runtime().block_on(async {
        let shard = open(&s, &clock);
        ibp_io::spawn(shard.clone().run_committer());
        some_allocations(&shard, n).await
    });
    (dir, s, clock, kept)
}

/// Reopens the shard and checks that its table holds exactly `kept`.
fn reopen_and_check(s: &Shared, clock: &ManualClock, kept: &[(u64, String)]) {
    runtime().block_on(async { assert_table(&open(s, clock), clock, kept) });
}

/// Appends create/delete pairs until the journal compacts `times` times.
async fn compact_times(shard: &Shard, times: usize) {
    let mut last = shard.journal.file_pos();
    let mut seen = 0;
    for _ in 0..100_000 {
        let (id, _) = allocate(shard, Durability::Soft, 4096, 3600).await;
        assert!(shard.delete(id).await.expect("deleted"));
        let pos = shard.journal.file_pos();
        if pos < last {
            seen += 1;
            if seen == times {
                return;
            }
        }
        last = pos;
    }
    panic!("the journal did not compact {times} times");
}

#[test]
fn a_compaction_cut_short_is_not_replayed_and_its_file_is_cleared() {
    use crate::journal::journal_paths;
    use crate::journal::record::{frame_seed, JOURNAL_MAGIC};
    let (_dir, s, clock, kept) = closed_shard_with("cutshort", 3);
    // What a crash in the middle of a compaction into the other file leaves: a newer header
    // and part of a snapshot, no end marker. Its records (here: every allocation deleted) must
    // not be applied.
    let paths = journal_paths(&s.cfg.meta_dir, 0);
    let mut img = Vec::new();
    Record::Header { magic: JOURNAL_MAGIC, shard: 0, shards: 1, generation: 9 }
        .encode_framed(&mut img);
    for (id, _) in &kept {
        Record::Delete { id: *id }.encode_framed_seeded(&mut img, frame_seed(9));
    }
    std::fs::write(&paths[1], &img).expect("write the cut-short file");
    runtime().block_on(async {
        let shard = open(&s, &clock);
        assert_table(&shard, &clock, &kept);
        let other = std::fs::read(&paths[1]).expect("read");
        assert!(other.iter().all(|&b| b == 0), "the cut-short compaction is cleared");
        // The next compaction goes past the cut-short generation and is replayed.
        ibp_io::spawn(shard.clone().run_committer());
        compact_times(&shard, 1).await;
    });
    reopen_and_check(&s, &clock, &kept);
}

#[test]
fn a_journal_of_an_earlier_version_replays_and_then_compacts() {
    use crate::journal::journal_paths;
    use crate::journal::record::scan;
    let (_dir, s, clock, kept) = closed_shard_with("gen0", 4);
    // Rewrite the journal as an earlier version wrote it: one file, a header without a
    // generation, plain CRCs, no snapshot end marker.
    let paths = journal_paths(&s.cfg.meta_dir, 0);
    let image = std::fs::read(&paths[0]).expect("read");
    let found = scan(&image);
    assert!(found.complete && found.generation >= 1 && found.torn.is_none());
    let mut old = Vec::new();
    for r in found.records {
        let r = match r {
            Record::Header { magic, shard, shards, .. } => {
                Record::Header { magic, shard, shards, generation: 0 }
            }
            r => r,
        };
        r.encode_framed(&mut old);
    }
    old.resize(image.len(), 0);
    std::fs::write(&paths[0], &old).expect("write");
    std::fs::remove_file(&paths[1]).expect("remove the second file");
    runtime().block_on(async {
        let shard = open(&s, &clock);
        assert_table(&shard, &clock, &kept);
        ibp_io::spawn(shard.clone().run_committer());
        // Appends in the old format, then two compactions: into the new file, then back into
        // the old one over its generation-0 frames.
        compact_times(&shard, 2).await;
    });
    reopen_and_check(&s, &clock, &kept);
}

#[test]
fn an_incomplete_journal_alone_is_refused_not_replaced() {
    use crate::journal::journal_paths;
    use crate::journal::record::JOURNAL_MAGIC;
    let dir = TempDir::new("alone");
    let s = shared(&dir.0, "1MiB");
    let clock = ManualClock::new(1_000_000);
    let paths = journal_paths(&s.cfg.meta_dir, 0);
    let mut img = Vec::new();
    Record::Header { magic: JOURNAL_MAGIC, shard: 0, shards: 1, generation: 4 }
        .encode_framed(&mut img);
    std::fs::create_dir_all(&s.cfg.meta_dir).expect("meta dir");
    std::fs::write(&paths[1], &img).expect("write");
    runtime().block_on(async {
        let err = Shard::open(0, &s, Rc::new(clock.clone()), Box::new(SeededEntropy::new(7)))
            .err()
            .expect("refused");
        assert!(err.to_string().contains("refusing to start empty"), "{err}");
    });
    assert_eq!(std::fs::read(&paths[1]).expect("kept"), img, "left as it was");
}

#[test]
fn a_failed_sync_latches_and_nothing_is_acknowledged_after_it() {
    let dir = TempDir::new("latch");
    let s = shared(&dir.0, "1MiB");
    let clock = ManualClock::new(1_000_000);
    runtime().block_on(async {
        let (mut shard, _) =
            Shard::open(0, &s, Rc::new(clock.clone()), Box::new(SeededEntropy::new(1)))
                .expect("opens");
        let plan = Rc::new(FaultPlan::default());
        let inner = std::mem::replace(&mut shard.stores[0], Store::open_ram(4096).expect("ram"));
        shard.stores[0] = Store::faulty(inner, plan.clone());
        let shard = Rc::new(shard);
        ibp_io::spawn(shard.clone().run_committer());
        let (id, _) = allocate(&shard, Durability::Hard, 8192, 3600).await;
        // Dirty the store so the next hard commit syncs it, and make that sync fail.
        let mut buf = ibp_io::buf::acquire().await;
        buf.set_len(4096);
        let (r, _) = shard.stores[0].write(buf, 0, 0..4096).await;
        r.expect("write before the fault");
        plan.fail_sync_after.set(1);
        let rec = shard.table.borrow_mut().apply_data(id, 4096, 0, &[0]).expect("live");
        assert!(shard.commit(0, &[rec], true).await.is_err(), "no ack after a failed sync");
        assert!(shard.stores[0].latched().is_some(), "the store latched");
        let buf = ibp_io::buf::acquire().await;
        let (r, _) = shard.stores[0].write(buf, 0, 0..0).await;
        assert!(r.is_err(), "writes refused after the latch");
        let rec = shard.table.borrow_mut().apply_data(id, 4096, 0, &[0]).expect("live");
        assert!(
            shard.commit(0, &[rec], false).await.is_err(),
            "the journal acknowledges nothing more"
        );
        let mut out = ibp_io::buf::acquire().await;
        out.set_len(0);
        let (r, _) = shard.stores[0].read(out, 0, 4096).await;
        assert!(r.is_ok(), "reads go on");
    });
}

/// Where block `block` of allocation `id` lies in its store, and the block size.
fn block_at(shard: &Shard, id: u64, block: u64) -> (u64, u64) {
    let t = shard.table.borrow();
    let a = t.get(id).expect("live allocation");
    let cb = a.block_bytes(t.regions[a.resource as usize].policy.checksum_block_bytes);
    (a.base_offset() + block * cb, cb)
}

/// Writes `bytes` in place at block `block` and commits them as the write path's normal
/// commit does (in place first, then the new size and CRCs, synced).
async fn write_and_commit(shard: &Shard, id: u64, block: u64, bytes: &[u8]) {
    try_write_and_commit(shard, id, block, bytes).await.expect("written and committed");
}

/// [`write_and_commit`] that reports a refused write or commit instead of panicking.
async fn try_write_and_commit(
    shard: &Shard,
    id: u64,
    block: u64,
    bytes: &[u8],
) -> Result<(), String> {
    let (at, cb) = block_at(shard, id, block);
    let mut buf = ibp_io::buf::acquire().await;
    buf.set_len(bytes.len());
    buf.as_full_mut()[..bytes.len()].copy_from_slice(bytes);
    let (r, _) = shard.stores[0].write(buf, at, 0..bytes.len()).await;
    r.map_err(|e| format!("in-place write: {e}"))?;
    let end = (block + 1) * cb;
    let crc = crate::checksum::block_crc(bytes, cb);
    let rec = shard.table.borrow_mut().apply_data(id, end, block, &[crc]).expect("live");
    shard.commit(0, &[rec], true).await
}

/// Commits an overwrite of block `block` with `bytes` by its image alone, as the write path
/// does for blocks below the size, and never writes it in place (the crash comes first).
async fn commit_image_only(shard: &Shard, id: u64, block: u64, bytes: &[u8]) {
    let (_, cb) = block_at(shard, id, block);
    let crcs = vec![crate::checksum::block_crc(bytes, cb)];
    let Some(Record::Data { size, .. }) = shard.table.borrow_mut().apply_data(id, 0, block, &crcs)
    else {
        panic!("live allocation")
    };
    let rec = Record::CommittedImage { id, size, first_block: block, crcs, data: bytes.to_vec() };
    let p = shard.journal_image(0, rec, true);
    let pending = p.as_ref().expect("a disk resource journals images");
    shard.image_durable(pending).await.expect("image committed");
    shard.image_done(p);
}

/// What block `block` holds on disk, and the CRC the table keeps for it.
fn block_state(shard: &Shard, id: u64, block: u64) -> (Vec<u8>, u32) {
    let (at, cb) = block_at(shard, id, block);
    let bytes = shard.stores[0].read_blocking(at, cb as usize).expect("read back");
    let crc = shard.table.borrow().get(id).expect("live").crcs.get(block, cb);
    (bytes, crc)
}

#[test]
fn concurrent_hard_commits_overlapping_journal_writes_all_replay() {
    // Many hard commits at once: the committer takes a batch and syncs the data while the
    // previous batch's journal write is in flight. Every acknowledged block must come back,
    // with its CRC, after a restart; soft records in between take the other branch.
    let dir = TempDir::new("pipeline");
    let s = shared(&dir.0, "1MiB");
    let clock = ManualClock::new(1_000_000);
    let cb = 64 * 1024;
    let blocks = 24u64;
    let fill = move |b: u64| vec![(b as u8).wrapping_mul(37).wrapping_add(1); cb];
    let (id, soft) = runtime().block_on(async {
        let shard = open(&s, &clock);
        ibp_io::spawn(shard.clone().run_committer());
        let (id, _) = allocate(&shard, Durability::Hard, blocks * cb as u64, 3600).await;
        let tasks: Vec<ibp_io::JoinHandle> = (0..blocks)
            .map(|b| {
                let shard = shard.clone();
                ibp_io::spawn(async move { write_and_commit(&shard, id, b, &fill(b)).await })
            })
            .collect();
        let (soft, _) = allocate(&shard, Durability::Soft, cb as u64, 3600).await;
        for t in tasks {
            t.await;
        }
        (id, soft)
    });
    runtime().block_on(async {
        let shard = open(&s, &clock);
        assert_eq!(shard.table.borrow().get(id).expect("hard allocation").size, blocks * cb as u64);
        assert!(shard.table.borrow().get(soft).is_some(), "the soft allocation replayed too");
        for b in 0..blocks {
            let want = fill(b);
            let crc = crate::checksum::block_crc(&want, cb as u64);
            assert_eq!(block_state(&shard, id, b), (want, crc), "block {b}");
        }
    });
}

#[test]
fn a_sync_failing_while_the_previous_write_is_in_flight_keeps_every_ack_durable() {
    // Block 0's commit is taken as a batch of its own (its data sync #1 succeeds), then
    // blocks 1.. are committed at once: the next batch's data sync (#2) fails, typically while
    // block 0's journal write is still in flight. Block 0 is acknowledged and durable, every
    // later commit is refused, and nobody waits forever.
    let dir = TempDir::new("pipefail");
    let s = shared(&dir.0, "1MiB");
    let clock = ManualClock::new(1_000_000);
    let cb = 64 * 1024;
    let blocks = 24u64;
    let fill = move |b: u64| vec![(b as u8).wrapping_mul(53).wrapping_add(7); cb];
    let id = runtime().block_on(async {
        let (mut shard, _) =
            Shard::open(0, &s, Rc::new(clock.clone()), Box::new(SeededEntropy::new(3)))
                .expect("opens");
        let plan = Rc::new(FaultPlan::default());
        let disk = std::mem::replace(&mut shard.stores[0], Store::open_ram(4096).expect("ram"));
        shard.stores[0] = Store::faulty(disk, plan.clone());
        let shard = Rc::new(shard);
        ibp_io::spawn(shard.clone().run_committer());
        let (id, _) = allocate(&shard, Durability::Hard, blocks * cb as u64, 3600).await;
        plan.fail_sync_after.set(2);
        let results = Rc::new(std::cell::RefCell::new(Vec::new()));
        let writer = |b: u64| {
            let (shard, results) = (shard.clone(), results.clone());
            ibp_io::spawn(async move {
                // Refused: the write after the latch, or the commit.
                let ok = try_write_and_commit(&shard, id, b, &fill(b)).await.is_ok();
                results.borrow_mut().push((b, ok));
            })
        };
        let before = shard.journal.file_pos();
        let mut tasks = vec![writer(0)];
        // Wait until block 0's batch is taken (its data sync has begun): the others come after.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while shard.journal.file_pos() == before {
            assert!(std::time::Instant::now() < deadline, "block 0's batch was never taken");
            ibp_io::time::sleep(std::time::Duration::from_micros(20)).await;
        }
        tasks.extend((1..blocks).map(writer));
        for t in tasks {
            ibp_io::time::timeout(std::time::Duration::from_secs(20), t)
                .await
                .expect("every commit finishes, acknowledged or refused");
        }
        assert!(shard.stores[0].latched().is_some(), "the failed sync latched the store");
        let rec = Record::Delete { id: u64::MAX };
        assert!(shard.commit(0, &[rec], true).await.is_err(), "nothing acknowledged after it");
        let mut results = results.borrow().clone();
        results.sort();
        let want: Vec<(u64, bool)> = (0..blocks).map(|b| (b, b == 0)).collect();
        assert_eq!(results, want, "block 0 acknowledged, every later commit refused");
        id
    });
    runtime().block_on(async {
        let shard = open(&s, &clock);
        let want = fill(0);
        let crc = crate::checksum::block_crc(&want, cb as u64);
        assert_eq!(block_state(&shard, id, 0), (want, crc), "the acknowledged block is durable");
    });
}

#[test]
fn a_committed_image_completes_an_overwrite_that_never_reached_its_block() {
    let dir = TempDir::new("cimage");
    let s = shared(&dir.0, "1MiB");
    let clock = ManualClock::new(1_000_000);
    let cb = 64 * 1024;
    let (old, new) = (vec![0xA5u8; cb], vec![0x3Cu8; cb]);
    let id = runtime().block_on(async {
        let shard = open(&s, &clock);
        ibp_io::spawn(shard.clone().run_committer());
        let (id, _) = allocate(&shard, Durability::Hard, 2 * cb as u64, 3600).await;
        write_and_commit(&shard, id, 0, &old).await;
        write_and_commit(&shard, id, 1, &old).await;
        commit_image_only(&shard, id, 0, &new).await;
        let (bytes, _) = block_state(&shard, id, 0);
        assert_eq!(
            bytes, old,
            "the in-place write was skipped: the block still holds the old bytes"
        );
        id
    });
    let new_crc = crate::checksum::block_crc(&new, cb as u64);
    let old_crc = crate::checksum::block_crc(&old, cb as u64);
    for round in 0..2 {
        runtime().block_on(async {
            let shard = open(&s, &clock);
            assert_eq!(block_state(&shard, id, 0), (new.clone(), new_crc), "round {round}");
            assert_eq!(block_state(&shard, id, 1), (old.clone(), old_crc), "round {round}");
            ibp_io::spawn(shard.clone().run_committer());
            // Let the repair's records reach the journal before the next open.
            shard.commit(0, &[Record::Delete { id: u64::MAX }], true).await.expect("flushed");
        });
    }
}

#[test]
fn a_later_commit_of_the_same_block_supersedes_a_committed_image() {
    let dir = TempDir::new("cimage2");
    let s = shared(&dir.0, "1MiB");
    let clock = ManualClock::new(1_000_000);
    let cb = 64 * 1024;
    let (a, b, c) = (vec![1u8; cb], vec![2u8; cb], vec![3u8; cb]);
    let id = runtime().block_on(async {
        let shard = open(&s, &clock);
        ibp_io::spawn(shard.clone().run_committer());
        let (id, _) = allocate(&shard, Durability::Hard, cb as u64, 3600).await;
        write_and_commit(&shard, id, 0, &a).await;
        commit_image_only(&shard, id, 0, &b).await;
        // A later write of the block through the normal path: in place, then its CRC.
        write_and_commit(&shard, id, 0, &c).await;
        id
    });
    runtime().block_on(async {
        let shard = open(&s, &clock);
        let crc = crate::checksum::block_crc(&c, cb as u64);
        assert_eq!(
            block_state(&shard, id, 0),
            (c.clone(), crc),
            "the older image was not replayed"
        );
    });
}
