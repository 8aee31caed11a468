//! The unpacker under arbitrary input (issue 16): the stable-toolchain run of the
//! `fuzz/fuzz_targets/unpack.rs` target (cargo-fuzz needs nightly, which this project's
//! machines do not have). Archives are random bytes, or real GNU tar archives (the sparse
//! corpus) and hand-made hostile ones with random bytes overwritten. Whatever the input:
//! no panic, and nothing is written outside the root (a sentinel beside it stays intact).

use std::path::Path;

use proptest::prelude::*;
use rbuild_builder::layer::ownership::IdMaps;
use rbuild_builder::layer::root_path::RootDir;
use rbuild_builder::layer::unpack::{unpack_archive, unpack_layer, OwnershipMode, UnpackOptions};
use rbuild_builder::layer::Codec;

/// Seeds: the GNU tar sparse corpus and a small tar with a symlink, a hardlink and a file.
fn seeds() -> Vec<Vec<u8>> {
    let dir = tempfile::tempdir().unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/sparse/make.sh");
    let made = std::process::Command::new(script).arg(dir.path()).status().is_ok_and(|s| s.success());
    let mut seeds = Vec::new();
    if made {
        for name in ["pax-0.0.tar", "pax-0.1.tar", "pax-1.0.tar", "gnu.tar"] {
            seeds.push(std::fs::read(dir.path().join(name)).unwrap());
        }
    }
    let mut tar = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Symlink);
    h.set_size(0);
    h.set_mode(0o777);
    tar.append_link(&mut h, "up", "../sentinel").unwrap();
    let mut f = tar::Header::new_gnu();
    f.set_size(5);
    f.set_mode(0o644);
    tar.append_data(&mut f, "dir/file", &b"hello"[..]).unwrap();
    let mut l = tar::Header::new_gnu();
    l.set_entry_type(tar::EntryType::Link);
    l.set_size(0);
    tar.append_link(&mut l, "dir/link", "dir/file").unwrap();
    seeds.push(tar.into_inner().unwrap());
    seeds
}

/// Apply `bytes` as an archive and as an uncompressed layer; check the sentinel.
fn check(bytes: &[u8]) {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let sentinel = tmp.path().join("sentinel");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::create_dir_all(&sentinel).unwrap();
    std::fs::write(sentinel.join("keep"), b"keep").unwrap();
    let opts = UnpackOptions { ownership: OwnershipMode::Record };
    let dir = RootDir::open(&root).unwrap();
    let _ = unpack_archive(&dir, bytes, &opts);
    let _ =
        unpack_layer(&dir, Codec::None, bytes, &UnpackOptions { ownership: OwnershipMode::Chown(IdMaps::default()) });
    let left: Vec<_> = std::fs::read_dir(&sentinel).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(left, vec![std::ffi::OsString::from("keep")], "something was written beside the root");
    assert_eq!(std::fs::read(sentinel.join("keep")).unwrap(), b"keep");
}

/// Random bytes and mutated seeds, bounded (the seeds are made once: GNU tar is slow).
#[test]
fn arbitrary_archives_never_panic_or_escape() {
    use proptest::test_runner::{Config, TestRunner};
    let seeds = seeds();
    let config = Config { cases: 96, failure_persistence: None, ..Config::default() };
    TestRunner::new(config.clone())
        .run(&proptest::collection::vec(any::<u8>(), 0..4096), |bytes| {
            check(&bytes);
            Ok(())
        })
        .unwrap();
    let edits =
        (any::<prop::sample::Index>(), proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..24));
    TestRunner::new(config)
        .run(&edits, |(seed, edits)| {
            let mut bytes = seed.get(&seeds).clone();
            for (at, value) in edits {
                let i = at.index(bytes.len());
                bytes[i] = value;
            }
            check(&bytes);
            Ok(())
        })
        .unwrap();
}
