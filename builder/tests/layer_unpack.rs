//! Unpack: hostile archives are refused without writing outside the root; the
//! features layers carry survive; whiteouts and opaque directories apply.

mod layer_support;

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use layer_support::{header, list_tree, raw_tar, Raw};
use rbuild_builder::executor::error_chain;
use rbuild_builder::layer::ownership::{IdMaps, OWNER_XATTR};
use rbuild_builder::layer::root_path::RootDir;
use rbuild_builder::layer::unpack::{unpack_layer, OwnershipMode, UnpackOptions};
use rbuild_builder::layer::Codec;
use tar::EntryType;

fn chown_opts() -> UnpackOptions {
    UnpackOptions { ownership: OwnershipMode::Chown(IdMaps::default()) }
}

struct Scene {
    _tmp: tempfile::TempDir,
    root: std::path::PathBuf,
    sentinel: std::path::PathBuf,
}

fn scene() -> Scene {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("a/b/root");
    let sentinel = tmp.path().join("a/b/sentinel");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::create_dir_all(&sentinel).unwrap();
    std::fs::write(sentinel.join("target"), b"secret").unwrap();
    Scene { _tmp: tmp, root, sentinel }
}

fn apply(root: &Path, tar: &[u8]) -> Result<(), String> {
    let r = RootDir::open(root).unwrap();
    unpack_layer(&r, Codec::None, tar, &chown_opts()).map(|_| ()).map_err(|e| error_chain(&e))
}

#[rstest::rstest]
#[case::dotdot(&[Raw::File("../sentinel/pwned", b"x")], "'..'")]
#[case::dotdot_inner(&[Raw::Dir("x/"), Raw::File("x/../../sentinel/pwned", b"x")], "'..'")]
#[case::absolute(&[Raw::File("/SENTINEL/pwned", b"x")], "absolute")]
#[case::symlink_out_then_write(&[Raw::Symlink("esc", "../sentinel"), Raw::File("esc/pwned", b"x")], "escapes")]
#[case::symlink_chain(&[Raw::Symlink("a", "b"), Raw::Symlink("b", "c/../../sentinel"), Raw::Dir("c/"), Raw::File("a/pwned", b"x")], "escapes")]
#[case::hardlink_out(&[Raw::Hardlink("link", "../sentinel/target")], "'..'")]
#[case::hardlink_abs(&[Raw::Hardlink("link", "/SENTINEL/target")], "absolute")]
#[case::hardlink_via_symlink(&[Raw::Symlink("esc", "../sentinel"), Raw::Hardlink("link", "esc/target")], "escapes")]
#[case::swap_dir_for_symlink(&[Raw::Dir("d/"), Raw::File("d/ok", b"ok"), Raw::Symlink("d", "../sentinel"), Raw::File("d/pwned", b"x")], "escapes")]
#[case::swap_deep(&[Raw::Dir("d/"), Raw::Dir("d/e/"), Raw::Symlink("d/e", "../../sentinel"), Raw::File("d/e/pwned", b"x")], "escapes")]
#[case::symlink_then_overwrite_target(&[Raw::Symlink("f", "../sentinel/target"), Raw::File("f", b"overwritten")], "")]
fn hostile_archives_stay_inside(#[case] entries: &[Raw<'_>], #[case] want: &str) {
    let s = scene();
    let entries: Vec<Raw<'_>> = entries
        .iter()
        .map(|e| match e {
            Raw::File(n, d) if n.starts_with("/SENTINEL") => {
                Raw::File(Box::leak(n.replace("/SENTINEL", s.sentinel.to_str().unwrap()).into_boxed_str()), d)
            }
            Raw::Hardlink(n, t) if t.starts_with("/SENTINEL") => {
                Raw::Hardlink(n, Box::leak(t.replace("/SENTINEL", s.sentinel.to_str().unwrap()).into_boxed_str()))
            }
            Raw::Dir(n) => Raw::Dir(n),
            Raw::File(n, d) => Raw::File(n, d),
            Raw::Symlink(n, t) => Raw::Symlink(n, t),
            Raw::Hardlink(n, t) => Raw::Hardlink(n, t),
            Raw::Char(n, a, b) => Raw::Char(n, *a, *b),
        })
        .collect();
    let result = apply(&s.root, &raw_tar(&entries));
    if want.is_empty() {
        result.unwrap();
    } else {
        let err = result.unwrap_err();
        assert!(err.contains(want), "error {err:?} should mention {want:?}");
    }
    assert_eq!(list_tree(&s.sentinel), vec![Path::new("target").to_path_buf()], "sentinel touched");
    assert_eq!(std::fs::read(s.sentinel.join("target")).unwrap(), b"secret");
    let outside = list_tree(s.root.parent().unwrap());
    assert!(outside.iter().all(|p| p.starts_with("root") || p.starts_with("sentinel")), "{outside:?}");
}

#[test]
fn absolute_symlinks_are_rerooted() {
    let s = scene();
    let abs = s.sentinel.to_str().unwrap();
    apply(&s.root, &raw_tar(&[Raw::Symlink("abs", abs), Raw::File("abs/inside", b"x")])).unwrap();
    assert!(s.root.join(abs.trim_start_matches('/')).join("inside").is_file());
    assert_eq!(list_tree(&s.sentinel).len(), 1);
}

#[test]
fn whiteouts_and_opaque_dirs_apply_to_lower_layers_only() {
    let s = scene();
    apply(
        &s.root,
        &raw_tar(&[
            Raw::Dir("a/"),
            Raw::File("a/b", b"1"),
            Raw::File("a/c", b"1"),
            Raw::Dir("d/"),
            Raw::File("d/e", b"1"),
            Raw::Dir("d/sub/"),
            Raw::File("f", b"1"),
            Raw::Dir("g/"),
            Raw::File("g/h", b"1"),
        ]),
    )
    .unwrap();
    apply(
        &s.root,
        &raw_tar(&[
            Raw::File(".wh.f", b""),
            Raw::File("a/.wh.b", b""),
            Raw::File("d/new", b"2"),
            Raw::File("d/.wh..wh..opq", b""),
            Raw::File(".wh.g", b""),
            Raw::File(".wh.missing", b""),
        ]),
    )
    .unwrap();
    let got: Vec<String> = list_tree(&s.root).iter().map(|p| p.display().to_string()).collect();
    assert_eq!(got, ["a", "a/c", "d", "d/new"]);
}

#[test]
fn replacing_kinds_replaces_entries() {
    let s = scene();
    apply(&s.root, &raw_tar(&[Raw::Dir("x/"), Raw::File("x/inner", b"1"), Raw::File("y", b"1")])).unwrap();
    apply(&s.root, &raw_tar(&[Raw::File("x", b"now a file"), Raw::Dir("y/"), Raw::File("y/z", b"2")])).unwrap();
    assert_eq!(std::fs::read(s.root.join("x")).unwrap(), b"now a file");
    assert!(s.root.join("y").is_dir());
}

#[test]
fn devices_owners_and_modes_survive_as_root() {
    let s = scene();
    let mut b = tar::Builder::new(Vec::new());
    let mut h = header("bin/su", EntryType::Regular, 0o4755, 3);
    h.set_mtime(1_234_567_890);
    h.set_cksum();
    b.append(&h, &b"elf"[..]).unwrap();
    let mut h = header("home/u/f", EntryType::Regular, 0o600, 0);
    h.set_uid(1000);
    h.set_gid(1001);
    h.set_size(0);
    h.set_cksum();
    b.append(&h, std::io::empty()).unwrap();
    let mut h = header("dev/null", EntryType::Char, 0o666, 0);
    h.set_device_major(1).unwrap();
    h.set_device_minor(3).unwrap();
    h.set_mode(0o666);
    h.set_cksum();
    b.append(&h, std::io::empty()).unwrap();
    apply(&s.root, &b.into_inner().unwrap()).unwrap();
    let su = std::fs::metadata(s.root.join("bin/su")).unwrap();
    assert_eq!((su.mode() & 0o7777, su.mtime()), (0o4755, 1_234_567_890));
    let f = std::fs::metadata(s.root.join("home/u/f")).unwrap();
    assert_eq!((f.uid(), f.gid()), (1000, 1001));
    let dev = std::fs::symlink_metadata(s.root.join("dev/null")).unwrap();
    assert!(dev.file_type().is_char_device());
    assert_eq!((rustix::fs::major(dev.rdev()), rustix::fs::minor(dev.rdev())), (1, 3));
}

#[test]
fn record_mode_keeps_intent_in_xattrs() {
    let s = scene();
    let mut b = tar::Builder::new(Vec::new());
    let mut h = header("ro", EntryType::Regular, 0o4511, 0);
    h.set_uid(33);
    h.set_gid(44);
    h.set_size(0);
    h.set_cksum();
    b.append(&h, std::io::empty()).unwrap();
    let r = RootDir::open(&s.root).unwrap();
    let opts = UnpackOptions { ownership: OwnershipMode::Record };
    unpack_layer(&r, Codec::None, &b.into_inner().unwrap()[..], &opts).unwrap();
    let md = std::fs::metadata(s.root.join("ro")).unwrap();
    assert_eq!(md.mode() & 0o7777, 0o4711, "widened so the single mapped id can write");
    assert_eq!(xattr::get(s.root.join("ro"), OWNER_XATTR).unwrap().unwrap(), b"33:44:4511");
}

#[test]
fn forged_rbuild_xattrs_are_dropped() {
    let s = scene();
    let mut b = tar::Builder::new(Vec::new());
    let h = header("f", EntryType::Regular, 0o644, 0);
    b.append_pax_extensions([("SCHILY.xattr.user.rbuild.device", &b"c:1:3"[..]), ("SCHILY.xattr.user.ok", &b"1"[..])])
        .unwrap();
    b.append(&h, std::io::empty()).unwrap();
    apply(&s.root, &b.into_inner().unwrap()).unwrap();
    let f = s.root.join("f");
    assert_eq!(xattr::get(&f, "user.rbuild.device").unwrap(), None);
    assert_eq!(xattr::get(&f, "user.ok").unwrap().as_deref(), Some(&b"1"[..]));
}

/// Runs in a real user namespace with a single mapped id (`unshare --map-root-user`):
/// device nodes cannot be created and other owners cannot be set, so both are
/// recorded — and come back out of the layer writer.
#[test]
fn rootless_single_id_records_devices_and_owners() {
    const NAME: &str = "rootless_single_id_records_devices_and_owners";
    if std::env::var_os("RBUILD_TEST_IN_USERNS").is_none() {
        let probe = std::process::Command::new("unshare").args(["--user", "--map-root-user", "true"]).status();
        if !probe.is_ok_and(|s| s.success()) {
            eprintln!("skipping: user namespaces unavailable");
            return;
        }
        let st = std::process::Command::new("unshare")
            .args(["--user", "--map-root-user"])
            .arg(std::env::current_exe().unwrap())
            .args(["--exact", NAME, "--test-threads=1"])
            .env("RBUILD_TEST_IN_USERNS", "1")
            .status()
            .unwrap();
        assert!(st.success(), "test inside the user namespace failed");
        return;
    }
    let s = scene();
    let mut b = tar::Builder::new(Vec::new());
    let mut h = header("dev/null", EntryType::Char, 0o666, 0);
    h.set_device_major(1).unwrap();
    h.set_device_minor(3).unwrap();
    h.set_cksum();
    b.append(&h, std::io::empty()).unwrap();
    b.append(&header("fifo", EntryType::Fifo, 0o600, 0), std::io::empty()).unwrap();
    let mut h = header("f", EntryType::Regular, 0o640, 2);
    h.set_uid(1000);
    h.set_gid(1000);
    h.set_cksum();
    b.append(&h, &b"hi"[..]).unwrap();
    let r = RootDir::open(&s.root).unwrap();
    let opts = UnpackOptions { ownership: OwnershipMode::Record };
    let stats = unpack_layer(&r, Codec::None, &b.into_inner().unwrap()[..], &opts).unwrap();
    assert_eq!(stats.recorded_devices, 1);
    let dev = s.root.join("dev/null");
    assert!(std::fs::symlink_metadata(&dev).unwrap().is_file());
    assert_eq!(xattr::get(&dev, "user.rbuild.device").unwrap().unwrap(), b"c:1:3");
    let entries = rbuild_builder::layer::snapshot::native::all_entries(&s.root).unwrap();
    let lo = rbuild_builder::layer::LayerOptions {
        compression: rbuild_builder::layer::Compression::None,
        ..Default::default()
    };
    let (_, blob) = rbuild_builder::layer::write_layer(Vec::new(), &s.root, &entries, &lo).unwrap();
    let mut seen = Vec::new();
    for e in tar::Archive::new(blob.as_slice()).entries().unwrap() {
        let e = e.unwrap();
        let h = e.header();
        seen.push((e.path().unwrap().display().to_string(), h.entry_type(), h.uid().unwrap(), h.mode().unwrap()));
    }
    assert_eq!(
        seen,
        vec![
            ("dev/".to_string(), EntryType::Directory, 0, 0o755),
            ("dev/null".to_string(), EntryType::Char, 0, 0o666),
            ("f".to_string(), EntryType::Regular, 1000, 0o640),
            ("fifo".to_string(), EntryType::Fifo, 0, 0o600),
        ]
    );
}
