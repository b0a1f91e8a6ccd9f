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
