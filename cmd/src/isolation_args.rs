//! `--isolation` and `--force`: which RUN isolation `rbuild build` uses, resolved at start-up
//! (probing the environment for `auto`) and printed with the reason.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use rbuild_builder::executor::isolation::{
    choose, container_exclusions, Chosen, IsolationRequest, Probed, StageRoots, OWN_IMAGE_MARKER,
};
use rbuild_builder::sandbox::IsolationMode;

/// The `--isolation` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum IsolationArg {
    /// The strongest this environment allows: userns, else chroot (real root), else container (in rbuild's own image).
    #[default]
    Auto,
    /// Rootless: RUN in a new user namespace (plus mount, pid, ipc, uts).
    Userns,
    /// Real root only: chroot plus mount, pid, ipc and uts namespaces, no user namespace.
    Chroot,
    /// No isolation (Kaniko's model, for pods that forbid user namespaces): builds in this
    /// container's own root file system, which it replaces; only in rbuild's image or with --force.
    Container,
}

/// RUN isolation flags of `rbuild build`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct IsolationArgs {
    /// How RUN steps are isolated.
    #[arg(long, value_enum, default_value_t = IsolationArg::Auto, env = "RBUILD_ISOLATION")]
    pub isolation: IsolationArg,
    /// Allow `--isolation container` outside rbuild's own image (Kaniko's `--force`): it
    /// replaces the root file system rbuild runs in.
    #[arg(long)]
    pub force: bool,
    /// RUN shares rbuild's pid namespace and binds the existing /proc instead of mounting a
    /// fresh one (BuildKit's --oci-worker-no-process-sandbox), for pods with a masked /proc:
    /// a RUN can then see and signal rbuild's processes. `auto` falls back to it by itself.
    #[arg(long, env = "RBUILD_NO_PROCESS_SANDBOX")]
    pub no_process_sandbox: bool,
}

impl IsolationArgs {
    /// Whether the choice can wait until a RUN needs it: under `auto` without container
    /// isolation in reach (rbuild's own image or `--force`), every outcome keeps stage roots
    /// in fresh directories, so nothing before the first RUN depends on it.
    pub fn deferrable(&self) -> bool {
        self.isolation == IsolationArg::Auto && !self.force && !Path::new(OWN_IMAGE_MARKER).is_file()
    }

    /// Whether a failed choice may wait for the first RUN: under `auto` a build without RUN
    /// (PSS "restricted" pods) needs no isolation at all.
    pub fn failure_deferrable(&self) -> bool {
        self.isolation == IsolationArg::Auto
    }

    /// Picks the isolation (probing for `auto` with its trial roots under `state_dir`, rbuild's
    /// own state directory); [`describe`] says which and why.
    pub fn resolve(&self, state_dir: &Path) -> anyhow::Result<Chosen> {
        let request = match self.isolation {
            IsolationArg::Auto => IsolationRequest::Auto,
            IsolationArg::Userns => IsolationRequest::Mode(IsolationMode::UserNs),
            IsolationArg::Chroot => IsolationRequest::Mode(IsolationMode::Chroot),
            IsolationArg::Container => IsolationRequest::Mode(IsolationMode::Container),
        };
        let marker = Path::new(OWN_IMAGE_MARKER);
        Ok(choose(request, marker.is_file(), self.force, self.no_process_sandbox, marker, || Probed::probe(state_dir))?)
    }
}

/// The `isolation: <mode> (<reason>)` line `rbuild build` prints once the steps are done
/// (one fixed place, whether the choice was made first or probed alongside the build).
pub fn describe(chosen: &Chosen) -> String {
    format!("isolation: {} ({})", chosen.name(), chosen.reason)
}

/// Stage roots for `mode`: in place in `/` under container isolation, sparing `keep`
/// (state directory, context, credentials), the running binary and every mount point.
pub fn stage_roots(mode: IsolationMode, keep: &[PathBuf]) -> anyhow::Result<StageRoots> {
    if mode != IsolationMode::Container {
        return Ok(StageRoots::Fresh);
    }
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")
        .context("container isolation reads /proc/self/mountinfo to spare mounted volumes")?;
    let mut extra: Vec<PathBuf> = keep.iter().map(|p| std::path::absolute(p).unwrap_or_else(|_| p.clone())).collect();
    extra.extend(std::env::current_exe().ok());
    let root = PathBuf::from("/");
    let excluded = container_exclusions(&root, &mountinfo, &extra);
    tracing::info!(?excluded, "container isolation: building in /");
    Ok(StageRoots::InPlace { root, excluded })
}
