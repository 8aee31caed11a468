//! Snapshots: what a step changed, as a sorted list of [`LayerEntry`]s plus the
//! directory the tar writer reads them from.
//!
//! Two snapshotters, chosen at run time ([`choose_snapshotter`]; `--snapshotter`
//! forces one): [`overlay`] converts an overlayfs upper directory (the change
//! itself, so cost follows the change) and [`native`] diffs a tree walk against a
//! stat index written at unpack time (no content hashing: `ctime` changes on every
//! content or metadata write and user space cannot set it).

pub mod native;
pub mod overlay;

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

use super::LayerEntry;

/// Which snapshotter to use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SnapshotterKind {
    /// overlayfs upper directory (needs kernel ≥ 5.11 and a mount inside a user namespace).
    Overlay,
    /// Tree walk against a stat index.
    Native,
}

/// A kernel release as `major.minor`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct KernelVersion {
    /// Major version.
    pub major: u32,
    /// Minor version.
    pub minor: u32,
}

impl KernelVersion {
    /// Parses `uname -r` output such as `6.1.0-13-amd64`.
    pub fn parse(release: &str) -> Option<Self> {
        let mut it = release.split(|c: char| !c.is_ascii_digit());
        Some(KernelVersion { major: it.next()?.parse().ok()?, minor: it.next()?.parse().ok()? })
    }
}

/// Whether this kernel can mount overlayfs with `userxattr` inside a user namespace
/// (5.11+). Probe-free: the sandbox does the actual mount test.
pub fn overlay_supported(kernel: KernelVersion) -> bool {
    kernel >= KernelVersion { major: 5, minor: 11 }
}

/// Picks the snapshotter: the forced one, else overlay when the sandbox's probe succeeded.
pub fn choose_snapshotter(forced: Option<SnapshotterKind>, overlay_usable: bool) -> SnapshotterKind {
    match (forced, overlay_usable) {
        (Some(kind), _) => kind,
        (None, true) => SnapshotterKind::Overlay,
        (None, false) => SnapshotterKind::Native,
    }
}

/// Errors taking a snapshot.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// Walking the tree failed.
    #[error("cannot walk {root}")]
    Walk {
        root: PathBuf,
        #[source]
        source: walkdir::Error,
    },
    /// Reading or writing the stat index failed.
    #[error("cannot {op} stat index {path}")]
    Index {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The stat index is not one this version wrote.
    #[error("stat index {path} is corrupt or from another version")]
    CorruptIndex { path: PathBuf },
    /// Reading a file's attributes failed.
    #[error("cannot read attributes of {path}")]
    Attr {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The upper directory uses an overlayfs feature whose layout we cannot convert.
    #[error("overlay upper {path} uses {feature}; mount with redirect_dir=off,metacopy=off")]
    OverlayFeature { path: PathBuf, feature: &'static str },
}

/// Collects entries keyed by tar path (which orders them) and adds missing parent
/// directories so every layer can be applied on its own.
#[derive(Default)]
pub(crate) struct ChangeSet(BTreeMap<PathBuf, LayerEntry>);

impl ChangeSet {
    pub(crate) fn add(&mut self, entry: LayerEntry) {
        let key = entry.tar_path();
        let mut parent = key.parent();
        while let Some(p) = parent.filter(|p| !p.as_os_str().is_empty()) {
            self.0.entry(p.to_path_buf()).or_insert_with(|| LayerEntry::Path(p.to_path_buf()));
            parent = p.parent();
        }
        self.0.insert(key, entry);
    }

    pub(crate) fn into_entries(self) -> Vec<LayerEntry> {
        self.0.into_values().collect()
    }
}

/// Path of a walk entry relative to its root.
pub(crate) fn relative(root: &Path, p: &Path) -> PathBuf {
    p.strip_prefix(root).unwrap_or(p).to_path_buf()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[rstest::rstest]
    #[case("6.1.0-13-amd64", Some((6, 1)), true)]
    #[case("5.10.0", Some((5, 10)), false)]
    #[case("5.11.22-foo", Some((5, 11)), true)]
    #[case("garbage", None, false)]
    fn kernel_versions(#[case] rel: &str, #[case] want: Option<(u32, u32)>, #[case] overlay: bool) {
        let v = KernelVersion::parse(rel);
        assert_eq!(v.map(|v| (v.major, v.minor)), want);
        assert_eq!(v.is_some_and(overlay_supported), overlay);
    }

    #[test]
    fn choice_honours_force() {
        assert_eq!(choose_snapshotter(Some(SnapshotterKind::Native), true), SnapshotterKind::Native);
        assert_eq!(choose_snapshotter(None, true), SnapshotterKind::Overlay);
        assert_eq!(choose_snapshotter(None, false), SnapshotterKind::Native);
    }
}
