//! OCI whiteout names: `.wh.NAME` deletes NAME from lower layers,
//! `.wh..wh..opq` makes its directory opaque.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

/// Prefix of a whiteout file name.
pub const WHITEOUT_PREFIX: &str = ".wh.";
/// Name of the opaque-directory marker.
pub const OPAQUE_MARKER: &str = ".wh..wh..opq";

/// What a file name in a layer means.
#[derive(Debug, PartialEq, Eq)]
pub enum WhiteoutName<'a> {
    /// An ordinary entry.
    Plain,
    /// The directory containing this entry is opaque.
    Opaque,
    /// The named sibling is deleted.
    Delete(&'a OsStr),
}

/// Classifies a file name.
pub fn classify(name: &OsStr) -> WhiteoutName<'_> {
    let bytes = name.as_bytes();
    if bytes == OPAQUE_MARKER.as_bytes() {
        WhiteoutName::Opaque
    } else if let Some(rest) = bytes.strip_prefix(WHITEOUT_PREFIX.as_bytes()) {
        WhiteoutName::Delete(OsStr::from_bytes(rest))
    } else {
        WhiteoutName::Plain
    }
}

/// The whiteout file name for a deleted `name`.
pub fn whiteout_name(name: &OsStr) -> std::ffi::OsString {
    let mut s = std::ffi::OsString::from(WHITEOUT_PREFIX);
    s.push(name);
    s
}
