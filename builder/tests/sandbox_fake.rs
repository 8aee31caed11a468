//! The sandbox's ordering logic against the recording `FakeSys`: handshake order, mount
//! sequence, root switch and credential drop. No namespaces are created here; the real
//! thing is covered by `sandbox_run.rs`.

use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread;

use nix::mount::MsFlags;
use nix::sched::CloneFlags;
use rbuild_builder::sandbox::channel::{ChannelError, ChildChannel, ChildMsg, InitSpec, ParentChannel, Placeholder};
use rbuild_builder::sandbox::fake::{Call, FakeSys};
use rbuild_builder::sandbox::mounts::{enter_user, prepare_root, secure_join, switch_root};
use rbuild_builder::sandbox::sys::{IdMap, IdMapWriter, IdRange, MountCall, NodeKind, Sys};
use rbuild_builder::sandbox::{
    enter_namespaces, hint_for, namespace_flags, ExitStatus, ExtraMount, IdMapKind, IdMapMode, IsolationMode,
    MountSource, NetworkMode, OverlaySpec, ProcessSandbox, SandboxConfig, SetupError, SetupNote, SetupStep, UserSpec,
};
use rstest::rstest;

fn config() -> SandboxConfig {
    SandboxConfig {
        rootfs: PathBuf::from("/r"),
        argv: vec!["/bin/sh".into(), "-c".into(), "true".into()],
        env: vec![("PATH".into(), "/bin".into())],
        cwd: PathBuf::from("/w"),
        user: UserSpec { uid: 1000, gid: 1000, groups: vec![10, 1000], home: None },
        network: NetworkMode::Host,
        hostname: "h".into(),
        mounts: Vec::new(),
        id_map: IdMapMode::Auto,
        process_sandbox: ProcessSandbox::Private,
        overlay: None,
        emulation: None,
    }
}

fn spec(config: SandboxConfig, id_map: IdMapKind) -> InitSpec {
    InitSpec {
        config,
        isolation: IsolationMode::UserNs,
        id_map,
        host_files: vec![(PathBuf::from("/etc/resolv.conf"), PathBuf::from("/etc/resolv.conf"))],
    }
}

fn single_map() -> IdMap {
    IdMap {
        uids: vec![IdRange { inside: 0, outside: 1000, count: 1 }],
        gids: vec![IdRange { inside: 0, outside: 1000, count: 1 }],
    }
}

/// A child thread entering namespaces on `sys`, after the parent end sent it a single-map spec.
fn start_child(sys: &Arc<FakeSys>) -> (ParentChannel<UnixStream>, thread::JoinHandle<Result<(), SetupError>>) {
    let (p, c) = UnixStream::pair().unwrap();
    let child_sys = Arc::clone(sys);
    let child = thread::spawn(move || {
        let mut chan = ChildChannel::new(c);
        let spec = chan.receive_spec().unwrap();
        enter_namespaces(child_sys.as_ref(), &spec, &mut chan)
    });
    let mut parent = ParentChannel::new(p);
    parent.send_spec(&spec(config(), IdMapKind::Single)).unwrap();
    (parent, child)
}

/// The child unshares only its user namespace before asking for a map, and the other
/// namespaces only after the parent said the map is written.
#[test]
fn handshake_orders_user_namespace_id_map_then_other_namespaces() {
    let sys = Arc::new(FakeSys::new());
    let (mut parent, child) = start_child(&sys);
    parent.wait_for_id_map_request().unwrap();
    assert_eq!(sys.calls(), vec![Call::Unshare(CloneFlags::CLONE_NEWUSER)]);
    sys.write_id_map(42, &single_map(), IdMapWriter::Direct).unwrap();
    parent.id_map_written().unwrap();
    child.join().unwrap().unwrap();
    let others =
        CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWPID | CloneFlags::CLONE_NEWIPC | CloneFlags::CLONE_NEWUTS;
    assert_eq!(
        sys.calls(),
        vec![
            Call::Unshare(CloneFlags::CLONE_NEWUSER),
            Call::WriteIdMap { pid: 42, map: single_map(), writer: IdMapWriter::Direct },
            Call::Unshare(others),
        ]
    );
}

/// A refused user namespace comes back to the parent as a typed error, not a hang.
#[test]
fn refused_user_namespace_is_reported_typed() {
    let sys = FakeSys::new().failing_on(Call::Unshare(CloneFlags::CLONE_NEWUSER));
    let (p, c) = UnixStream::pair().unwrap();
    let child = thread::spawn(move || {
        let mut chan = ChildChannel::new(c);
        let spec = chan.receive_spec().unwrap();
        if let Err(e) = enter_namespaces(&sys, &spec, &mut chan) {
            chan.report_error(e).unwrap();
        }
    });
    let mut parent = ParentChannel::new(p);
    parent.send_spec(&spec(config(), IdMapKind::Single)).unwrap();
    let err = parent.wait_for_id_map_request().unwrap_err();
    child.join().unwrap();
    match err {
        ChannelError::Child(SetupError { step, errno, .. }) => {
            assert_eq!((step, errno), (SetupStep::UnshareUser, nix::Error::EPERM as i32));
        }
        other => panic!("unexpected {other:?}"),
    }
}

/// A parent that gives up on the map makes the child stop before any other namespace.
#[test]
fn failed_id_map_stops_the_child() {
    let sys = Arc::new(FakeSys::new());
    let (mut parent, child) = start_child(&sys);
    parent.wait_for_id_map_request().unwrap();
    parent.id_map_failed().unwrap();
    let err = child.join().unwrap().unwrap_err();
    assert_eq!(err.step, SetupStep::WaitIdMap);
    assert_eq!(sys.calls(), vec![Call::Unshare(CloneFlags::CLONE_NEWUSER)]);
}

/// The parent reads reports in order and sees the end of the channel.
#[test]
fn child_reports_arrive_in_order() {
    let (p, c) = UnixStream::pair().unwrap();
    let msgs = vec![
        ChildMsg::Prepared {
            placeholders: vec![Placeholder { path: "/proc".into(), kind: NodeKind::Dir }],
            notes: vec![],
        },
        ChildMsg::Started { pid: 7 },
        ChildMsg::Exited(ExitStatus::Signaled(9)),
    ];
    let sent = msgs.clone();
    thread::spawn(move || {
        let mut chan = ChildChannel::new(c);
        for m in &sent {
            chan.report(m).unwrap();
        }
    })
    .join()
    .unwrap();
    let mut parent = ParentChannel::new(p);
    let mut got = Vec::new();
    while let Some(m) = parent.next_report().unwrap() {
        got.push(m);
    }
    assert_eq!(got, msgs);
}

#[rstest]
#[case::default(NetworkMode::Host, ProcessSandbox::Private, CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWPID | CloneFlags::CLONE_NEWIPC | CloneFlags::CLONE_NEWUTS)]
#[case::no_network(NetworkMode::None, ProcessSandbox::Private, CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWPID | CloneFlags::CLONE_NEWIPC | CloneFlags::CLONE_NEWUTS | CloneFlags::CLONE_NEWNET)]
#[case::shared_pid(NetworkMode::Host, ProcessSandbox::SharedPidNs, CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWIPC | CloneFlags::CLONE_NEWUTS)]
fn namespaces_follow_config(#[case] network: NetworkMode, #[case] ps: ProcessSandbox, #[case] want: CloneFlags) {
    let cfg = SandboxConfig { network, process_sandbox: ps, ..config() };
    assert_eq!(namespace_flags(&spec(cfg, IdMapKind::Single)), want);
}

type MountRow = (Option<String>, PathBuf, Option<String>);

fn mounts_of(calls: &[Call]) -> Vec<MountRow> {
    calls
        .iter()
        .filter_map(|c| match c {
            Call::Mount(m) if !m.flags.contains(MsFlags::MS_REMOUNT) => {
                Some((m.fstype.clone(), m.target.clone(), m.source.as_ref().map(|s| s.display().to_string())))
            }
            _ => None,
        })
        .collect()
}

/// The mount sequence: private `/`, root bind, `/proc`, `/dev` and its devices, `/sys`,
/// host files, in this order; missing mount points become placeholders.
#[test]
fn prepare_root_mounts_in_order_and_records_placeholders() {
    let sys = FakeSys::new().with_existing([PathBuf::from("/r/etc")]);
    let prepared = prepare_root(&sys, &spec(config(), IdMapKind::Range)).unwrap();
    let mounts = mounts_of(&sys.calls());
    let s = |x: &str| Some(x.to_string());
    let p = PathBuf::from;
    assert_eq!(mounts[0], (None, p("/"), None));
    assert_eq!(mounts[1], (None, p("/r"), s("/r")));
    // Issue 16: the root is remounted nodev (device nodes from layers are not devices).
    assert!(sys.calls().iter().any(|c| matches!(c, Call::Mount(m) if m.target == p("/r") && m.flags.contains(MsFlags::MS_REMOUNT | MsFlags::MS_NODEV))));
    assert_eq!(mounts[2], (s("proc"), p("/r/proc"), s("proc")));
    assert_eq!(mounts[3], (s("tmpfs"), p("/r/dev"), s("tmpfs")));
    assert_eq!(mounts[4], (None, p("/r/dev/null"), s("/dev/null")));
    let tail: Vec<_> = mounts[mounts.len() - 2..].to_vec();
    assert_eq!(tail, vec![(None, p("/r/sys"), s("/sys")), (None, p("/r/etc/resolv.conf"), s("/etc/resolv.conf"))]);
    let placeholders: Vec<_> = prepared.placeholders.iter().map(|p| (p.path.display().to_string(), p.kind)).collect();
    let want = [
        ("/proc", NodeKind::Dir),
        ("/dev", NodeKind::Dir),
        ("/sys", NodeKind::Dir),
        ("/etc/resolv.conf", NodeKind::File),
    ];
    assert_eq!(placeholders, want.map(|(a, b)| (a.to_string(), b)).to_vec());
    assert!(sys.calls().contains(&Call::CreateNode(p("/r/w"), NodeKind::Dir)), "cwd is created");
}

#[test]
fn overlay_is_mounted_over_the_root_with_userxattr_top_layer_first() {
    let ov = OverlaySpec { lower: vec!["/l/base".into(), "/l/top".into()], upper: "/u".into(), work: "/wk".into() };
    let sys = FakeSys::new();
    prepare_root(&sys, &spec(SandboxConfig { overlay: Some(ov), ..config() }, IdMapKind::Range)).unwrap();
    let overlay = sys.calls().into_iter().find_map(|c| match c {
        Call::Mount(m) if m.fstype.as_deref() == Some("overlay") => Some((m.target, m.data)),
        _ => None,
    });
    assert_eq!(
        overlay,
        Some((PathBuf::from("/r"), Some("lowerdir=/l/top:/l/base,upperdir=/u,workdir=/wk,userxattr".into())))
    );
}

/// `RUN --mount`s come after the host files: binds (read-only remounted when asked) and
/// tmpfs with its size, each on a created mount point.
#[test]
fn run_mounts_bind_and_tmpfs_on_placeholders() {
    let mounts = vec![
        ExtraMount { source: MountSource::Bind("/h/cache".into()), target: "/var/cache".into(), readonly: false },
        ExtraMount { source: MountSource::Tmpfs { size: Some(1 << 20) }, target: "/scratch".into(), readonly: false },
    ];
    let sys = FakeSys::new().with_existing([PathBuf::from("/h/cache"), PathBuf::from("/r/var")]);
    let prepared = prepare_root(&sys, &spec(SandboxConfig { mounts, ..config() }, IdMapKind::Range)).unwrap();
    let calls = sys.calls();
    let tmpfs = calls.iter().find_map(|c| match c {
        Call::Mount(m) if m.target == Path::new("/r/scratch") => Some((m.fstype.clone(), m.data.clone())),
        _ => None,
    });
    assert_eq!(tmpfs, Some((Some("tmpfs".into()), Some("mode=1777,size=1048576".into()))));
    let tail: Vec<_> = mounts_of(&calls).into_iter().rev().take(2).collect();
    assert_eq!(tail[1], (None, PathBuf::from("/r/var/cache"), Some("/h/cache".into())));
    let created: Vec<_> = prepared.placeholders.iter().map(|p| p.path.display().to_string()).collect();
    assert!(created.ends_with(&["/var/cache".to_string(), "/scratch".to_string()]), "{created:?}");
}

#[test]
fn shared_pid_namespace_binds_host_proc() {
    let sys = FakeSys::new();
    prepare_root(
        &sys,
        &spec(SandboxConfig { process_sandbox: ProcessSandbox::SharedPidNs, ..config() }, IdMapKind::Range),
    )
    .unwrap();
    let proc_mount = mounts_of(&sys.calls()).into_iter().find(|m| m.1 == Path::new("/r/proc"));
    assert_eq!(proc_mount, Some((None, PathBuf::from("/r/proc"), Some("/proc".into()))));
}

#[test]
fn refused_sys_bind_is_skipped_with_a_note() {
    let sys_bind = MountCall {
        source: Some("/sys".into()),
        target: "/r/sys".into(),
        fstype: None,
        flags: MsFlags::MS_BIND | MsFlags::MS_REC,
        data: None,
    };
    let sys = FakeSys::new().failing_on(Call::Mount(sys_bind));
    let prepared = prepare_root(&sys, &spec(config(), IdMapKind::Range)).unwrap();
    assert_eq!(prepared.notes, vec![SetupNote::SysSkipped { errno: nix::Error::EPERM as i32 }]);
}

#[test]
fn refused_proc_mount_fails_at_the_proc_step() {
    let proc_mount = MountCall {
        source: Some("proc".into()),
        target: "/r/proc".into(),
        fstype: Some("proc".into()),
        flags: MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        data: None,
    };
    let sys = FakeSys::new().failing_on(Call::Mount(proc_mount));
    let err = prepare_root(&sys, &spec(config(), IdMapKind::Range)).unwrap_err();
    assert_eq!(err.step, SetupStep::MountProc);
}

#[rstest]
#[case::userns(IsolationMode::UserNs, vec![Call::Chdir("/r".into()), Call::PivotRoot(".".into(), ".".into()), Call::UmountDetach(".".into()), Call::Chdir("/".into())])]
#[case::chroot(IsolationMode::Chroot, vec![Call::Chdir("/r".into()), Call::Chroot(".".into()), Call::Chdir("/".into())])]
fn switch_root_sequence(#[case] mode: IsolationMode, #[case] want: Vec<Call>) {
    let sys = FakeSys::new();
    switch_root(&sys, Path::new("/r"), mode).unwrap();
    assert_eq!(sys.calls(), want);
}

#[rstest]
#[case::range_sets_groups(IdMapKind::Range, vec![Call::SetGroups(vec![10, 1000]), Call::SetIds { uid: 1000, gid: 1000 }])]
#[case::single_cannot_set_groups(IdMapKind::Single, vec![Call::SetIds { uid: 1000, gid: 1000 }])]
#[case::chroot_sets_groups(IdMapKind::Host, vec![Call::SetGroups(vec![10, 1000]), Call::SetIds { uid: 1000, gid: 1000 }])]
fn credentials_follow_the_map(#[case] map: IdMapKind, #[case] want: Vec<Call>) {
    let sys = FakeSys::new();
    enter_user(&sys, &spec(config(), map)).unwrap();
    assert_eq!(sys.calls(), want);
}

#[rstest]
#[case::plain("/etc/hosts", &[], "/r/etc/hosts")]
#[case::absolute_link_stays_inside("/etc/hosts", &[("/r/etc", "/")], "/r/hosts")]
#[case::relative_escape_is_clamped("/etc/hosts", &[("/r/etc", "../../../x")], "/r/x/hosts")]
#[case::dotdot_clamped("/../../etc", &[], "/r/etc")]
#[case::loop_stops("/a/b", &[("/r/a", "/a")], "/r/a/b")]
fn secure_join_stays_in_root(#[case] inside: &str, #[case] links: &[(&str, &str)], #[case] want: &str) {
    let sys = links.iter().fold(FakeSys::new(), |s, (l, t)| s.with_link(l, t));
    assert_eq!(secure_join(&sys, Path::new("/r"), Path::new(inside)), PathBuf::from(want));
}

#[rstest]
#[case::userns(SetupStep::UnshareUser, 1, "user.max_user_namespaces")]
#[case::proc(SetupStep::MountProc, 1, "procMount: Unmasked")]
#[case::overlay(SetupStep::Overlay, 1, "native snapshotter")]
#[case::credentials(SetupStep::Credentials, 22, "/etc/subuid")]
#[case::not_found(SetupStep::Exec, 2, "not found")]
fn setup_errors_carry_a_hint(#[case] step: SetupStep, #[case] errno: i32, #[case] needle: &str) {
    let hint = hint_for(&SetupError { step, errno, path: None }).unwrap_or_default();
    assert!(hint.contains(needle), "{hint}");
}

/// A RUN without network brings `lo` up before switching root; with the host's network it
/// leaves interfaces alone.
#[rstest]
#[case::none(NetworkMode::None, true)]
#[case::host(NetworkMode::Host, false)]
fn loopback_follows_network_mode(#[case] network: NetworkMode, #[case] want: bool) {
    let sys = FakeSys::new().with_existing([PathBuf::from("/bin/true")]);
    let cfg = SandboxConfig { network, argv: vec!["/bin/true".into()], ..config() };
    let _ = rbuild_builder::sandbox::setup_process(&sys, &spec(cfg, IdMapKind::Range), &mut |_| {});
    let calls = sys.calls();
    let lo = calls.iter().position(|c| *c == Call::LoopbackUp);
    let pivot = calls.iter().position(|c| matches!(c, Call::PivotRoot(..)));
    assert_eq!(lo.is_some(), want);
    if let (Some(lo), Some(pivot)) = (lo, pivot) {
        assert!(lo < pivot);
    }
}
