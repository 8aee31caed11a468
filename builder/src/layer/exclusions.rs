//! Paths of a root that unpacking, snapshots and a root wipe leave alone. Empty for a
//! stage root of its own; under container isolation (the build runs in the container's own
//! `/`) they are rbuild's state, the context, mounted volumes, `/proc`, `/sys`, `/dev` and the
//! service-account secrets (see `executor::isolation`).

use std::path::{Component, Path, PathBuf};

/// A set of paths relative to a root (no leading `/`), each excluded with everything below it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Exclusions(Vec<PathBuf>);

impl Exclusions {
    /// Nothing excluded.
    pub fn none() -> Self {
        Self::default()
    }

    /// From absolute or root-relative paths; the root itself, `..` paths and paths below
    /// another excluded path are dropped.
    pub fn new(paths: impl IntoIterator<Item = PathBuf>) -> Self {
        let mut out: Vec<PathBuf> = paths
            .into_iter()
            .filter(|p| !p.components().any(|c| c == Component::ParentDir))
            .map(|p| p.components().filter(|c| matches!(c, Component::Normal(_))).collect::<PathBuf>())
            .filter(|p| !p.as_os_str().is_empty())
            .collect();
        out.sort();
        // Component-wise order puts a parent right before what lies below it.
        let mut kept: Vec<PathBuf> = Vec::with_capacity(out.len());
        for p in out {
            if !kept.last().is_some_and(|k| p.starts_with(k)) {
                kept.push(p);
            }
        }
        Self(kept)
    }

    /// No path is excluded.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The excluded paths, relative and sorted.
    pub fn paths(&self) -> &[PathBuf] {
        &self.0
    }

    /// `rel` is an excluded path or lies below one.
    pub fn covers(&self, rel: &Path) -> bool {
        self.0.iter().any(|e| rel.starts_with(e))
    }

    /// An excluded path lies strictly below `rel`, so `rel` may not be removed as a whole.
    pub fn holds(&self, rel: &Path) -> bool {
        self.0.iter().any(|e| e.as_path() != rel && e.starts_with(rel))
    }

    /// `rel` must be left in place: excluded, or the parent of an exclusion.
    pub fn keeps(&self, rel: &Path) -> bool {
        self.covers(rel) || self.holds(rel)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[rstest::rstest]
    #[case("proc", true, false)]
    #[case("proc/self/fd", true, false)]
    #[case("run", false, true)]
    #[case("run/secrets/kubernetes.io/token", true, false)]
    #[case("run/other", false, false)]
    #[case("procfs", false, false)]
    #[case("var/cache/rbuild", true, false)]
    #[case("var", false, true)]
    fn covers_and_holds(#[case] rel: &str, #[case] covers: bool, #[case] holds: bool) {
        let ex = Exclusions::new(
            ["/proc", "/run/secrets/kubernetes.io", "var/cache/rbuild/", "/", "/../x", "/proc/1"].map(PathBuf::from),
        );
        assert_eq!(ex.paths().len(), 3, "{ex:?}");
        assert_eq!(ex.covers(Path::new(rel)), covers, "covers {rel}");
        assert_eq!(ex.holds(Path::new(rel)), holds, "holds {rel}");
    }

    #[test]
    fn snapshots_ignore_changes_in_excluded_paths() {
        use crate::layer::snapshot::native::{diff_excluding, write_index_excluding};
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        for d in ["etc", "state", "mnt/volume"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        let ex = Exclusions::new(["state", "mnt/volume"].map(PathBuf::from));
        let index = dir.path().join("index");
        write_index_excluding(&root, &index, &ex).unwrap();
        std::fs::write(root.join("etc/new"), "x").unwrap();
        std::fs::write(root.join("state/blob"), "x").unwrap();
        std::fs::write(root.join("mnt/volume/file"), "x").unwrap();
        let diff = diff_excluding(&root, &index, &ex).unwrap();
        let paths: Vec<String> = diff.entries.iter().map(|e| e.tar_path().display().to_string()).collect();
        assert_eq!(paths, ["etc", "etc/new"]);
    }

    #[test]
    fn unpacking_neither_writes_nor_removes_excluded_paths() {
        use crate::layer::root_path::RootDir;
        use crate::layer::unpack::{unpack_layer_excluding, OwnershipMode, UnpackOptions};
        use crate::layer::Codec;
        let dir = tempfile::tempdir().unwrap();
        for d in ["proc", "run/secrets", "keep"] {
            std::fs::create_dir_all(dir.path().join(d)).unwrap();
        }
        std::fs::write(dir.path().join("run/secrets/token"), "secret").unwrap();
        std::fs::write(dir.path().join("keep/file"), "kept").unwrap();
        let mut tar = tar::Builder::new(Vec::new());
        for (name, body) in
            [("proc/version", "fake"), ("etc/os-release", "base"), ("run/.wh..wh..opq", ""), ("keep/.wh.file", "")]
        {
            let mut h = tar::Header::new_gnu();
            h.set_size(body.len() as u64);
            h.set_mode(0o644);
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(0);
            h.set_cksum();
            tar.append_data(&mut h, name, body.as_bytes()).unwrap();
        }
        let bytes = tar.into_inner().unwrap();
        let root = RootDir::open(dir.path()).unwrap();
        let opts = UnpackOptions { ownership: OwnershipMode::Record };
        let ex = Exclusions::new(["proc", "run/secrets", "keep/file"].map(PathBuf::from));
        unpack_layer_excluding(&root, Codec::None, bytes.as_slice(), &opts, &ex).unwrap();
        assert_eq!(std::fs::read_to_string(dir.path().join("etc/os-release")).unwrap(), "base");
        assert!(!dir.path().join("proc/version").exists());
        assert_eq!(std::fs::read_to_string(dir.path().join("run/secrets/token")).unwrap(), "secret");
        assert_eq!(std::fs::read_to_string(dir.path().join("keep/file")).unwrap(), "kept");
    }
}
