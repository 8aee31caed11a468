//! Layer writing: round trips through our unpacker and GNU tar, one-pass digests,
//! determinism, and the ownership/device records.

mod layer_support;

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use layer_support::{assert_same_tree, filetime_secs, list_tree, rich_tree, Compare};
use rbuild_builder::layer::ownership::{DEVICE_XATTR, OWNER_XATTR};
use rbuild_builder::layer::root_path::RootDir;
use rbuild_builder::layer::snapshot::native::all_entries;
use rbuild_builder::layer::unpack::{decompress, unpack_layer, OwnershipMode, UnpackOptions};
use rbuild_builder::layer::{write_layer, Compression, LayerDescriptor, LayerOptions, MtimePolicy};
use sha2::{Digest, Sha256};

fn write(src: &Path, opts: &LayerOptions) -> (LayerDescriptor, Vec<u8>) {
    let entries = all_entries(src).unwrap();
    write_layer(Vec::new(), src, &entries, opts).unwrap()
}

fn sha(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

#[rstest::rstest]
#[case(Compression::None)]
#[case(Compression::Gzip { level: 6 })]
#[case(Compression::Zstd { level: 3 })]
fn round_trip_keeps_everything(#[case] compression: Compression) {
    let t = tempfile::tempdir().unwrap();
    let (src, dst) = (t.path().join("src"), t.path().join("dst"));
    std::fs::create_dir_all(&src).unwrap();
    std::fs::create_dir_all(&dst).unwrap();
    rich_tree(&src);
    let opts = LayerOptions { compression, ..Default::default() };
    let (desc, blob) = write(&src, &opts);
    assert_eq!(desc.digest.to_string(), sha(&blob));
    assert_eq!(desc.size, blob.len() as u64);
    let mut tar = Vec::new();
    decompress(compression.codec(), blob.as_slice()).unwrap().read_to_end(&mut tar).unwrap();
    assert_eq!(desc.diff_id.to_string(), sha(&tar));
    assert_eq!(desc.uncompressed_size, tar.len() as u64);
    let root = RootDir::open(&dst).unwrap();
    let opts = UnpackOptions { ownership: OwnershipMode::Chown(Default::default()) };
    unpack_layer(&root, compression.codec(), blob.as_slice(), &opts).unwrap();
    assert_same_tree(&src, &dst, Compare::Full);
}

#[test]
fn gnu_tar_reads_our_layers() {
    let t = tempfile::tempdir().unwrap();
    let (src, dst) = (t.path().join("src"), t.path().join("dst"));
    std::fs::create_dir_all(&src).unwrap();
    std::fs::create_dir_all(&dst).unwrap();
    rich_tree(&src);
    let (_, blob) = write(&src, &LayerOptions { compression: Compression::None, ..Default::default() });
    std::fs::write(t.path().join("l.tar"), &blob).unwrap();
    let st = std::process::Command::new("tar")
        .args(["--xattrs", "--xattrs-include=*", "--numeric-owner", "-xpf"])
        .arg(t.path().join("l.tar"))
        .arg("-C")
        .arg(&dst)
        .status()
        .unwrap();
    assert!(st.success());
    assert_same_tree(&src, &dst, Compare::Full);
}

#[test]
fn headers_are_normalised_and_sorted() {
    let t = tempfile::tempdir().unwrap();
    rich_tree(t.path());
    let (_, blob) = write(t.path(), &LayerOptions { compression: Compression::None, ..Default::default() });
    let mut ar = tar::Archive::new(blob.as_slice());
    let mut paths = Vec::new();
    for e in ar.entries().unwrap() {
        let e = e.unwrap();
        assert_eq!(e.header().username_bytes(), Some(&b""[..]));
        assert_eq!(e.header().groupname_bytes(), Some(&b""[..]));
        paths.push(e.path().unwrap().into_owned());
    }
    let mut sorted = paths.clone();
    sorted.sort();
    assert_eq!(paths, sorted);
    assert_eq!(paths.len(), list_tree(t.path()).len());
}

#[test]
fn same_inputs_same_digest_and_epoch_clamps_mtimes() {
    let t = tempfile::tempdir().unwrap();
    rich_tree(t.path());
    let keep = LayerOptions::default();
    let clamp = LayerOptions { mtime: MtimePolicy::Clamp(1_000), ..Default::default() };
    let (a, _) = write(t.path(), &keep);
    let (b, _) = write(t.path(), &keep);
    assert_eq!(a, b);
    let (c1, _) = write(t.path(), &clamp);
    for p in list_tree(t.path()) {
        let _ = rustix::fs::utimensat(
            rustix::fs::CWD,
            t.path().join(p),
            &filetime_secs(1_700_000_000),
            rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
        );
    }
    let (a2, _) = write(t.path(), &keep);
    let (c2, _) = write(t.path(), &clamp);
    assert_ne!(a.diff_id, a2.diff_id);
    assert_eq!(c1, c2);
}

#[test]
fn zstd_output_does_not_depend_on_worker_count() {
    let t = tempfile::tempdir().unwrap();
    rich_tree(t.path());
    let opts = |w| LayerOptions { compression: Compression::Zstd { level: 3 }, zstd_workers: w, ..Default::default() };
    assert_eq!(write(t.path(), &opts(1)).1, write(t.path(), &opts(2)).1);
}

#[test]
fn recorded_owners_devices_and_xattrs_reach_the_layer() {
    let t = tempfile::tempdir().unwrap();
    let p = |n: &str| t.path().join(n);
    for (name, mode) in [("kept", 0o4755), ("chmodded", 0o700), ("dev", 0o666), ("capped", 0o755)] {
        std::fs::write(p(name), b"").unwrap();
        std::fs::set_permissions(p(name), std::fs::Permissions::from_mode(mode)).unwrap();
    }
    xattr::set(p("kept"), OWNER_XATTR, b"33:44:4755").unwrap();
    xattr::set(p("chmodded"), OWNER_XATTR, b"33:44:444").unwrap();
    xattr::set(p("dev"), DEVICE_XATTR, b"c:1:3").unwrap();
    xattr::set(p("dev"), OWNER_XATTR, b"0:0:666").unwrap();
    xattr::set(p("capped"), "user.rbuild.x.security.capability", b"CAP").unwrap();
    let (_, blob) = write(t.path(), &LayerOptions { compression: Compression::None, ..Default::default() });
    let mut ar = tar::Archive::new(blob.as_slice());
    let mut seen = Vec::new();
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        let h = e.header().clone();
        let mut x = Vec::new();
        if let Some(exts) = e.pax_extensions().unwrap() {
            for ext in exts {
                let ext = ext.unwrap();
                x.push(format!("{}={}", ext.key().unwrap(), String::from_utf8_lossy(ext.value_bytes())));
            }
        }
        let dev = h.device_major().unwrap().map(|m| (m, h.device_minor().unwrap().unwrap_or(0)));
        seen.push((
            e.path().unwrap().display().to_string(),
            h.entry_type().as_byte() as char,
            h.uid().unwrap(),
            h.gid().unwrap(),
            h.mode().unwrap(),
            dev.filter(|_| h.entry_type().is_character_special()),
            x,
        ));
    }
    assert_eq!(
        seen,
        vec![
            ("capped".into(), '0', 0, 0, 0o755, None, vec!["SCHILY.xattr.security.capability=CAP".to_string()]),
            ("chmodded".into(), '0', 33, 44, 0o700, None, vec![]),
            ("dev".into(), '3', 0, 0, 0o666, Some((1, 3)), vec![]),
            ("kept".into(), '0', 33, 44, 0o4755, None, vec![]),
        ]
    );
}

#[test]
fn big_ids_use_pax_and_sockets_are_skipped() {
    let t = tempfile::tempdir().unwrap();
    std::fs::write(t.path().join("big"), b"x").unwrap();
    std::os::unix::fs::chown(t.path().join("big"), Some(3_000_000), Some(3_000_001)).unwrap();
    let _sock = std::os::unix::net::UnixListener::bind(t.path().join("sock")).unwrap();
    let (_, blob) = write(t.path(), &LayerOptions { compression: Compression::None, ..Default::default() });
    let mut ar = tar::Archive::new(blob.as_slice());
    let got: Vec<(String, u64, u64)> = ar
        .entries()
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (e.path().unwrap().display().to_string(), e.header().uid().unwrap(), e.header().gid().unwrap())
        })
        .collect();
    assert_eq!(got.len(), 1, "socket skipped: {got:?}");
    // Ids above the 7-digit octal limit travel in PAX records, and our unpacker applies them.
    let text = String::from_utf8_lossy(&blob);
    assert!(text.contains("uid=3000000\n") && text.contains("gid=3000001\n"), "PAX ids present");
    let dst = tempfile::tempdir().unwrap();
    let opts = UnpackOptions { ownership: OwnershipMode::Chown(Default::default()) };
    unpack_layer(&RootDir::open(dst.path()).unwrap(), Compression::None.codec(), blob.as_slice(), &opts).unwrap();
    let md = std::fs::metadata(dst.path().join("big")).unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_eq!((md.uid(), md.gid()), (3_000_000, 3_000_001));
}
