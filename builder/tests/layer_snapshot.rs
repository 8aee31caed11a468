//! Snapshots: the native stat-index diff and the overlay upper-dir conversion give
//! exactly the expected change sets, and applying them reproduces the new state.

mod layer_support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use layer_support::{assert_same_tree, rich_tree, Compare};
use rbuild_builder::layer::root_path::RootDir;
use rbuild_builder::layer::snapshot::{native, overlay};
use rbuild_builder::layer::unpack::{unpack_layer, OwnershipMode, UnpackOptions};
use rbuild_builder::layer::{write_layer, Compression, LayerEntry, LayerOptions};

fn show(entries: &[LayerEntry]) -> Vec<String> {
    entries
        .iter()
        .map(|e| match e {
            LayerEntry::Path(p) => p.display().to_string(),
            LayerEntry::Whiteout(p) => format!("-{}", p.display()),
            LayerEntry::Opaque(p) => format!("opaque {}", p.display()),
        })
        .collect()
}

fn cp_a(from: &Path, to: &Path) {
    assert!(Command::new("cp").arg("-a").arg(from).arg(to).status().unwrap().success());
}

/// Applies `entries` read from `src` onto `base` through a real layer blob.
fn apply_changes(src: &Path, entries: &[LayerEntry], base: &Path) {
    let opts = LayerOptions { compression: Compression::Gzip { level: 1 }, ..Default::default() };
    let (desc, blob) = write_layer(Vec::new(), src, entries, &opts).unwrap();
    let root = RootDir::open(base).unwrap();
    let uo = UnpackOptions { ownership: OwnershipMode::Chown(Default::default()) };
    unpack_layer(&root, desc.codec, blob.as_slice(), &uo).unwrap();
}

type Step = fn(&Path);

#[rstest::rstest]
#[case::nothing(|_: &Path| {}, &[])]
#[case::add_file(|r: &Path| std::fs::write(r.join("etc/new"), b"n").unwrap(), &["etc", "etc/new"])]
#[case::modify_same_size(|r: &Path| std::fs::write(r.join("etc/config"), b"key=VALUE\n").unwrap(), &["etc", "etc/config"])]
#[case::chmod(|r: &Path| std::fs::set_permissions(r.join("empty"), std::fs::Permissions::from_mode(0o600)).unwrap(), &["empty"])]
#[case::xattr(|r: &Path| xattr::set(r.join("empty"), "user.x", b"1").unwrap(), &["empty"])]
#[case::delete_file(|r: &Path| std::fs::remove_file(r.join("etc/config")).unwrap(), &["etc", "etc/.wh.config"])]
#[case::delete_dir(|r: &Path| std::fs::remove_dir_all(r.join("home")).unwrap(), &[".wh.home"])]
#[case::replace_dir(|r: &Path| { std::fs::remove_dir_all(r.join("home/user")).unwrap(); std::fs::create_dir(r.join("home/user")).unwrap(); std::fs::write(r.join("home/user/x"), b"x").unwrap(); }, &["*"])]
#[case::dir_to_file(|r: &Path| { std::fs::remove_dir_all(r.join("var")).unwrap(); std::fs::write(r.join("var"), b"f").unwrap(); }, &["var"])]
#[case::file_to_dir(|r: &Path| { std::fs::remove_file(r.join("empty")).unwrap(); std::fs::create_dir(r.join("empty")).unwrap(); std::fs::write(r.join("empty/in"), b"i").unwrap(); }, &["empty", "empty/in"])]
fn native_diff_finds_exactly_the_change(#[case] step: Step, #[case] want: &[&str]) {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root");
    std::fs::create_dir(&root).unwrap();
    rich_tree(&root);
    let base = t.path().join("base");
    cp_a(&root, &base);
    let index = t.path().join("index");
    native::write_index(&root, &index).unwrap();
    step(&root);
    let diff = native::diff(&root, &index).unwrap();
    let mut got: Vec<String> = diff.entries.iter().map(|e| e.tar_path().display().to_string()).collect();
    got.retain(|p| (p != "etc" || want.contains(&"etc")) && (p != "home" || want.contains(&"home")));
    // A replaced directory is opaque when its inode changed; file systems may reuse the
    // inode, and then each old child gets a whiteout instead (same result when applied).
    let either = ["home/user/.wh..wh..opq", "home/user/.wh.notes.txt"];
    if want == ["*"] {
        assert_eq!(got.len(), 3, "{got:?}");
        assert!(either.contains(&got[1].as_str()), "{got:?}");
    } else {
        assert_eq!(got, want.iter().map(|s| s.to_string()).collect::<Vec<_>>(), "{:?}", show(&diff.entries));
    }
    apply_changes(&root, &diff.entries, &base);
    assert_same_tree(&root, &base, Compare::Rootless);
    diff.commit().unwrap();
    assert!(native::diff(&root, &index).unwrap().entries.is_empty(), "committed index is the new base");
}

#[test]
fn overlay_upper_with_both_whiteout_forms() {
    let t = tempfile::tempdir().unwrap();
    let up = t.path();
    for d in ["opq", "xw", "plain"] {
        std::fs::create_dir(up.join(d)).unwrap();
    }
    std::fs::write(up.join("opq/kept"), b"k").unwrap();
    xattr::set(up.join("opq"), "user.overlay.opaque", b"y").unwrap();
    xattr::set(up.join("xw"), "user.overlay.opaque", b"x").unwrap();
    std::fs::write(up.join("xw/gone"), b"").unwrap();
    xattr::set(up.join("xw/gone"), "user.overlay.whiteout", b"").unwrap();
    assert!(Command::new("mknod").arg(up.join("plain/dev-gone")).args(["c", "0", "0"]).status().unwrap().success());
    std::fs::write(up.join("plain/new"), b"n").unwrap();
    let got = show(&overlay::upper_changes(up).unwrap());
    assert_eq!(got, ["opq", "opaque opq", "opq/kept", "plain", "-plain/dev-gone", "plain/new", "xw", "-xw/gone"]);
}

#[test]
fn overlay_redirects_are_refused() {
    let t = tempfile::tempdir().unwrap();
    std::fs::create_dir(t.path().join("moved")).unwrap();
    xattr::set(t.path().join("moved"), "user.overlay.redirect", b"/old").unwrap();
    let err = overlay::upper_changes(t.path()).unwrap_err();
    assert!(err.to_string().contains("redirect_dir=off"), "{err}");
}

struct Mount(PathBuf);
impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// A real overlayfs mount (as root here; the sandbox mounts inside a user namespace).
#[test]
fn real_overlay_upper_reproduces_merged_view() {
    let t = tempfile::tempdir().unwrap();
    let d = |n: &str| t.path().join(n);
    for n in ["lower", "upper", "work", "merged"] {
        std::fs::create_dir(d(n)).unwrap();
    }
    rich_tree(&d("lower"));
    let opts = format!(
        "lowerdir={},upperdir={},workdir={},userxattr",
        d("lower").display(),
        d("upper").display(),
        d("work").display()
    );
    let ok = Command::new("mount").args(["-t", "overlay", "overlay", "-o", &opts]).arg(d("merged")).status();
    if !ok.is_ok_and(|s| s.success()) {
        eprintln!("skipping: cannot mount overlayfs here");
        return;
    }
    let _m = Mount(d("merged"));
    let m = d("merged");
    std::fs::write(m.join("etc/config"), b"changed\n").unwrap();
    std::fs::remove_file(m.join("empty")).unwrap();
    std::fs::remove_dir_all(m.join("home/user")).unwrap();
    std::fs::create_dir(m.join("home/user")).unwrap();
    std::fs::write(m.join("home/user/fresh"), b"f").unwrap();
    std::fs::write(m.join("added"), b"a").unwrap();
    let entries = overlay::upper_changes(&d("upper")).unwrap();
    let base = d("base");
    cp_a(&d("lower"), &base);
    apply_changes(&d("upper"), &entries, &base);
    assert_same_tree(&m, &base, Compare::Rootless);
}
