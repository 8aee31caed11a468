//! Shared by the test binaries that read the conformance corpus.

// Each test binary includes this module and uses only part of it.
#![allow(dead_code)]

use std::path::PathBuf;

/// Where the corpus is: `RBUILD_CONFORMANCE_DIR`, or `../shared/conformance` beside the checkout.
pub fn corpus_root() -> PathBuf {
    std::env::var_os("RBUILD_CONFORMANCE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/conformance").into())
}

/// The corpus folder `sub` (`""` for the root), or `None` after a note when it is missing;
/// missing under `CI` is a failure, so CI can never pass by skipping.
pub fn corpus(sub: &str) -> Option<PathBuf> {
    let dir = corpus_root().join(sub);
    if dir.is_dir() {
        return Some(dir);
    }
    assert!(std::env::var_os("CI").is_none(), "conformance corpus missing at {}", dir.display());
    eprintln!("skipping: conformance corpus missing at {} (set RBUILD_CONFORMANCE_DIR)", dir.display());
    None
}

/// Pass/fail bookkeeping for one corpus table: prints the `N passed, N failed` line that
/// `scripts/conformance.sh` collects, then fails on any failure or an unexpected case count.
#[derive(Default)]
pub struct Tally {
    passed: usize,
    failures: Vec<String>,
}

impl Tally {
    /// Counts one case; a failure keeps its explanation under the case's name.
    pub fn record(&mut self, case: &str, result: Result<(), String>) {
        match result {
            Ok(()) => self.passed += 1,
            Err(why) => self.failures.push(format!("--- {case}\n{why}")),
        }
    }

    /// Prints `{label}: N passed, N failed` and asserts that `kind` had no failure and
    /// `expected_cases` cases in all.
    pub fn finish(self, label: &str, kind: &str, expected_cases: usize) {
        println!("{label}: {} passed, {} failed", self.passed, self.failures.len());
        let total = self.passed + self.failures.len();
        assert!(self.failures.is_empty(), "{kind}: {} failures:\n{}", self.failures.len(), self.failures.join("\n"));
        assert_eq!(total, expected_cases, "{kind}: unexpected number of cases");
    }
}
