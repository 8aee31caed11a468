//! RUN: the command in the sandbox, with the stage's env, ARGs, USER, WORKDIR and SHELL,
//! its `--mount`s ([`run_mount`]) and heredocs ([`run_heredoc`]).

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use super::{run_heredoc, run_mount, shell, InstructionError, StepContext, StepEffect};
use crate::dockerfile::instruction::{NetworkMode, Run, Security};
use crate::image::ImageConfig;
use crate::plan::Step;
use crate::sandbox::{
    self, resolve_user, ExtraMount, MountSource, ProcessSandbox, SandboxConfig, SandboxError, UserSpec,
};

/// Runs the command; a non-zero exit fails the step with the command and its code.
pub(super) fn run(
    run: &Run,
    step: &Step,
    config: &ImageConfig,
    ctx: &StepContext<'_>,
) -> Result<StepEffect, InstructionError> {
    if run.security == Security::Insecure {
        return Err(InstructionError::unsupported("RUN --security=insecure"));
    }
    let script = run_heredoc::script(run, &shell(config));
    let argv = script.argv;
    let command = argv.join(" ");
    let user = match config.config.user.as_deref().filter(|u| !u.is_empty()) {
        None => UserSpec::root(),
        Some(u) => resolve_user(ctx.rootfs, u)?,
    };
    let mut prepared = run_mount::prepare(&run.mounts, config, ctx)?;
    let pipes = match script.pipe {
        Some((name, body)) => Some(pipe_dir(&name, &body, ctx)?),
        None => None,
    };
    if let Some(dir) = &pipes {
        prepared.mounts.push(ExtraMount {
            source: MountSource::Bind(dir.path().to_path_buf()),
            target: run_heredoc::PIPES_DIR.into(),
            readonly: true,
        });
    }
    let sandbox = ctx.exec.sandbox.get().map_err(|reason| InstructionError::NoIsolation { reason })?;
    // Container isolation has no mount namespace to bind a file in: it keeps the pod's hosts.
    let hosts = match sandbox.isolation_mode() {
        sandbox::IsolationMode::Container => None,
        _ => Some(hosts_dir(ctx)?),
    };
    if let Some(dir) = &hosts {
        prepared.mounts.insert(
            0,
            ExtraMount {
                source: MountSource::Bind(dir.path().join("hosts")),
                target: "/etc/hosts".into(),
                readonly: true,
            },
        );
    }
    let mut env = environment(config, step, ctx, &user);
    env.append(&mut prepared.env);
    let sandbox = ctx.exec.sandbox.get().map_err(|reason| InstructionError::NoIsolation { reason })?;
    let emulation = sandbox.emulation_for(ctx.platform)?;
    let cfg = SandboxConfig {
        rootfs: ctx.rootfs.to_path_buf(),
        argv,
        env,
        cwd: PathBuf::from(config.config.working_dir.as_deref().unwrap_or("/")),
        user,
        network: match run.network {
            NetworkMode::None => sandbox::NetworkMode::None,
            NetworkMode::Default | NetworkMode::Host => sandbox::NetworkMode::Host,
        },
        hostname: HOSTNAME.into(),
        mounts: std::mem::take(&mut prepared.mounts),
        id_map: ctx.exec.identity.id_map_mode(),
        process_sandbox: ProcessSandbox::Private,
        overlay: None,
        emulation,
    };
    let event = ctx.event;
    let report = sandbox
        .run(&cfg, |_, chunk| ctx.exec.progress.output(&event, chunk), &ctx.exec.cancel)
        .map_err(|source: SandboxError| InstructionError::Sandbox { command: command.clone(), source })?;
    if !report.status.success() {
        // Under a single-id map (no subordinate range) the sandbox's hint says how to get one.
        let hint = report.id_map_hint();
        return Err(InstructionError::RunFailed { command, code: report.status.code(), hint });
    }
    drop(prepared);
    Ok(StepEffect::Filesystem)
}

/// The hostname of a RUN, BuildKit's (its executor names every build container so).
const HOSTNAME: &str = "buildkitsandbox";

/// A directory holding `hosts` as BuildKit writes it for a RUN (loopback names and the
/// hostname), bound over `/etc/hosts` like BuildKit does instead of the host's file.
fn hosts_dir(ctx: &StepContext<'_>) -> Result<tempfile::TempDir, InstructionError> {
    let work = &ctx.exec.work_dir;
    let dir =
        tempfile::Builder::new().prefix("hosts-").tempdir_in(work).map_err(InstructionError::io("create", work))?;
    let file = dir.path().join("hosts");
    let body = format!("127.0.0.1\tlocalhost {HOSTNAME}\n::1\tlocalhost ip6-localhost ip6-loopback\n");
    std::fs::write(&file, body).map_err(InstructionError::io("write", &file))?;
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644))
        .map_err(InstructionError::io("chmod", &file))?;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
        .map_err(InstructionError::io("chmod", dir.path()))?;
    Ok(dir)
}

/// A directory holding the heredoc script `name` (mode 0755), mounted at `/dev/pipes`.
fn pipe_dir(name: &str, body: &str, ctx: &StepContext<'_>) -> Result<tempfile::TempDir, InstructionError> {
    if name.is_empty() || name.contains('/') || name == "." || name == ".." {
        return Err(InstructionError::unsupported(format!("a RUN heredoc script named {name:?}")));
    }
    let work = &ctx.exec.work_dir;
    let dir =
        tempfile::Builder::new().prefix("pipes-").tempdir_in(work).map_err(InstructionError::io("create", work))?;
    let file = dir.path().join(name);
    std::fs::write(&file, body).map_err(InstructionError::io("write", &file))?;
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o755))
        .map_err(InstructionError::io("chmod", &file))?;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
        .map_err(InstructionError::io("chmod", dir.path()))?;
    Ok(dir)
}

/// The config's ENV, then the build args the plan gave the RUN (an ARG declared after an
/// ENV of the same name replaces its value, as in BuildKit's build state), then proxy args
/// ENV does not set; `PATH` and `HOME` default like Docker's.
fn environment(config: &ImageConfig, step: &Step, ctx: &StepContext<'_>, user: &UserSpec) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = config
        .config
        .env
        .iter()
        .map(|kv| kv.split_once('=').map_or((kv.clone(), String::new()), |(k, v)| (k.into(), v.into())))
        .collect();
    let has = |env: &[(String, String)], k: &str| env.iter().any(|(key, _)| key == k);
    for (k, v) in &step.args {
        match env.iter_mut().find(|(key, _)| key == k) {
            Some(slot) => slot.1 = v.clone(),
            None => env.push((k.clone(), v.clone())),
        }
    }
    for (k, v) in &ctx.plan.proxy_args {
        if !has(&env, k) {
            env.push((k.clone(), v.clone()));
        }
    }
    if !has(&env, "PATH") {
        env.push(("PATH".into(), sandbox::DEFAULT_PATH.into()));
    }
    if !has(&env, "HOME") {
        let home = user.home.clone().unwrap_or_else(|| PathBuf::from("/"));
        env.push(("HOME".into(), home.to_string_lossy().into_owned()));
    }
    env
}
