//! WORKDIR: sets the working directory and creates it (owned by the USER, like BuildKit).

use std::path::Path;

use super::{absolute, InstructionError, StepContext, StepEffect};
use crate::image::ImageConfig;
use crate::layer::root_path::{Escape, MissingDirs, RootDir};
use crate::sandbox::resolve_user;

/// `path` cleaned lexically like Go's `path.Join` in BuildKit's WORKDIR: `.` dropped, `..`
/// removes the component before it (never above `/`), no trailing slash.
fn clean(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    format!("/{}", parts.join("/"))
}

/// Makes `path` (relative to the current WORKDIR) the working directory and creates it.
pub(super) fn workdir(
    path: &str,
    config: &mut ImageConfig,
    ctx: &StepContext<'_>,
) -> Result<StepEffect, InstructionError> {
    let target = clean(&absolute(path, config));
    let resolve = |source| InstructionError::Resolve { path: target.clone(), source };
    let root = RootDir::open(ctx.rootfs).map_err(resolve)?;
    let host = root.resolve_host_path(Path::new(&target), Escape::Clamp, MissingDirs::Create).map_err(resolve)?;
    if !host.exists() {
        std::fs::create_dir(&host).map_err(InstructionError::io("create directory", &host))?;
        if let Some(user) = config.config.user.as_deref().filter(|u| !u.is_empty()) {
            let spec = resolve_user(ctx.rootfs, user)?;
            ctx.exec
                .identity
                .set_owner(&host, spec.uid, spec.gid, 0o755, true)
                .map_err(InstructionError::io("set the owner of", &host))?;
        }
    }
    config.config.working_dir = Some(target);
    Ok(StepEffect::Filesystem)
}

#[cfg(test)]
mod tests {
    #[rstest::rstest]
    #[case("/a/b/c/d/../e", "/a/b/c/e")]
    #[case("/a/./b/", "/a/b")]
    #[case("/../x", "/x")]
    #[case("/", "/")]
    fn cleans_like_path_join(#[case] input: &str, #[case] want: &str) {
        assert_eq!(super::clean(input), want);
    }
}
