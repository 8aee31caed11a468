//! User-namespace id maps: which ids the caller may map (`/etc/subuid`, `/etc/subgid`),
//! which map a RUN gets, and how it is written (directly, or by `newuidmap`/`newgidmap`).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::{Deserialize, Serialize};

use super::sys::{IdMap, IdMapWriter, IdRange};

/// Ids a conventional full range holds (0–65535); only named in messages and the
/// nested map's clip of a host root's own `0 0 4294967295` map.
pub const FULL_RANGE: u32 = 65536;

/// The highest id a user namespace can map: `4294967295` is `(uid_t)-1`, never valid.
pub const MAX_ID: u32 = u32::MAX - 1;

/// Most lines a kernel id map takes (Linux ≥ 4.15); one is the caller's own id.
const MAX_MAP_LINES: usize = 340;

/// Errors of id-map planning and writing.
#[derive(Debug, thiserror::Error)]
pub enum IdMapError {
    /// A subordinate range was required but the caller has none.
    #[error("no subordinate id range for uid {uid} in {subuid} and {subgid}; add `USER:100000:65536` to both files (e.g. `usermod --add-subuids 100000-165535 --add-subgids 100000-165535 USER`)")]
    NoRange { uid: u32, subuid: PathBuf, subgid: PathBuf },
    /// `newuidmap`/`newgidmap` is missing.
    #[error("{tool} not found; install the `uidmap` package")]
    HelperMissing { tool: &'static str },
    /// Writing a map file failed.
    #[error("cannot write {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A helper could not be started.
    #[error("cannot run {tool}")]
    Spawn {
        tool: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A helper ran and failed.
    #[error("{tool} failed with {status}: {stderr}")]
    Helper { tool: PathBuf, status: std::process::ExitStatus, stderr: String },
}

/// Which map the caller asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum IdMapMode {
    /// The full range when `/etc/subuid` and `/etc/subgid` grant one and the helpers exist, else one id.
    #[default]
    Auto,
    /// Only the caller's own uid and gid, mapped to 0.
    Single,
    /// The full range; an error if it cannot be had.
    Range,
}

/// Which map a RUN actually got; a failing RUN under [`IdMapKind::Single`] deserves a hint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum IdMapKind {
    /// Only id 0 exists inside (`chown 1000` fails with `EINVAL`).
    Single,
    /// Id 0 and the caller's whole subordinate range (ids 1…N) exist inside.
    Range,
    /// No user namespace ([`super::IsolationMode::Chroot`]).
    Host,
}

/// A subordinate id range from `/etc/subuid` or `/etc/subgid`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubIdRange {
    /// First subordinate id.
    pub start: u32,
    /// Number of ids.
    pub count: u32,
}

/// Every range granted to `name` or `id` in a subid file, in file order (garbage lines and
/// ranges that would pass the 32-bit limit skipped).
pub fn subid_ranges(contents: &str, name: Option<&str>, id: u32) -> Vec<SubIdRange> {
    contents
        .lines()
        .filter_map(|line| {
            let mut fields = line.trim().split(':');
            let owner = fields.next()?;
            let start = fields.next()?.trim().parse::<u32>().ok()?;
            let count = fields.next()?.trim().parse::<u32>().ok()?;
            let matches = Some(owner) == name || owner.parse::<u32>().ok() == Some(id);
            (matches && count > 0 && start.checked_add(count).is_some()).then_some(SubIdRange { start, count })
        })
        .fold(Vec::new(), |mut kept: Vec<SubIdRange>, r| {
            // A line repeated or overlapping an earlier one (two writers of the file) would
            // make the kernel refuse the whole map with EINVAL; the first one counts.
            let overlaps = |k: &SubIdRange| r.start < k.start + k.count && k.start < r.start + r.count;
            if !kept.iter().any(overlaps) {
                kept.push(r);
            }
            kept
        })
}

/// The map of a caller with subordinate `ranges`: its own id as 0, then every subordinate
/// id, one after the other from 1, up to [`MAX_ID`] and the kernel's line limit. Any range
/// size works (1 id, 65536, 600000 …); images needing ids beyond get a clear error at
/// unpack ([`unmapped_ids`]).
pub fn range_ranges(own: u32, ranges: &[SubIdRange]) -> Vec<IdRange> {
    let mut out = vec![IdRange { inside: 0, outside: own, count: 1 }];
    let mut next: u64 = 1;
    for r in ranges.iter().take(MAX_MAP_LINES - 1) {
        let room = u64::from(MAX_ID) + 1 - next;
        let count = u64::from(r.count).min(room);
        if count == 0 {
            break;
        }
        // Both fit in u32: next ≤ MAX_ID and count ≤ MAX_ID + 1 - next.
        out.push(IdRange { inside: next as u32, outside: r.start, count: count as u32 });
        next += count;
    }
    out
}

/// The ids of `wanted` that `ranges` does not map, for an error naming them.
pub fn unmapped_ids(ranges: &[IdRange], wanted: impl IntoIterator<Item = u32>) -> Vec<u32> {
    let mut out: Vec<u32> = wanted.into_iter().filter(|id| host_id(ranges, *id).is_none()).collect();
    out.sort_unstable();
    out.dedup();
    out
}

/// The map decided for one RUN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedMap {
    /// Which kind it is.
    pub kind: IdMapKind,
    /// The ranges.
    pub map: IdMap,
    /// How to write it.
    pub writer: IdMapWriter,
}

/// Where id-map inputs live; fields so tests can point them at a tempdir.
#[derive(Debug, Clone)]
pub struct IdMapSources {
    /// `/etc/subuid`.
    pub subuid: PathBuf,
    /// `/etc/subgid`.
    pub subgid: PathBuf,
    /// `newuidmap`, if found.
    pub newuidmap: Option<PathBuf>,
    /// `newgidmap`, if found.
    pub newgidmap: Option<PathBuf>,
}

impl IdMapSources {
    /// The host's files and helpers.
    pub fn host() -> Self {
        Self {
            subuid: PathBuf::from("/etc/subuid"),
            subgid: PathBuf::from("/etc/subgid"),
            newuidmap: find_helper("newuidmap"),
            newgidmap: find_helper("newgidmap"),
        }
    }

    /// Decide the map for a caller with `uid`/`gid` (and login `name`, if known).
    pub fn plan(&self, mode: IdMapMode, name: Option<&str>, uid: u32, gid: u32) -> Result<PlannedMap, IdMapError> {
        let single = PlannedMap {
            kind: IdMapKind::Single,
            map: IdMap {
                uids: vec![IdRange { inside: 0, outside: uid, count: 1 }],
                gids: vec![IdRange { inside: 0, outside: gid, count: 1 }],
            },
            writer: IdMapWriter::Direct,
        };
        if mode == IdMapMode::Single {
            return Ok(single);
        }
        match self.range_map(name, uid, gid) {
            Ok(map) => Ok(map),
            Err(err) if mode == IdMapMode::Auto => {
                tracing::debug!(%err, "no subordinate id range, using a single-id map");
                Ok(single)
            }
            Err(err) => Err(err),
        }
    }

    fn range_map(&self, name: Option<&str>, uid: u32, gid: u32) -> Result<PlannedMap, IdMapError> {
        let read = |p: &Path| fs::read_to_string(p).unwrap_or_default();
        let no_range = || IdMapError::NoRange { uid, subuid: self.subuid.clone(), subgid: self.subgid.clone() };
        let sub_u = subid_ranges(&read(&self.subuid), name, uid);
        let sub_g = subid_ranges(&read(&self.subgid), name, gid);
        if sub_u.is_empty() || sub_g.is_empty() {
            return Err(no_range());
        }
        if self.newuidmap.is_none() {
            return Err(IdMapError::HelperMissing { tool: "newuidmap" });
        }
        if self.newgidmap.is_none() {
            return Err(IdMapError::HelperMissing { tool: "newgidmap" });
        }
        Ok(PlannedMap {
            kind: IdMapKind::Range,
            map: IdMap { uids: range_ranges(uid, &sub_u), gids: range_ranges(gid, &sub_g) },
            writer: IdMapWriter::Helpers,
        })
    }

    /// Write `map` for `pid` the way `writer` says; `proc_root` is normally `/proc`.
    pub fn write(&self, proc_root: &Path, pid: u32, map: &IdMap, writer: IdMapWriter) -> Result<(), IdMapError> {
        match writer {
            IdMapWriter::Direct | IdMapWriter::Privileged => {
                let dir = proc_root.join(pid.to_string());
                if writer == IdMapWriter::Direct {
                    write_file(&dir.join("setgroups"), "deny")?;
                }
                write_file(&dir.join("uid_map"), &map_lines(&map.uids))?;
                write_file(&dir.join("gid_map"), &map_lines(&map.gids))
            }
            IdMapWriter::Helpers => {
                let uid_tool = self.newuidmap.as_ref().ok_or(IdMapError::HelperMissing { tool: "newuidmap" })?;
                let gid_tool = self.newgidmap.as_ref().ok_or(IdMapError::HelperMissing { tool: "newgidmap" })?;
                // Both helpers run at once: each is a setuid exec costing a few milliseconds.
                let uid_child = spawn_helper(uid_tool, pid, &map.uids)?;
                let gid_child = spawn_helper(gid_tool, pid, &map.gids)?;
                let uid_done = finish_helper(uid_tool, uid_child);
                let gid_done = finish_helper(gid_tool, gid_child);
                uid_done.and(gid_done)
            }
        }
    }
}

/// The map a RUN gets from a caller that is uid 0 (real root, or root of rbuild's build
/// namespace): every id its own namespace has (`/proc/self/uid_map`, `gid_map`),
/// mapped through unchanged. `None` when fewer than 2 ids exist (then the single map is used).
pub fn nested_map(own_uid_map: &str, own_gid_map: &str) -> Option<PlannedMap> {
    let uids = identity_ranges(own_uid_map);
    let gids = identity_ranges(own_gid_map);
    let covers_more_than_root = |r: &[IdRange]| r.iter().map(|x| u64::from(x.count)).sum::<u64>() > 1;
    (covers_more_than_root(&uids)
        && covers_more_than_root(&gids)
        && host_id(&uids, 0) == Some(0)
        && host_id(&gids, 0) == Some(0))
    .then_some(PlannedMap { kind: IdMapKind::Range, map: IdMap { uids, gids }, writer: IdMapWriter::Privileged })
}

/// The inside ids of a `uid_map` text (all of them, up to [`MAX_ID`]), as identity ranges,
/// one per line: the kernel wants each range of a nested map inside a single range of its
/// parent's.
fn identity_ranges(map: &str) -> Vec<IdRange> {
    let mut ranges: Vec<IdRange> = map
        .lines()
        .filter_map(|line| {
            let mut f = line.split_whitespace().map(|n| n.parse::<u64>().ok());
            let (Some(Some(inside)), Some(Some(_)), Some(Some(count))) = (f.next(), f.next(), f.next()) else {
                return None;
            };
            let end = (inside + count).min(u64::from(MAX_ID) + 1);
            let (start, count) = (u32::try_from(inside).ok()?, u32::try_from(end.checked_sub(inside)?).ok()?);
            (count > 0).then_some(IdRange { inside: start, outside: start, count })
        })
        .collect();
    ranges.sort_unstable_by_key(|r| r.inside);
    ranges
}

/// Map `inside` to its host id under `ranges`, if mapped.
pub fn host_id(ranges: &[IdRange], inside: u32) -> Option<u32> {
    ranges.iter().find_map(|r| {
        let offset = inside.checked_sub(r.inside)?;
        (offset < r.count).then(|| r.outside.checked_add(offset)).flatten()
    })
}

fn map_lines(ranges: &[IdRange]) -> String {
    ranges.iter().map(|r| format!("{} {} {}\n", r.inside, r.outside, r.count)).collect()
}

fn write_file(path: &Path, contents: &str) -> Result<(), IdMapError> {
    fs::write(path, contents).map_err(|source| IdMapError::Write { path: path.to_path_buf(), source })
}

fn spawn_helper(tool: &Path, pid: u32, ranges: &[IdRange]) -> Result<std::process::Child, IdMapError> {
    let mut cmd = Command::new(tool);
    cmd.arg(pid.to_string()).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
    for r in ranges {
        cmd.args([r.inside.to_string(), r.outside.to_string(), r.count.to_string()]);
    }
    cmd.spawn().map_err(|source| IdMapError::Spawn { tool: tool.to_path_buf(), source })
}

fn finish_helper(tool: &Path, child: std::process::Child) -> Result<(), IdMapError> {
    let out = child.wait_with_output().map_err(|source| IdMapError::Spawn { tool: tool.to_path_buf(), source })?;
    if out.status.success() {
        Ok(())
    } else {
        let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
        Err(IdMapError::Helper { tool: tool.to_path_buf(), status: out.status, stderr })
    }
}

fn find_helper(name: &str) -> Option<PathBuf> {
    ["/usr/bin", "/bin", "/usr/local/bin", "/usr/sbin", "/sbin"]
        .iter()
        .map(|dir| Path::new(dir).join(name))
        .find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case::by_name("rb:100000:65536\n", Some("rb"), 1000, vec![(100000, 65536)])]
    #[case::by_uid("1000:200000:70000\n", Some("rb"), 1000, vec![(200000, 70000)])]
    #[case::small("rb:100000:1000\n", Some("rb"), 1000, vec![(100000, 1000)])]
    #[case::one_id("rb:100000:1\n", Some("rb"), 1000, vec![(100000, 1)])]
    #[case::empty_range("rb:100000:0\n", Some("rb"), 1000, vec![])]
    #[case::other_user("alice:100000:65536\n", Some("rb"), 1000, vec![])]
    #[case::several("rb:1:10\nalice:5:5\nrb:300000:600000\n", Some("rb"), 1000, vec![(1, 10), (300000, 600000)])]
    #[case::duplicate("rb:100000:65536\nrb:100000:65536\nrb:150000:10\nrb:165536:5\n", Some("rb"), 1000, vec![(100000, 65536), (165536, 5)])]
    #[case::garbage("rb:x:y\n::\n\nrb", Some("rb"), 1000, vec![])]
    #[case::overflow("rb:4294967295:65536\n", Some("rb"), 1000, vec![])]
    fn subid_lookup(#[case] file: &str, #[case] name: Option<&str>, #[case] id: u32, #[case] want: Vec<(u32, u32)>) {
        let got: Vec<_> = subid_ranges(file, name, id).iter().map(|r| (r.start, r.count)).collect();
        assert_eq!(got, want);
    }

    /// The whole range is mapped whatever its size, up to the 32-bit limit.
    #[rstest]
    #[case::one_id(vec![(100000, 1)], vec![(0, 1000, 1), (1, 100000, 1)])]
    #[case::conventional(vec![(100000, 65536)], vec![(0, 1000, 1), (1, 100000, 65536)])]
    #[case::wide(vec![(300000, 600000)], vec![(0, 1000, 1), (1, 300000, 600000)])]
    #[case::several(vec![(10, 5), (300000, 600000)], vec![(0, 1000, 1), (1, 10, 5), (6, 300000, 600000)])]
    #[case::to_the_limit(vec![(1, 4294967294)], vec![(0, 1000, 1), (1, 1, 4294967294)])]
    #[case::clipped_at_limit(vec![(1, 4000000000), (4000000001, 294967294)], vec![(0, 1000, 1), (1, 1, 4000000000), (4000000001, 4000000001, 294967294)])]
    fn whole_range_mapped(#[case] sub: Vec<(u32, u32)>, #[case] want: Vec<(u32, u32, u32)>) {
        let sub: Vec<SubIdRange> = sub.into_iter().map(|(start, count)| SubIdRange { start, count }).collect();
        let got: Vec<_> = range_ranges(1000, &sub).iter().map(|r| (r.inside, r.outside, r.count)).collect();
        assert_eq!(got, want);
        assert!(got.iter().all(|(i, _, c)| u64::from(*i) + u64::from(*c) <= u64::from(MAX_ID) + 1));
    }

    #[test]
    fn ids_beyond_the_map_are_named() {
        let map = range_ranges(1000, &[SubIdRange { start: 100000, count: 65536 }]);
        assert_eq!(unmapped_ids(&map, [0, 65536, 491327, 65537, 491327]), vec![65537, 491327]);
    }

    #[rstest]
    #[case::root(0, Some(1000))]
    #[case::app(1000, Some(100999))]
    #[case::last(65535, Some(165534))]
    #[case::unmapped(70000, None)]
    fn host_ids(#[case] inside: u32, #[case] want: Option<u32>) {
        let ranges =
            [IdRange { inside: 0, outside: 1000, count: 1 }, IdRange { inside: 1, outside: 100000, count: 65535 }];
        assert_eq!(host_id(&ranges, inside), want);
    }

    fn sources(dir: &Path, subuid: &str, helpers: bool) -> IdMapSources {
        fs::write(dir.join("subuid"), subuid).unwrap();
        fs::write(dir.join("subgid"), subuid).unwrap();
        let helper = helpers.then(|| dir.join("subuid"));
        IdMapSources {
            subuid: dir.join("subuid"),
            subgid: dir.join("subgid"),
            newuidmap: helper.clone(),
            newgidmap: helper,
        }
    }

    #[rstest]
    #[case::auto_with_range(IdMapMode::Auto, "rb:100000:65536\n", true, Some(IdMapKind::Range))]
    #[case::auto_without_range(IdMapMode::Auto, "", true, Some(IdMapKind::Single))]
    #[case::auto_without_helpers(IdMapMode::Auto, "rb:100000:65536\n", false, Some(IdMapKind::Single))]
    #[case::single(IdMapMode::Single, "rb:100000:65536\n", true, Some(IdMapKind::Single))]
    #[case::range_required(IdMapMode::Range, "", true, None)]
    fn plan_kind(
        #[case] mode: IdMapMode,
        #[case] subuid: &str,
        #[case] helpers: bool,
        #[case] want: Option<IdMapKind>,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let got = sources(dir.path(), subuid, helpers).plan(mode, Some("rb"), 1000, 1000).ok().map(|p| p.kind);
        assert_eq!(got, want);
    }

    #[rstest]
    #[case::host_root("0 0 4294967295\n", Some(vec![(0, 4294967295)]))]
    #[case::build_namespace("0 1000 1\n1 200000 65536\n", Some(vec![(0, 1), (1, 65536)]))]
    #[case::wide_build_namespace("0 1000 1\n1 200000 600000\n", Some(vec![(0, 1), (1, 600000)]))]
    #[case::holes("0 1000 1\n5 200000 10\n", Some(vec![(0, 1), (5, 10)]))]
    #[case::only_root("0 1000 1\n", None)]
    #[case::no_root("1 200000 65536\n", None)]
    #[case::garbage("x y z\n", None)]
    fn nested_maps(#[case] own: &str, #[case] want: Option<Vec<(u32, u32)>>) {
        let got = nested_map(own, own).map(|p| {
            assert_eq!((p.kind, p.writer, &p.map.uids), (IdMapKind::Range, IdMapWriter::Privileged, &p.map.gids));
            p.map
                .uids
                .iter()
                .inspect(|r| assert_eq!(r.inside, r.outside))
                .map(|r| (r.inside, r.count))
                .collect::<Vec<_>>()
        });
        assert_eq!(got, want);
    }

    #[test]
    fn direct_write_denies_setgroups_then_writes_maps() {
        let dir = tempfile::tempdir().unwrap();
        let src = sources(dir.path(), "", false);
        let plan = src.plan(IdMapMode::Single, None, 1000, 1001).unwrap();
        fs::create_dir(dir.path().join("42")).unwrap();
        src.write(dir.path(), 42, &plan.map, plan.writer).unwrap();
        let read = |f: &str| fs::read_to_string(dir.path().join("42").join(f)).unwrap();
        assert_eq!(
            (read("setgroups"), read("uid_map"), read("gid_map")),
            ("deny".into(), "0 1000 1\n".into(), "0 1001 1\n".into())
        );
    }
}
