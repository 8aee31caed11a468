//! The commit of a checkout, read from its git metadata without a `git` binary:
//! `.git` directory or a worktree's `.git` file, HEAD (symbolic or detached), loose refs
//! (in the worktree's or the common dir) and `packed-refs`.

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};

/// The full commit id HEAD names, for the repository containing `start` (searched upwards).
pub fn head_commit(start: &Path) -> Result<String> {
    let start = start.canonicalize().with_context(|| format!("reading {}", start.display()))?;
    let git_dir = start
        .ancestors()
        .find_map(git_dir_at)
        .with_context(|| format!("no git repository at or above {}", start.display()))?;
    let common = match std::fs::read_to_string(git_dir.join("commondir")) {
        Ok(rel) => git_dir.join(rel.trim()),
        Err(_) => git_dir.clone(),
    };
    let head = read(&git_dir.join("HEAD"))?;
    let head = head.trim();
    let Some(reference) = head.strip_prefix("ref:").map(str::trim) else {
        return checked(head);
    };
    for dir in [&git_dir, &common] {
        if let Ok(id) = std::fs::read_to_string(dir.join(reference)) {
            return checked(id.trim());
        }
    }
    let packed = std::fs::read_to_string(common.join("packed-refs")).unwrap_or_default();
    for line in packed.lines().filter(|l| !l.starts_with(['#', '^'])) {
        if let Some((id, name)) = line.split_once(' ') {
            if name.trim() == reference {
                return checked(id);
            }
        }
    }
    bail!("HEAD names {reference}, which has no commit yet in {}", git_dir.display())
}

/// Whether `dir` (a directory in a work tree) holds changes that are not committed:
/// modified, staged, deleted or untracked files under it (ignored files do not count), as
/// `git status` reports them. Needs the `git` binary: without it nobody can tell, and the
/// caller must not pretend the tree is clean. `safe.directory=*`: a CI checkout is often
/// owned by another user, which only matters for git's own config, never read here.
pub fn has_changes(dir: &Path) -> Result<bool> {
    let out = std::process::Command::new("git")
        .args(["-c", "safe.directory=*", "-C"])
        .arg(dir)
        .args(["status", "--porcelain", "--untracked-files=normal", "--", "."])
        .output();
    let out = match out {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            bail!("`git` is not installed, so rbuild cannot tell whether {} has uncommitted changes", dir.display())
        }
        Err(e) => return Err(e).context("running git status"),
    };
    if !out.status.success() {
        bail!("git status in {} failed: {}", dir.display(), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(!out.stdout.is_empty())
}

/// The git directory of a work tree root, if `dir` is one.
fn git_dir_at(dir: &Path) -> Option<PathBuf> {
    let dot_git = dir.join(".git");
    if dot_git.is_dir() {
        return Some(dot_git);
    }
    let text = std::fs::read_to_string(&dot_git).ok()?;
    let target = text.trim().strip_prefix("gitdir:")?.trim();
    Some(dir.join(target))
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

fn checked(id: &str) -> Result<String> {
    if id.len() >= 40 && id.chars().all(|c| c.is_ascii_hexdigit()) {
        Ok(id.to_ascii_lowercase())
    } else {
        bail!("{id:?} is not a commit id")
    }
}

/// `git rev-parse --short`'s default length.
pub fn short(id: &str) -> &str {
    id.get(..7).unwrap_or(id)
}

#[cfg(test)]
mod tests {
    use super::{head_commit, short};
    use std::path::Path;

    const A: &str = "0123456789abcdef0123456789abcdef01234567";
    const B: &str = "89abcdef0123456789abcdef0123456789abcdef";

    fn write(root: &Path, files: &[(&str, String)]) {
        for (path, text) in files {
            let p = root.join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        }
    }

    #[rstest::rstest]
    #[case::loose_ref(&[(".git/HEAD", "ref: refs/heads/main\n".into()), (".git/refs/heads/main", format!("{A}\n"))], A)]
    #[case::detached(&[(".git/HEAD", format!("{B}\n"))], B)]
    #[case::packed_ref(&[(".git/HEAD", "ref: refs/heads/main\n".into()), (".git/packed-refs", format!("# pack-refs with: peeled\n{B} refs/heads/other\n{A} refs/heads/main\n"))], A)]
    #[case::worktree_file(&[
        (".git", "gitdir: main/.git/worktrees/wt\n".into()),
        ("main/.git/worktrees/wt/HEAD", "ref: refs/heads/wt\n".into()),
        ("main/.git/worktrees/wt/commondir", "../..\n".into()),
        ("main/.git/refs/heads/wt", format!("{B}\n")),
    ], B)]
    fn reads_head_from_a_subdirectory(#[case] files: &[(&str, String)], #[case] want: &str) {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), files);
        let sub = dir.path().join("app/src");
        std::fs::create_dir_all(&sub).unwrap();
        assert_eq!(head_commit(&sub).unwrap(), want);
        assert_eq!(short(want).len(), 7);
    }

    #[test]
    fn unborn_branch_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), &[(".git/HEAD", "ref: refs/heads/main\n".into())]);
        assert!(head_commit(dir.path()).is_err());
    }
}
