//! Test and benchmark helper: run one command in the sandbox.
//!
//! `sandbox_run [--user SPEC] [--cwd DIR] [--env K=V]... [--network none] [--id-map single|range]
//!  [--shared-pid] [--chroot] [--mount SRC:DST[:ro]] [--overlay LOWER:UPPER:WORK] [--report FILE] ROOTFS -- ARGV...`
//! or `sandbox_run --probe` to print what this host allows.
//!
//! Output is relayed; the exit code is the command's; `--report` writes the id map kind and
//! placeholders as `key=value` lines. SIGINT/SIGTERM cancel the RUN.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use rbuild_builder::sandbox::{
    cancel_on_signals, resolve_user, sandbox_init_main, ExtraMount, IdMapMode, IsolationMode, MountSource, NetworkMode,
    OverlaySpec, ProcessSandbox, Sandbox, SandboxConfig, Stream, UserSpec, INIT_ARG,
};

fn main() -> ExitCode {
    if std::env::args().nth(1).as_deref() == Some(INIT_ARG) {
        sandbox_init_main();
    }
    match run() {
        Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(255)),
        Err(e) => {
            let mut chain = format!("sandbox_run: {e}");
            let mut src = e.source();
            while let Some(s) = src {
                chain.push_str(&format!(": {s}"));
                src = s.source();
            }
            eprintln!("{chain}");
            ExitCode::from(125)
        }
    }
}

use std::error::Error;

fn run() -> Result<i32, Box<dyn Error>> {
    let mut args = std::env::args().skip(1);
    let (mut user, mut cwd, mut env) = (None, PathBuf::from("/"), Vec::new());
    let (mut network, mut id_map, mut process_sandbox) = (NetworkMode::Host, IdMapMode::Auto, ProcessSandbox::Private);
    let (mut mounts, mut overlay, mut report, mut rootfs) = (Vec::new(), None, None, None);
    let mut isolation = IsolationMode::UserNs;
    while let Some(a) = args.next() {
        let mut val = || args.next().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--user" => user = Some(val()?),
            "--cwd" => cwd = PathBuf::from(val()?),
            "--env" => {
                let v = val()?;
                let (k, v) = v.split_once('=').ok_or("--env needs K=V")?;
                env.push((k.to_string(), v.to_string()));
            }
            "--network" => network = if val()? == "none" { NetworkMode::None } else { NetworkMode::Host },
            "--id-map" => id_map = if val()? == "single" { IdMapMode::Single } else { IdMapMode::Range },
            "--shared-pid" => process_sandbox = ProcessSandbox::SharedPidNs,
            "--mount" => {
                let v = val()?;
                let parts: Vec<&str> = v.split(':').collect();
                let (src, dst) = (parts.first().ok_or("--mount SRC:DST")?, parts.get(1).ok_or("--mount SRC:DST")?);
                mounts.push(ExtraMount {
                    source: MountSource::Bind(src.into()),
                    target: dst.into(),
                    readonly: parts.get(2) == Some(&"ro"),
                });
            }
            "--overlay" => {
                let v = val()?;
                let p: Vec<PathBuf> = v.split(':').map(PathBuf::from).collect();
                let [l, u, w] = p.as_slice() else { return Err("--overlay LOWER:UPPER:WORK".into()) };
                overlay = Some(OverlaySpec { lower: vec![l.clone()], upper: u.clone(), work: w.clone() });
            }
            "--report" => report = Some(PathBuf::from(val()?)),
            "--chroot" => isolation = IsolationMode::Chroot,
            "--probe" => {
                println!("{:?}", Sandbox::new().probe());
                return Ok(0);
            }
            "--" => break,
            _ => rootfs = Some(PathBuf::from(a)),
        }
    }
    let rootfs = rootfs.ok_or("missing ROOTFS")?;
    let argv: Vec<String> = args.collect();
    let user = match user {
        Some(spec) => resolve_user(overlay.as_ref().map_or(&rootfs, |o: &OverlaySpec| &o.lower[0]), &spec)?,
        None => UserSpec::root(),
    };
    let cfg = SandboxConfig {
        rootfs,
        argv,
        env,
        cwd,
        user,
        network,
        hostname: "rbuild".into(),
        mounts,
        id_map,
        process_sandbox,
        overlay,
        emulation: None,
    };
    let cancel = cancel_on_signals()?;
    let out = Sandbox::new().isolation(isolation).run(
        &cfg,
        |stream, data| {
            let _ = match stream {
                Stream::Stdout => std::io::stdout().write_all(data),
                Stream::Stderr => std::io::stderr().write_all(data),
            };
        },
        &cancel,
    )?;
    if let Some(path) = report {
        let placeholders: Vec<String> = out.placeholders.iter().map(|p| p.display().to_string()).collect();
        let hint = out.id_map_hint().unwrap_or("");
        std::fs::write(
            path,
            format!(
                "id_map={:?}\nplaceholders={}\nnotes={:?}\nhint={hint}\n",
                out.id_map,
                placeholders.join(","),
                out.notes
            ),
        )?;
    }
    Ok(out.status.code())
}
