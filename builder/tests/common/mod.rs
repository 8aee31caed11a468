//! Shared by the test binaries that read the conformance corpus.

use std::path::PathBuf;

/// Where the corpus is: `RBUILD_CONFORMANCE_DIR`, or `../shared/conformance` beside the checkout.
pub fn corpus_root() -> PathBuf {
    std::env::var_os("RBUILD_CONFORMANCE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/conformance").into())
}

/// The corpus folder `sub` (`""` for the root), or `None` after a note when it is missing;
/// missing under `CI` is a failure, so CI can never pass by skipping.
#[allow(dead_code)] // not every test binary that includes this module calls it
pub fn corpus(sub: &str) -> Option<PathBuf> {
    let dir = corpus_root().join(sub);
    if dir.is_dir() {
        return Some(dir);
    }
    assert!(std::env::var_os("CI").is_none(), "conformance corpus missing at {}", dir.display());
    eprintln!("skipping: conformance corpus missing at {} (set RBUILD_CONFORMANCE_DIR)", dir.display());
    None
}
