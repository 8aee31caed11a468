//! Converts an overlayfs upper directory into layer entries.
//!
//! Handles both whiteout forms: a 0:0 character device (kernel whiteout) and a
//! regular file with `user.overlay.whiteout` (userxattr "xwhiteout", used when a
//! rootless mount cannot create devices). A directory with `*.overlay.opaque=y`
//! becomes opaque (`=x` only marks a directory holding xwhiteouts). The sandbox
//! must mount with `userxattr,redirect_dir=off,metacopy=off` (upper files complete).

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use walkdir::WalkDir;

use super::{relative, ChangeSet, SnapshotError};
use crate::layer::LayerEntry;

const PREFIXES: [&str; 2] = ["user.overlay.", "trusted.overlay."];

fn overlay_xattr(path: &Path, key: &str) -> Result<Option<Vec<u8>>, SnapshotError> {
    for prefix in PREFIXES {
        let v = xattr::get(path, format!("{prefix}{key}"))
            .map_err(|source| SnapshotError::Attr { path: path.to_path_buf(), source })?;
        if v.is_some() {
            return Ok(v);
        }
    }
    Ok(None)
}

/// The change set an upper directory describes (read the files from `upper`).
pub fn upper_changes(upper: &Path) -> Result<Vec<LayerEntry>, SnapshotError> {
    let mut set = ChangeSet::default();
    for ent in WalkDir::new(upper).min_depth(1).sort_by_file_name() {
        let ent = ent.map_err(|source| SnapshotError::Walk { root: upper.to_path_buf(), source })?;
        let rel = relative(upper, ent.path());
        let md = ent.metadata().map_err(|source| SnapshotError::Walk { root: upper.to_path_buf(), source })?;
        let ft = md.file_type();
        if ft.is_char_device() && md.rdev() == 0 {
            set.add(LayerEntry::Whiteout(rel));
            continue;
        }
        if ft.is_symlink() {
            set.add(LayerEntry::Path(rel));
            continue;
        }
        for (key, feature) in [("redirect", "redirect_dir"), ("metacopy", "metacopy")] {
            if overlay_xattr(ent.path(), key)?.is_some() {
                return Err(SnapshotError::OverlayFeature { path: ent.path().to_path_buf(), feature });
            }
        }
        if ft.is_file() && md.len() == 0 && overlay_xattr(ent.path(), "whiteout")?.is_some() {
            set.add(LayerEntry::Whiteout(rel));
        } else if ft.is_dir() && overlay_xattr(ent.path(), "opaque")?.as_deref() == Some(b"y") {
            set.add(LayerEntry::Path(rel.clone()));
            set.add(LayerEntry::Opaque(rel));
        } else {
            set.add(LayerEntry::Path(rel));
        }
    }
    Ok(set.into_entries())
}
