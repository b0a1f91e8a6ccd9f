//! Runs a suite's cases one after another against shared depots, so one failing case does not
//! hide the others and the suite can print one summary line at the end.
//!
//! libtest gives no "after all tests" hook, so a suite that must print a total (commands
//! covered, inputs tried) runs its cases from one `#[test]` through a `Runner`. A case that
//! fails because of a known depot bug is moved to its own `#[ignore = "depot bug: …"]` test.

use std::collections::BTreeSet;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Instant;

/// Outcome bookkeeping for one suite run.
#[derive(Debug, Default)]
pub struct Runner {
    /// Names of failed cases with their panic message.
    pub failed: Vec<(String, String)>,
    pub passed: usize,
    /// Whatever the suite counts (commands covered, error codes seen, inputs tried).
    pub covered: BTreeSet<String>,
    pub counter: u64,
}

impl Runner {
    pub fn new() -> Runner {
        Runner::default()
    }

    /// Runs one case; a panic is recorded, printed, and does not stop the suite.
    pub fn case(&mut self, name: &str, f: impl FnOnce(&mut Runner)) {
        let started = Instant::now();
        let result = catch_unwind(AssertUnwindSafe(|| f(self)));
        let ms = started.elapsed().as_millis();
        match result {
            Ok(()) => {
                self.passed += 1;
                println!("case {name}: ok ({ms} ms)");
            }
            Err(e) => {
                let msg = e
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "non-string panic".into());
                println!("case {name}: FAILED ({ms} ms): {msg}");
                self.failed.push((name.to_string(), msg));
            }
        }
    }

    /// Records that something (a command form, an error code) was exercised and checked.
    pub fn cover(&mut self, what: &str) {
        self.covered.insert(what.to_string());
    }

    /// Counts one more input tried.
    pub fn tried(&mut self, n: u64) {
        self.counter += n;
    }

    /// Panics listing every failed case, if any.
    pub fn finish(&self, suite: &str) {
        if !self.failed.is_empty() {
            let list: Vec<String> =
                self.failed.iter().map(|(n, m)| format!("  {n}: {m}")).collect();
            panic!("{suite}: {} case(s) failed:\n{}", self.failed.len(), list.join("\n"));
        }
    }
}
