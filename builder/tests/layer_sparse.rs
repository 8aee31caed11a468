//! Sparse files as GNU tar writes them (PAX 0.0, 0.1, 1.0 and old GNU), made by
//! `testdata/sparse/make.sh` with the real GNU tar, applied as a layer and as an ADD archive:
//! the real name, the real content, and holes kept as holes where the file system allows.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use rbuild_builder::executor::error_chain;
use rbuild_builder::layer::ownership::IdMaps;
use rbuild_builder::layer::root_path::RootDir;
use rbuild_builder::layer::unpack::{unpack_archive, unpack_layer, OwnershipMode, UnpackOptions};
use rbuild_builder::layer::Codec;

const MIB: usize = 1024 * 1024;

fn corpus() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/sparse/make.sh");
    let out = Command::new(script).arg(dir.path()).output().expect("run make.sh (needs GNU tar)");
    assert!(out.status.success(), "make.sh: {}", String::from_utf8_lossy(&out.stderr));
    let path = dir.path().to_path_buf();
    (dir, path)
}

fn expected_sparse() -> Vec<u8> {
    let mut v = vec![0u8; 4 * MIB];
    v[..4].copy_from_slice(b"head");
    v[MIB..MIB + 6].copy_from_slice(b"middle");
    v[4 * MIB - 4..].copy_from_slice(b"tail");
    v
}

/// Whether files in `dir` can have holes (a file written at 2 MiB only uses a few blocks).
fn holes_supported(dir: &Path) -> bool {
    use std::io::{Seek, SeekFrom, Write};
    let probe = dir.join(".probe");
    let mut f = std::fs::File::create(&probe).unwrap();
    f.seek(SeekFrom::Start(2 * MIB as u64)).unwrap();
    f.write_all(b"x").unwrap();
    drop(f);
    let sparse = std::fs::metadata(&probe).unwrap().blocks() * 512 < MIB as u64;
    std::fs::remove_file(probe).unwrap();
    sparse
}

#[rstest::rstest]
#[case::pax_0_0("pax-0.0.tar", true)]
#[case::pax_0_1("pax-0.1.tar", true)]
#[case::pax_1_0("pax-1.0.tar", true)]
#[case::old_gnu("gnu.tar", false)]
fn gnu_tar_sparse_files_unpack_to_their_real_name_and_content(
    #[case] name: &str,
    #[case] keeps_holes: bool,
    #[values(true, false)] as_layer: bool,
) {
    let (_dir, corpus) = corpus();
    let archive = std::fs::read(corpus.join(name)).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let root = RootDir::open(tmp.path()).unwrap();
    let opts = UnpackOptions { ownership: OwnershipMode::Chown(IdMaps::default()) };
    if as_layer {
        unpack_layer(&root, Codec::None, archive.as_slice(), &opts).unwrap();
    } else {
        unpack_archive(&root, archive.as_slice(), &opts).unwrap();
    }
    let names: Vec<String> = std::fs::read_dir(tmp.path().join("dir"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    assert_eq!(names, ["hole.bin", "sparse.bin"], "no GNUSparseFile.* directory, nothing else");
    assert_eq!(std::fs::read(tmp.path().join("dir/sparse.bin")).unwrap(), expected_sparse());
    assert_eq!(std::fs::read(tmp.path().join("dir/hole.bin")).unwrap(), vec![0u8; MIB]);
    if keeps_holes && holes_supported(tmp.path()) {
        for file in ["dir/sparse.bin", "dir/hole.bin"] {
            let used = std::fs::metadata(tmp.path().join(file)).unwrap().blocks() * 512;
            assert!(used < MIB as u64, "{file} uses {used} bytes: holes were filled");
        }
    }
}

/// A 1.0 entry whose data is cut short, and one whose map runs past its real size, are
/// refused with an error naming the entry.
#[rstest::rstest]
#[case::truncated(true)]
#[case::map_past_end(false)]
fn damaged_sparse_entries_are_refused(#[case] truncate: bool) {
    let (_dir, corpus) = corpus();
    let mut archive = std::fs::read(corpus.join("pax-0.1.tar")).unwrap();
    if truncate {
        // Keep the headers of the first file but cut into its data.
        let at = find(&archive, b"head").expect("data of sparse.bin");
        archive.truncate(at + 2);
    } else {
        // The map names a region past the real size (same length keeps the PAX record valid).
        let at = find(&archive, b"4190208,4096").expect("map of sparse.bin");
        archive[at..at + 12].copy_from_slice(b"4194300,4096");
    }
    let tmp = tempfile::tempdir().unwrap();
    let root = RootDir::open(tmp.path()).unwrap();
    let opts = UnpackOptions { ownership: OwnershipMode::Chown(IdMaps::default()) };
    let err = unpack_archive(&root, archive.as_slice(), &opts).unwrap_err();
    let msg = error_chain(&err);
    assert!(msg.contains("sparse") || msg.contains("archive"), "{msg}");
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
