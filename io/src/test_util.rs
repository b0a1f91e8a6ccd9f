//! Test helpers: a scratch directory on a real disk (/var/tmp is ext4 here; tmpfs would not
//! exercise direct I/O), removed on drop.

use std::path::{Path, PathBuf};

pub(crate) struct TempDir(PathBuf);

impl TempDir {
    pub(crate) fn new(tag: &str) -> TempDir {
        static SEQ: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path =
            PathBuf::from(format!("/var/tmp/ibp-io-test-{}-{tag}-{seq}", std::process::id()));
        std::fs::create_dir_all(&path).expect("create temp dir under /var/tmp");
        TempDir(path)
    }

    pub(crate) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
