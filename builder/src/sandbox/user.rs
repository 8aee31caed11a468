//! `USER` resolution: turn `name`, `uid`, `name:group` or `uid:gid` into ids using the
//! stage root's `/etc/passwd` and `/etc/group`, with supplementary groups, as Docker does.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// A resolved user: what the RUN's process runs as.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserSpec {
    /// User id inside the namespace.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// Supplementary groups (may include `gid`).
    pub groups: Vec<u32>,
    /// Home directory from `/etc/passwd` (for `HOME` when the caller wants it).
    pub home: Option<PathBuf>,
}

impl UserSpec {
    /// uid 0, gid 0, no supplementary groups: the default user.
    pub fn root() -> Self {
        Self { uid: 0, gid: 0, groups: Vec::new(), home: Some(PathBuf::from("/root")) }
    }
}

/// Errors of `USER` resolution.
#[derive(Debug, thiserror::Error)]
pub enum UserError {
    /// A name that is not in the root's `/etc/passwd`.
    #[error("unable to find user {name}: no matching entries in {passwd}")]
    UnknownUser { name: String, passwd: PathBuf },
    /// A group name that is not in the root's `/etc/group`.
    #[error("unable to find group {name}: no matching entries in {group}")]
    UnknownGroup { name: String, group: PathBuf },
    /// `/etc/passwd` or `/etc/group` exists but cannot be read.
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

struct PasswdEntry<'a> {
    name: &'a str,
    uid: u32,
    gid: u32,
    home: &'a str,
}

fn passwd_entries(contents: &str) -> impl Iterator<Item = PasswdEntry<'_>> {
    contents.lines().filter_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        match f.as_slice() {
            [name, _, uid, gid, _, home, ..] => {
                Some(PasswdEntry { name, uid: uid.parse().ok()?, gid: gid.parse().ok()?, home })
            }
            _ => None,
        }
    })
}

struct GroupEntry<'a> {
    name: &'a str,
    gid: u32,
    members: Vec<&'a str>,
}

fn group_entries(contents: &str) -> impl Iterator<Item = GroupEntry<'_>> {
    contents.lines().filter_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        match f.as_slice() {
            [name, _, gid, members, ..] => Some(GroupEntry {
                name,
                gid: gid.parse().ok()?,
                members: members.split(',').map(str::trim).filter(|m| !m.is_empty()).collect(),
            }),
            [name, _, gid] => Some(GroupEntry { name, gid: gid.parse().ok()?, members: Vec::new() }),
            _ => None,
        }
    })
}

fn read_optional(path: &Path) -> Result<String, UserError> {
    match fs::read_to_string(path) {
        Ok(s) => Ok(s),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(String::new()),
        Err(source) => Err(UserError::Read { path: path.to_path_buf(), source }),
    }
}

/// Resolve a Dockerfile `USER` value against `root/etc/passwd` and `root/etc/group`.
///
/// A numeric uid without a passwd entry runs with gid 0, like Docker. Supplementary
/// groups are the groups that list the user name as a member (none with an explicit group),
/// without the primary group: runc's `GetExecUser` as BuildKit uses it, so `id` shows the
/// same `groups=` as under BuildKit.
pub fn resolve_user(root: &Path, spec: &str) -> Result<UserSpec, UserError> {
    let passwd_path = root.join("etc/passwd");
    let group_path = root.join("etc/group");
    let passwd = read_optional(&passwd_path)?;
    let group = read_optional(&group_path)?;
    let (user_part, group_part) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let entry = passwd_entries(&passwd).find(|e| e.name == user_part || user_part.parse::<u32>().ok() == Some(e.uid));
    let (uid, mut gid, name, home) = match (&entry, user_part.parse::<u32>()) {
        (Some(e), _) => (e.uid, e.gid, Some(e.name), Some(PathBuf::from(e.home))),
        (None, Ok(uid)) => (uid, 0, None, None),
        (None, Err(_)) => return Err(UserError::UnknownUser { name: user_part.to_string(), passwd: passwd_path }),
    };
    if let Some(g) = group_part {
        gid = match (group_entries(&group).find(|e| e.name == g), g.parse::<u32>()) {
            (Some(e), _) => e.gid,
            (None, Ok(n)) => n,
            (None, Err(_)) => return Err(UserError::UnknownGroup { name: g.to_string(), group: group_path }),
        };
    }
    let mut groups = Vec::new();
    if group_part.is_none() {
        if let Some(name) = name {
            groups.extend(group_entries(&group).filter(|e| e.members.contains(&name)).map(|e| e.gid));
        }
    }
    groups.sort_unstable();
    groups.dedup();
    Ok(UserSpec { uid, gid, groups, home })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\napp:x:1000:1000:app:/home/app:/bin/sh\nbroken-line\n";
    const GROUP: &str = "root:x:0:\nwheel:x:10:app,other\naudio:x:29:app\napp:x:1000:\nnogroup:x:65534:\n";

    #[rstest]
    #[case::root_by_name("root", Ok((0, 0, vec![])))]
    #[case::app_by_name("app", Ok((1000, 1000, vec![10, 29])))]
    #[case::app_by_uid("1000", Ok((1000, 1000, vec![10, 29])))]
    #[case::unknown_uid("4242", Ok((4242, 0, vec![])))]
    #[case::explicit_group_name("app:wheel", Ok((1000, 10, vec![])))]
    #[case::explicit_gid("app:77", Ok((1000, 77, vec![])))]
    #[case::uid_gid("5:6", Ok((5, 6, vec![])))]
    #[case::unknown_name("ghost", Err("unable to find user ghost"))]
    #[case::unknown_group("app:ghosts", Err("unable to find group ghosts"))]
    fn resolves(#[case] spec: &str, #[case] want: Result<(u32, u32, Vec<u32>), &str>) {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("etc")).unwrap();
        fs::write(dir.path().join("etc/passwd"), PASSWD).unwrap();
        fs::write(dir.path().join("etc/group"), GROUP).unwrap();
        let got = resolve_user(dir.path(), spec).map(|u| (u.uid, u.gid, u.groups));
        match (got, want) {
            (Ok(g), Ok(w)) => assert_eq!(g, w),
            (Err(e), Err(w)) => assert!(e.to_string().starts_with(w), "{e}"),
            (g, w) => panic!("{spec}: got {g:?}, want {w:?}"),
        }
    }

    #[test]
    fn missing_files_allow_numeric_ids_only() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(resolve_user(dir.path(), "12").unwrap().uid, 12);
        assert!(matches!(resolve_user(dir.path(), "app"), Err(UserError::UnknownUser { .. })));
    }
}
