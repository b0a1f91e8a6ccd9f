//! Running N workers in parallel with one progress line on stderr.
//!
//! Workers add what they did to a shared counter; the calling thread redraws
//! `label: 1.2 GB, 830 MB/s` (or ops) about five times a second until all workers have
//! returned. Workers own their own time and count bounds; this module only watches.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

/// Redraw interval of the progress line (and how often `run_workers` checks for the end).
const REDRAW: Duration = Duration::from_millis(200);
/// Milliseconds since `EPOCH` of the last redraw, to throttle callers that draw per op.
static LAST_DRAW_MS: AtomicU64 = AtomicU64::new(0);

/// Whether progress lines are drawn (off under `--quiet` and when stderr is not a terminal).
static ENABLED: AtomicBool = AtomicBool::new(true);

pub fn set_enabled(on: bool) {
    ENABLED.store(on && std::io::stderr().is_terminal(), Ordering::Relaxed);
}

/// What a progress counter counts.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Bytes,
    Ops,
}

/// Runs `work(i, &counter)` on `n` threads and returns their results in order, with the
/// wall time from the first start to the last return.
pub fn run_workers<T: Send>(
    label: &str,
    unit: Unit,
    n: usize,
    work: impl Fn(usize, &AtomicU64) -> T + Sync,
) -> (Vec<T>, Duration) {
    let counter = AtomicU64::new(0);
    let start = Instant::now();
    let results: Vec<(T, Instant)> = thread::scope(|s| {
        let handles: Vec<_> = (0..n)
            .map(|i| {
                let (work, counter) = (&work, &counter);
                // Each worker notes when it finished: the wall time is the last finish, not
                // the moment this thread next wakes up to look.
                s.spawn(move || (work(i, counter), Instant::now()))
            })
            .collect();
        while !handles.iter().all(|h| h.is_finished()) {
            thread::sleep(REDRAW);
            draw(label, unit, counter.load(Ordering::Relaxed), start.elapsed());
        }
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    });
    clear();
    let end = results.iter().map(|(_, end)| *end).max().unwrap_or(start);
    (results.into_iter().map(|(r, _)| r).collect(), end.duration_since(start))
}

/// Draws one progress line.
pub fn draw(label: &str, unit: Unit, done: u64, elapsed: Duration) {
    if !ENABLED.load(Ordering::Relaxed) {
        return;
    }
    let now_ms = process_start().elapsed().as_millis() as u64;
    let last = LAST_DRAW_MS.load(Ordering::Relaxed);
    if now_ms < last + REDRAW.as_millis() as u64 / 2
        || LAST_DRAW_MS
            .compare_exchange(last, now_ms, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
    {
        return;
    }
    let secs = elapsed.as_secs_f64().max(1e-6);
    let text = match unit {
        Unit::Bytes => {
            format!("{label}: {:.1} MB, {:.0} MB/s", done as f64 / 1e6, done as f64 / secs / 1e6)
        }
        Unit::Ops => format!("{label}: {done} ops, {:.0} ops/s", done as f64 / secs),
    };
    let mut err = std::io::stderr().lock();
    let _ = write!(err, "\r\x1b[2K{text}");
    let _ = err.flush();
}

fn process_start() -> Instant {
    static START: OnceLock<Instant> = OnceLock::new();
    *START.get_or_init(Instant::now)
}

/// Erases the progress line.
pub fn clear() {
    if ENABLED.load(Ordering::Relaxed) {
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r\x1b[2K");
        let _ = err.flush();
    }
}
