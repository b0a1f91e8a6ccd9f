//! Pinned worker threads: one per core, each will own a runtime (thread-per-core).

use std::thread::JoinHandle;

/// Cores this process may run on.
pub fn available_cores() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

/// Spawns `n` threads named `{name_prefix}-{i}`, pinning thread `i` to core `i % cores`, each
/// running `f(i)`. A failed pin is logged at debug and the thread runs unpinned.
///
/// # Panics
/// If the OS refuses to create a thread (start-up cannot continue without its cores).
pub fn spawn_pinned<F>(n: usize, name_prefix: &str, f: F) -> Vec<JoinHandle<()>>
where
    F: Fn(usize) + Send + Sync + Clone + 'static,
{
    let core_ids = core_affinity::get_core_ids().unwrap_or_default();
    (0..n)
        .map(|i| {
            let f = f.clone();
            let core = (!core_ids.is_empty()).then(|| core_ids[i % core_ids.len()]);
            std::thread::Builder::new()
                .name(format!("{name_prefix}-{i}"))
                .spawn(move || {
                    match core {
                        Some(core) if core_affinity::set_for_current(core) => {}
                        _ => tracing::debug!(thread = i, "ibp-io: could not pin thread to a core"),
                    }
                    f(i);
                })
                .unwrap_or_else(|e| panic!("cannot spawn thread {name_prefix}-{i}: {e}"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn spawns_and_joins() {
        let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let h = hits.clone();
        let handles = super::spawn_pinned(3, "t", move |i| {
            assert!(std::thread::current().name().is_some_and(|n| n.ends_with(&i.to_string())));
            h.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        });
        for handle in handles {
            handle.join().expect("thread");
        }
        assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 3);
        assert!(super::available_cores() >= 1);
    }
}
