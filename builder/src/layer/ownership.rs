//! Ownership, modes and device nodes that the disk cannot hold as-is.
//!
//! # Contract (read by the sandbox, the executor, COPY and the tar writer)
//!
//! * Ids on disk are *host* ids. [`IdMaps`] translates them to the ids inside the
//!   build's user namespace (what layers carry) and back.
//! * When a file's intended owner or mode cannot be set (rootless with a single-id
//!   map), whoever creates the file writes the xattr [`OWNER_XATTR`] =
//!   `"<uid>:<gid>:<mode octal>"` (container ids, mode incl. setuid/setgid/sticky).
//!   The tar writer then uses that uid/gid; it uses the recorded mode while the
//!   on-disk mode still equals [`widen_mode`] of it, and the on-disk mode once a
//!   step changed it (a `chmod` in RUN wins).
//! * A device node that cannot be created is an empty regular file carrying
//!   [`DEVICE_XATTR`] = `"c:<major>:<minor>"` or `"b:<major>:<minor>"`; the tar
//!   writer turns it back into a device entry.
//! * An xattr that cannot be set (e.g. `security.capability` without
//!   `CAP_SETFCAP`) is stored as `user.rbuild.x.<name>` ([`fallback_xattr`]).
//! * Symlinks and fifos cannot carry `user.*` xattrs: their recorded owner is lost and
//!   they are written with the mapped on-disk owner (root for files the caller owns).
//! * Incoming layers can never set `user.rbuild.*` xattrs (the unpacker drops them).

use std::fmt;

/// Xattr recording the intended `uid:gid:mode` of a file.
pub const OWNER_XATTR: &str = "user.rbuild.owner";
/// Xattr marking a placeholder file as a device node `c|b:major:minor`.
pub const DEVICE_XATTR: &str = "user.rbuild.device";
/// Prefix of all xattrs rbuild owns.
pub const RBUILD_XATTR_PREFIX: &str = "user.rbuild.";
/// Prefix for xattrs stored under another name because they could not be set.
pub const FALLBACK_XATTR_PREFIX: &str = "user.rbuild.x.";

/// Errors parsing recorded ownership/device xattrs.
#[derive(Debug, thiserror::Error)]
pub enum OwnershipError {
    /// The owner xattr is not `uid:gid:mode`.
    #[error("malformed {OWNER_XATTR} value {value:?}")]
    MalformedOwner { value: String },
    /// The device xattr is not `c|b:major:minor`.
    #[error("malformed {DEVICE_XATTR} value {value:?}")]
    MalformedDevice { value: String },
    /// An id has no mapping.
    #[error("{kind} {id} is not mapped")]
    Unmapped { kind: &'static str, id: u32 },
    /// `chown` refused the ids: the user namespace the build runs in does not map them.
    #[error("uid {uid} or gid {gid} is outside this build's user namespace (the ids in /proc/self/uid_map and gid_map); grant the build user a subordinate range in /etc/subuid and /etc/subgid that covers them")]
    OutsideNamespace { uid: u32, gid: u32 },
}

/// One contiguous id range: `container..container+len` ↔ `host..host+len`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IdRange {
    /// First id inside the namespace.
    pub container: u32,
    /// First id on the host.
    pub host: u32,
    /// Number of ids.
    pub len: u32,
}

/// An id map (the content of `/proc/PID/uid_map`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdMap(pub Vec<IdRange>);

impl IdMap {
    /// The identity map over all ids (running as real root, or inside the namespace).
    pub fn identity() -> Self {
        IdMap(vec![IdRange { container: 0, host: 0, len: u32::MAX }])
    }

    /// Container id → host id.
    pub fn to_host(&self, id: u32) -> Option<u32> {
        self.0.iter().find_map(|r| {
            let off = id.checked_sub(r.container)?;
            (off < r.len).then(|| r.host + off)
        })
    }

    /// Host id → container id.
    pub fn to_container(&self, id: u32) -> Option<u32> {
        self.0.iter().find_map(|r| {
            let off = id.checked_sub(r.host)?;
            (off < r.len).then(|| r.container + off)
        })
    }
}

/// Uid and gid maps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdMaps {
    /// Uid map.
    pub uid: IdMap,
    /// Gid map.
    pub gid: IdMap,
}

impl Default for IdMaps {
    fn default() -> Self {
        IdMaps { uid: IdMap::identity(), gid: IdMap::identity() }
    }
}

impl IdMaps {
    /// Host `uid:gid` → container ids; unmapped host ids become 65534 (`nobody`),
    /// as the kernel shows them inside the namespace.
    pub fn container_owner(&self, uid: u32, gid: u32) -> (u32, u32) {
        (self.uid.to_container(uid).unwrap_or(65534), self.gid.to_container(gid).unwrap_or(65534))
    }

    /// Container `uid:gid` → host ids.
    pub fn host_owner(&self, uid: u32, gid: u32) -> Result<(u32, u32), OwnershipError> {
        let u = self.uid.to_host(uid).ok_or(OwnershipError::Unmapped { kind: "uid", id: uid })?;
        let g = self.gid.to_host(gid).ok_or(OwnershipError::Unmapped { kind: "gid", id: gid })?;
        Ok((u, g))
    }
}

/// Intended owner and mode of a file, recorded in [`OWNER_XATTR`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OwnerRecord {
    /// Container uid.
    pub uid: u32,
    /// Container gid.
    pub gid: u32,
    /// Permission bits incl. setuid/setgid/sticky (`0o7777` mask).
    pub mode: u32,
}

impl fmt::Display for OwnerRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{:o}", self.uid, self.gid, self.mode & 0o7777)
    }
}

impl OwnerRecord {
    /// Parses `uid:gid:mode` (mode in octal).
    pub fn parse(value: &[u8]) -> Result<Self, OwnershipError> {
        let text = String::from_utf8_lossy(value);
        let bad = || OwnershipError::MalformedOwner { value: text.to_string() };
        let mut it = text.split(':');
        let (Some(u), Some(g), Some(m), None) = (it.next(), it.next(), it.next(), it.next()) else {
            return Err(bad());
        };
        Ok(OwnerRecord {
            uid: u.parse().map_err(|_| bad())?,
            gid: g.parse().map_err(|_| bad())?,
            mode: u32::from_str_radix(m, 8).map_err(|_| bad())? & 0o7777,
        })
    }

    /// The mode the tar writer should write given the current on-disk mode.
    pub fn effective_mode(&self, on_disk: u32, is_dir: bool) -> u32 {
        if on_disk & 0o7777 == widen_mode(self.mode, is_dir) {
            self.mode
        } else {
            on_disk & 0o7777
        }
    }
}

/// The on-disk mode used for a file whose intended mode is recorded: the owner
/// can always read and write it (and enter it, for directories), so later
/// steps running as the single mapped id keep working.
pub fn widen_mode(mode: u32, is_dir: bool) -> u32 {
    let extra = if is_dir { 0o700 } else { 0o600 };
    (mode | extra) & 0o7777
}

/// Kind of a recorded device node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceKind {
    /// Character device.
    Char,
    /// Block device.
    Block,
}

/// A device node recorded in [`DEVICE_XATTR`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeviceRecord {
    /// Char or block.
    pub kind: DeviceKind,
    /// Major number.
    pub major: u32,
    /// Minor number.
    pub minor: u32,
}

impl fmt::Display for DeviceRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let k = match self.kind {
            DeviceKind::Char => 'c',
            DeviceKind::Block => 'b',
        };
        write!(f, "{k}:{}:{}", self.major, self.minor)
    }
}

impl DeviceRecord {
    /// Parses `c|b:major:minor`.
    pub fn parse(value: &[u8]) -> Result<Self, OwnershipError> {
        let text = String::from_utf8_lossy(value);
        let bad = || OwnershipError::MalformedDevice { value: text.to_string() };
        let mut it = text.split(':');
        let (Some(k), Some(ma), Some(mi), None) = (it.next(), it.next(), it.next(), it.next()) else {
            return Err(bad());
        };
        let kind = match k {
            "c" => DeviceKind::Char,
            "b" => DeviceKind::Block,
            _ => return Err(bad()),
        };
        Ok(DeviceRecord { kind, major: ma.parse().map_err(|_| bad())?, minor: mi.parse().map_err(|_| bad())? })
    }
}

/// The name under which an xattr that could not be set is stored.
pub fn fallback_xattr(name: &str) -> String {
    format!("{FALLBACK_XATTR_PREFIX}{name}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_round_trip_and_effective_mode() {
        let r = OwnerRecord { uid: 33, gid: 44, mode: 0o4755 };
        let parsed = OwnerRecord::parse(r.to_string().as_bytes()).unwrap();
        assert_eq!(parsed, r);
        assert_eq!(r.effective_mode(0o4755, false), 0o4755);
        assert_eq!(r.effective_mode(0o700, false), 0o700);
        let ro = OwnerRecord { uid: 0, gid: 0, mode: 0o444 };
        assert_eq!(ro.effective_mode(widen_mode(0o444, false), false), 0o444);
    }

    #[test]
    fn malformed_records_are_errors() {
        for bad in ["", "1:2", "1:2:3:4", "a:2:755", "1:2:9"] {
            assert!(OwnerRecord::parse(bad.as_bytes()).is_err(), "{bad}");
        }
        for bad in ["", "x:1:2", "c:1", "c:a:1"] {
            assert!(DeviceRecord::parse(bad.as_bytes()).is_err(), "{bad}");
        }
    }

    #[test]
    fn id_maps_translate_both_ways() {
        let m = IdMap(vec![
            IdRange { container: 0, host: 1000, len: 1 },
            IdRange { container: 1, host: 100000, len: 65536 },
        ]);
        assert_eq!(m.to_host(0), Some(1000));
        assert_eq!(m.to_host(5), Some(100004));
        assert_eq!(m.to_container(100004), Some(5));
        assert_eq!(m.to_container(1000), Some(0));
        assert_eq!(m.to_container(7), None);
    }
}
