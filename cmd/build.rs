//! Records what `rbuild --version` reports: the commit the binary was built from (git, when
//! the source is a checkout; `RBUILD_COMMIT` for a build from an archive; else `unknown`),
//! whether the tree had changes, the profile, target and cargo features.

use std::path::Path;
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(["-c", "safe.directory=*"]).args(args).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn main() {
    println!("cargo:rerun-if-env-changed=RBUILD_COMMIT");
    let commit = std::env::var("RBUILD_COMMIT").ok().filter(|c| !c.is_empty()).or_else(|| {
        let head = git(&["rev-parse", "HEAD"])?;
        // Rebuilt after a commit, checkout or reset (HEAD or its reflog change).
        for dir in [git(&["rev-parse", "--git-dir"]), git(&["rev-parse", "--git-common-dir"])].into_iter().flatten() {
            for file in ["HEAD", "logs/HEAD", "index"] {
                let path = Path::new(&dir).join(file);
                if path.exists() {
                    println!("cargo:rerun-if-changed={}", path.display());
                }
            }
        }
        let dirty = git(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
        Some(if dirty { format!("{head}-dirty") } else { head })
    });
    let commit = commit.unwrap_or_else(|| "unknown".to_string());
    let short: String = commit
        .chars()
        .take(7)
        .chain(commit.ends_with("-dirty").then_some("-dirty").into_iter().flat_map(str::chars))
        .collect();
    let mut features: Vec<String> = std::env::vars()
        .filter_map(|(k, _)| k.strip_prefix("CARGO_FEATURE_").map(|f| f.to_lowercase().replace('_', "-")))
        .collect();
    features.sort();
    let features = if features.is_empty() { "none".to_string() } else { features.join(", ") };
    println!("cargo:rustc-env=RBUILD_COMMIT={commit}");
    println!("cargo:rustc-env=RBUILD_COMMIT_SHORT={short}");
    println!("cargo:rustc-env=RBUILD_PROFILE={}", std::env::var("PROFILE").unwrap_or_default());
    println!("cargo:rustc-env=RBUILD_TARGET={}", std::env::var("TARGET").unwrap_or_default());
    println!("cargo:rustc-env=RBUILD_FEATURES={features}");
}
