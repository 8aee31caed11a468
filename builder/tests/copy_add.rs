//! COPY and ADD through the real executor on a temporary context, without a registry: one
//! table of cases (Dockerfile + context → expected tree in the stage root or an error).
//! URLs are served by a small HTTP server on 127.0.0.1 started by the test.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use rbuild_builder::executor::progress::Silent;
use rbuild_builder::executor::{error_chain, BaseSet, BuildContext, Executor, Identity};
use rbuild_builder::frontend::plan_source;
use rbuild_builder::layer::ownership::{OwnerRecord, OWNER_XATTR};
use rbuild_builder::layer::LayerOptions;
use rbuild_builder::plan::{PlanRequest, UnresolvedBases};
use rbuild_builder::sandbox::{CancelToken, Sandbox};
use rbuild_cache::store::BlobStore;

/// A context entry.
#[derive(Clone)]
enum Src {
    File(&'static str),
    Mode(&'static str, u32),
    Link(&'static str),
    /// A tar archive of the given compression (`tar`, `gz`, `bz2`, `xz`, `zst`) holding
    /// `(name, content)` files; names are written raw, so `..` and `/x` are possible.
    Tar(&'static str, &'static [(&'static str, TarEntry)]),
}

#[derive(Clone, Copy)]
enum TarEntry {
    File(&'static str),
    Link(&'static str),
}

/// What a path in the stage root must be.
enum Want {
    File(&'static str),
    Mode(&'static str, u32),
    Dir,
    /// A regular file, content not compared.
    Exists,
    Link(&'static str),
    Absent,
}

struct Case {
    name: &'static str,
    /// Instructions after `FROM scratch AS first`; `{url}` is replaced by the test server's address.
    dockerfile: &'static str,
    context: &'static [(&'static str, Src)],
    want: Result<&'static [(&'static str, Want)], &'static str>,
}

const HELLO_TAR: &[(&str, TarEntry)] =
    &[("app/hello.txt", TarEntry::File("hello")), ("app/bin/run", TarEntry::File("#!/bin/sh"))];

const CASES: &[Case] = &[
    Case {
        name: "copy file to a file and into a directory",
        dockerfile: "COPY a.txt /x.txt\nCOPY a.txt /d/",
        context: &[("a.txt", Src::File("A"))],
        want: Ok(&[("x.txt", Want::File("A")), ("d/a.txt", Want::File("A"))]),
    },
    Case {
        name: "copy a directory copies its contents",
        dockerfile: "COPY src /app",
        context: &[("src/a", Src::File("1")), ("src/sub/b", Src::Mode("2", 0o750))],
        want: Ok(&[("app/a", Want::File("1")), ("app/sub/b", Want::Mode("2", 0o750)), ("app/src", Want::Absent)]),
    },
    Case {
        name: "copy never extracts an archive",
        dockerfile: "COPY app.tar.gz /d/",
        context: &[("app.tar.gz", Src::Tar("gz", HELLO_TAR))],
        want: Ok(&[("d/app.tar.gz", Want::Exists), ("d/app", Want::Absent)]),
    },
    Case {
        name: "add extracts a plain tar",
        dockerfile: "ADD app.tar /opt/",
        context: &[("app.tar", Src::Tar("tar", HELLO_TAR))],
        want: Ok(&[("opt/app/hello.txt", Want::File("hello")), ("opt/app.tar", Want::Absent)]),
    },
    Case {
        name: "add extracts tar.gz",
        dockerfile: "ADD app.tgz /opt",
        context: &[("app.tgz", Src::Tar("gz", HELLO_TAR))],
        want: Ok(&[("opt/app/hello.txt", Want::File("hello")), ("opt/app/bin/run", Want::File("#!/bin/sh"))]),
    },
    Case {
        name: "add extracts tar.bz2",
        dockerfile: "ADD app.tar.bz2 /opt/",
        context: &[("app.tar.bz2", Src::Tar("bz2", HELLO_TAR))],
        want: Ok(&[("opt/app/hello.txt", Want::File("hello"))]),
    },
    Case {
        name: "add extracts tar.xz",
        dockerfile: "ADD app.tar.xz /opt/",
        context: &[("app.tar.xz", Src::Tar("xz", HELLO_TAR))],
        want: Ok(&[("opt/app/hello.txt", Want::File("hello"))]),
    },
    Case {
        name: "add extracts tar.zst",
        dockerfile: "ADD app.tar.zst /opt/",
        context: &[("app.tar.zst", Src::Tar("zst", HELLO_TAR))],
        want: Ok(&[("opt/app/hello.txt", Want::File("hello"))]),
    },
    Case {
        name: "add merges an archive into existing files",
        dockerfile: "COPY keep /opt/app/keep\nCOPY old /opt/app/hello.txt\nADD app.tar /opt/",
        context: &[("keep", Src::File("k")), ("old", Src::File("old")), ("app.tar", Src::Tar("tar", HELLO_TAR))],
        want: Ok(&[("opt/app/keep", Want::File("k")), ("opt/app/hello.txt", Want::File("hello"))]),
    },
    Case {
        name: "add copies a compressed non-tar file as is",
        dockerfile: "ADD notes.gz /d/",
        context: &[("notes.gz", Src::Tar("gz-plain", &[]))],
        want: Ok(&[("d/notes.gz", Want::Exists)]),
    },
    Case {
        name: "add copies a non-archive file as is",
        dockerfile: "ADD plain.txt /d/",
        context: &[("plain.txt", Src::File("just text"))],
        want: Ok(&[("d/plain.txt", Want::File("just text"))]),
    },
    Case {
        name: "add keeps .wh. names as files in an archive",
        dockerfile: "COPY a.txt /opt/a.txt\nADD wh.tar /opt/",
        context: &[("a.txt", Src::File("A")), ("wh.tar", Src::Tar("tar", &[(".wh.a.txt", TarEntry::File("w"))]))],
        want: Ok(&[("opt/a.txt", Want::File("A")), ("opt/.wh.a.txt", Want::File("w"))]),
    },
    Case {
        name: "hostile archive with .. is refused",
        dockerfile: "ADD evil.tar /opt/",
        context: &[("evil.tar", Src::Tar("tar", &[("../../escaped", TarEntry::File("x"))]))],
        want: Err("'..'"),
    },
    Case {
        name: "hostile archive with an absolute name is refused",
        dockerfile: "ADD evil.tar /opt/",
        context: &[("evil.tar", Src::Tar("tar", &[("/escaped", TarEntry::File("x"))]))],
        want: Err("absolute"),
    },
    Case {
        name: "hostile archive symlink climbing out is refused",
        dockerfile: "ADD evil.tar /opt/",
        context: &[("evil.tar", Src::Tar("tar", &[("up", TarEntry::Link("../../../..")), ("up/escaped", TarEntry::File("x"))]))],
        want: Err("escapes"),
    },
    Case {
        name: "hostile archive absolute symlink stays inside the destination",
        dockerfile: "ADD evil.tar /opt/",
        context: &[("evil.tar", Src::Tar("tar", &[("etc", TarEntry::Link("/")), ("etc/contained", TarEntry::File("x"))]))],
        want: Ok(&[("opt/contained", Want::File("x")), ("opt/etc", Want::Link("/")), ("contained", Want::Absent)]),
    },
    Case {
        name: "parents keeps the source directories",
        dockerfile: "COPY --parents x/a.txt y/a.txt /p/",
        context: &[("x/a.txt", Src::File("xa")), ("y/a.txt", Src::File("ya"))],
        want: Ok(&[("p/x/a.txt", Want::File("xa")), ("p/y/a.txt", Want::File("ya"))]),
    },
    Case {
        name: "parents with a /./ pivot and a wildcard",
        dockerfile: "COPY --parents ./x/./y/*.txt /p/",
        context: &[("x/y/a.txt", Src::File("a")), ("x/y/b.txt", Src::File("b")), ("x/y/c.md", Src::File("c"))],
        want: Ok(&[("p/y/a.txt", Want::File("a")), ("p/y/b.txt", Want::File("b")), ("p/y/c.md", Want::Absent), ("p/x", Want::Absent)]),
    },
    Case {
        name: "parents with ** and a directory",
        dockerfile: "COPY --parents **/conf /p/",
        context: &[("a/conf/x", Src::File("1")), ("b/c/conf/y", Src::File("2")), ("b/other", Src::File("3"))],
        want: Ok(&[("p/a/conf/x", Want::File("1")), ("p/b/c/conf/y", Want::File("2")), ("p/b/other", Want::Absent)]),
    },
    Case {
        name: "exclude inside a directory source",
        dockerfile: "COPY --exclude=*.md --exclude=sub/*.log src /app/",
        context: &[("src/a.txt", Src::File("a")), ("src/b.md", Src::File("b")), ("src/sub/c.log", Src::File("c")), ("src/sub/d.txt", Src::File("d"))],
        want: Ok(&[("app/a.txt", Want::File("a")), ("app/b.md", Want::Absent), ("app/sub/c.log", Want::Absent), ("app/sub/d.txt", Want::File("d"))]),
    },
    Case {
        name: "exclude applies to wildcard matches",
        dockerfile: "COPY --exclude=*.txt hom* /d/",
        context: &[("home.txt", Src::File("t")), ("homer.bin", Src::File("b"))],
        want: Ok(&[("d/home.txt", Want::Absent), ("d/homer.bin", Want::File("b"))]),
    },
    Case {
        name: "exclude everything leaves an empty destination",
        dockerfile: "ADD --exclude=* dir* /e/",
        context: &[("dir1/a", Src::File("a")), ("dir2/b", Src::File("b"))],
        want: Ok(&[("e", Want::Dir), ("e/a", Want::Absent), ("e/b", Want::Absent)]),
    },
    Case {
        name: "a wildcard matching nothing copies nothing",
        dockerfile: "COPY *.none a.txt /d/",
        context: &[("a.txt", Src::File("A"))],
        want: Ok(&[("d/a.txt", Want::File("A"))]),
    },
    Case {
        name: "a missing plain source is an error",
        dockerfile: "COPY missing.txt /d/",
        context: &[("a.txt", Src::File("A"))],
        want: Err("\"missing.txt\" not found in the build context"),
    },
    Case {
        name: "symlink inside a copied directory is copied as a link",
        dockerfile: "COPY d /x/",
        context: &[("d/real", Src::File("r")), ("d/rel", Src::Link("real")), ("d/out", Src::Link("../../etc/passwd"))],
        want: Ok(&[("x/rel", Want::Link("real")), ("x/out", Want::Link("../../etc/passwd")), ("x/real", Want::File("r"))]),
    },
    Case {
        name: "top-level symlink source is followed",
        dockerfile: "COPY top /y",
        context: &[("real.txt", Src::File("content")), ("top", Src::Link("real.txt"))],
        want: Ok(&[("y", Want::File("content"))]),
    },
    Case {
        name: "top-level symlink out of the context does not read the host",
        dockerfile: "COPY escape /y",
        context: &[("escape", Src::Link("/etc/hostname"))],
        want: Err("\"escape\" not found in the build context"),
    },
    Case {
        name: "top-level symlink climbing out is clamped to the context",
        dockerfile: "COPY up /y",
        context: &[("up", Src::Link("../../../../../ctx-file")), ("ctx-file", Src::File("inside"))],
        want: Ok(&[("y", Want::File("inside"))]),
    },
    Case {
        name: "chmod and chown apply to copied files",
        dockerfile: "COPY --chmod=600 a.txt /a",
        context: &[("a.txt", Src::Mode("A", 0o644))],
        want: Ok(&[("a", Want::Mode("A", 0o600))]),
    },
    Case {
        name: "heredoc with an unquoted delimiter expands variables",
        dockerfile: "ARG WHO=world\nENV GREETING=hello\nCOPY <<EOF /greet\n$GREETING \"${WHO}\" \\$HOME\nEOF",
        context: &[],
        want: Ok(&[("greet", Want::File("hello \"world\" $HOME\n"))]),
    },
    Case {
        name: "heredoc with a quoted delimiter stays literal",
        dockerfile: "ENV GREETING=hello\nCOPY <<'EOF' /greet\n$GREETING\nEOF",
        context: &[],
        want: Ok(&[("greet", Want::File("$GREETING\n"))]),
    },
    Case {
        name: "copy --from a stage with a wildcard",
        dockerfile: "COPY a.txt b.txt /src/\nFROM scratch\nCOPY --from=0 /src/*.txt /out/",
        context: &[("a.txt", Src::File("A")), ("b.txt", Src::File("B"))],
        want: Ok(&[("out/a.txt", Want::File("A")), ("out/b.txt", Want::File("B"))]),
    },
    Case {
        name: "copy --from keeps the owner and mode of the stage's files",
        dockerfile: "COPY --chown=7:8 --chmod=640 a.txt /src/a\nFROM scratch\nCOPY --from=0 /src/a /a",
        context: &[("a.txt", Src::File("A"))],
        want: Ok(&[("a", Want::Mode("A", 0o640))]),
    },
    Case {
        name: "onbuild triggers of a stage run in the child stage",
        dockerfile: "ONBUILD COPY a.txt /from-trigger\nFROM first\nCOPY b.txt /own",
        context: &[("a.txt", Src::File("A")), ("b.txt", Src::File("B"))],
        want: Ok(&[("from-trigger", Want::File("A")), ("own", Want::File("B"))]),
    },
    Case {
        name: "add of a url downloads with mode 0600 and keeps the name",
        dockerfile: "ADD {url}/files/data.bin /dl/",
        context: &[],
        want: Ok(&[("dl/data.bin", Want::Mode("payload", 0o600))]),
    },
    Case {
        name: "add of a url to a file path with a matching checksum",
        dockerfile: "ADD --checksum=sha256:239f59ed55e737c77147cf55ad0c1b030b6d7ee748a7426952f9b852d5a935e5 {url}/files/data.bin /dl/renamed",
        context: &[],
        want: Ok(&[("dl/renamed", Want::File("payload"))]),
    },
    Case {
        name: "add of a url with a wrong checksum names both digests",
        dockerfile: "ADD --checksum=sha256:0000000000000000000000000000000000000000000000000000000000000000 {url}/files/data.bin /dl/",
        context: &[],
        want: Err("expected sha256:0000000000000000000000000000000000000000000000000000000000000000, got sha256:239f59ed55e737c77147cf55ad0c1b030b6d7ee748a7426952f9b852d5a935e5"),
    },
    Case {
        name: "add of a remote archive is not extracted",
        dockerfile: "ADD {url}/files/app.tar /dl/",
        context: &[],
        want: Ok(&[("dl/app.tar", Want::Exists), ("dl/app", Want::Absent)]),
    },
    Case {
        name: "add of a missing url reports the status",
        dockerfile: "ADD {url}/nothing /dl/",
        context: &[],
        want: Err("HTTP status 404"),
    },
    Case {
        name: "add of a git repository is refused clearly",
        dockerfile: "ADD https://example.com/repo.git /src",
        context: &[],
        want: Err("ADD of a git repository (https://example.com/repo.git) is not supported"),
    },
    Case {
        name: "copy of a url is refused",
        dockerfile: "COPY {url}/files/data.bin /d",
        context: &[],
        want: Err("COPY cannot fetch a URL"),
    },
    Case {
        name: "checksum on a local source is refused",
        dockerfile: "ADD --checksum=sha256:0000000000000000000000000000000000000000000000000000000000000000 a.txt /a",
        context: &[("a.txt", Src::File("A"))],
        want: Err("non-HTTP(S) sources"),
    },
];

#[test]
fn copy_and_add_cases() {
    let server = HttpServer::start();
    let mut failures = Vec::new();
    for case in CASES {
        if let Err(e) = run_case(case, &server.url) {
            failures.push(format!("{}: {e}", case.name));
        }
    }
    assert!(failures.is_empty(), "{} of {} cases failed:\n{}", failures.len(), CASES.len(), failures.join("\n"));
}

fn run_case(case: &Case, url: &str) -> Result<(), String> {
    let tmp = tempfile::tempdir().map_err(|e| e.to_string())?;
    let ctx = tmp.path().join("ctx");
    std::fs::create_dir(&ctx).map_err(|e| e.to_string())?;
    for (path, src) in case.context {
        write_src(&ctx.join(path), src)?;
    }
    let text = format!("FROM scratch AS first\n{}\n", case.dockerfile.replace("{url}", url));
    let dockerfile = ctx.join("Dockerfile");
    std::fs::write(&dockerfile, &text).map_err(|e| e.to_string())?;
    let result = build(tmp.path(), &ctx, &dockerfile, &text);
    match (&case.want, result) {
        (Ok(wants), Ok(rootfs)) => check_tree(&rootfs, wants),
        (Err(want), Err(e)) if e.contains(want) => Ok(()),
        (Err(want), Err(e)) => Err(format!("error {e:?} does not contain {want:?}")),
        (Err(want), Ok(_)) => Err(format!("built, but wanted an error containing {want:?}")),
        (Ok(_), Err(e)) => Err(format!("failed: {e}")),
    }
}

/// Plans and executes; returns the target stage's root.
fn build(tmp: &Path, ctx: &Path, dockerfile: &Path, text: &str) -> Result<PathBuf, String> {
    let plan = plan_source(dockerfile, text, &PlanRequest::host(), &UnresolvedBases).map_err(|e| format!("{e:#}"))?;
    let context = BuildContext::open(ctx, dockerfile).map_err(|e| e.to_string())?;
    let store = BlobStore::open(tmp.join("store")).map_err(|e| e.to_string())?;
    let identity = Identity::current();
    let work = tmp.join("work");
    std::fs::create_dir_all(&work).map_err(|e| e.to_string())?;
    let executor = Executor {
        context: &context,
        store: &store,
        work_dir: work.clone(),
        layer: LayerOptions { ids: identity.id_maps(), ..LayerOptions::default() },
        sandbox: Sandbox::new().into(),
        identity,
        created: "2026-01-01T00:00:00Z".into(),
        progress: &Silent,
        cancel: CancelToken::new(),
        remote: None,
        cache_mounts: tmp.join("mounts"),
        secrets: Default::default(),
        roots: Default::default(),
    };
    executor.execute(&plan, &BaseSet::default()).map_err(|e| error_chain(&e))?;
    Ok(work.join(format!("stage-{}", plan.target)).join("rootfs"))
}

fn check_tree(root: &Path, wants: &[(&str, Want)]) -> Result<(), String> {
    for (path, want) in wants {
        let p = root.join(path);
        let meta = std::fs::symlink_metadata(&p);
        let ok = match (want, &meta) {
            (Want::Absent, Err(_)) => true,
            (Want::Absent, Ok(_)) => false,
            (_, Err(_)) => return Err(format!("{path} is missing")),
            (Want::Dir, Ok(m)) => m.is_dir(),
            (Want::Exists, Ok(m)) => m.is_file(),
            (Want::Link(t), Ok(m)) => {
                m.file_type().is_symlink() && std::fs::read_link(&p).is_ok_and(|l| l == Path::new(t))
            }
            (Want::File(c), Ok(m)) => m.is_file() && std::fs::read_to_string(&p).is_ok_and(|s| s == *c),
            (Want::Mode(c, mode), Ok(m)) => {
                m.is_file() && std::fs::read_to_string(&p).is_ok_and(|s| s == *c) && intended_mode(&p, m) == *mode
            }
        };
        if !ok {
            let seen =
                meta.map(|m| format!("{:?} mode {:o}", m.file_type(), intended_mode(&p, &m))).unwrap_or_default();
            return Err(format!(
                "{path}: not as expected (found {seen}, content {:?})",
                std::fs::read_to_string(&p).ok()
            ));
        }
    }
    Ok(())
}

/// The mode an image would record: the owner record when rootless, else the on-disk mode.
fn intended_mode(p: &Path, m: &std::fs::Metadata) -> u32 {
    match xattr::get(p, OWNER_XATTR).ok().flatten().and_then(|v| OwnerRecord::parse(&v).ok()) {
        Some(r) => r.effective_mode(m.mode(), m.is_dir()),
        None => m.mode() & 0o7777,
    }
}

fn write_src(path: &Path, src: &Src) -> Result<(), String> {
    let e = |e: std::io::Error| format!("{}: {e}", path.display());
    std::fs::create_dir_all(path.parent().unwrap_or(Path::new("/"))).map_err(e)?;
    match src {
        Src::File(c) => std::fs::write(path, c).map_err(e),
        Src::Mode(c, mode) => {
            std::fs::write(path, c).map_err(e)?;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(*mode)).map_err(e)
        }
        Src::Link(t) => std::os::unix::fs::symlink(t, path).map_err(e),
        Src::Tar(kind, entries) => std::fs::write(path, archive(kind, entries)).map_err(e),
    }
}

/// A tar with raw entry names, compressed as `kind` (`gz-plain` = gzip of plain text).
fn archive(kind: &str, entries: &[(&str, TarEntry)]) -> Vec<u8> {
    let tar = if kind == "gz-plain" { b"not a tar at all, just text".to_vec() } else { tar_bytes(entries) };
    match kind {
        "tar" => tar,
        "gz" | "gz-plain" => {
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            enc.write_all(&tar).unwrap_or_default();
            enc.finish().unwrap_or_default()
        }
        "bz2" => {
            let mut enc = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::default());
            enc.write_all(&tar).unwrap_or_default();
            enc.finish().unwrap_or_default()
        }
        "zst" => zstd::encode_all(tar.as_slice(), 3).unwrap_or_default(),
        "xz" => {
            let mut child = std::process::Command::new("xz")
                .args(["-z", "-c"])
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .spawn()
                .expect("xz (xz-utils) is installed");
            child.stdin.take().expect("stdin").write_all(&tar).expect("write to xz");
            child.wait_with_output().expect("xz output").stdout
        }
        other => panic!("unknown archive kind {other}"),
    }
}

fn tar_bytes(entries: &[(&str, TarEntry)]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (name, entry) in entries {
        let mut h = tar::Header::new_old();
        let raw = &mut h.as_old_mut().name;
        raw.get_mut(..name.len()).expect("short name").copy_from_slice(name.as_bytes());
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_700_000_000);
        let data: &[u8] = match entry {
            TarEntry::File(c) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_size(c.len() as u64);
                c.as_bytes()
            }
            TarEntry::Link(t) => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_size(0);
                h.set_link_name(t).expect("link name");
                &[]
            }
        };
        h.set_cksum();
        builder.append(&h, data).expect("append");
    }
    builder.into_inner().expect("tar")
}

/// A tiny HTTP/1.1 server on 127.0.0.1 for ADD of URLs (the test's own, stops with the test
/// process). Serves `/files/data.bin` (with Last-Modified) and `/files/app.tar`; 404 otherwise.
struct HttpServer {
    url: String,
}

impl HttpServer {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        let files: BTreeMap<&str, Vec<u8>> =
            [("/files/data.bin", b"payload".to_vec()), ("/files/app.tar", tar_bytes(HELLO_TAR))].into_iter().collect();
        std::thread::spawn(move || {
            for stream in listener.incoming().take(200) {
                let Ok(mut stream) = stream else { continue };
                let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                let mut buf = [0u8; 4096];
                let n = stream.read(&mut buf).unwrap_or(0);
                let request = String::from_utf8_lossy(buf.get(..n).unwrap_or_default()).into_owned();
                let path = request.split_whitespace().nth(1).unwrap_or("/").to_string();
                let response = match files.get(path.as_str()) {
                    Some(body) => {
                        let mut r = format!(
                            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nLast-Modified: Tue, 14 Nov 2023 22:13:20 GMT\r\nConnection: close\r\n\r\n",
                            body.len()
                        )
                        .into_bytes();
                        r.extend_from_slice(body);
                        r
                    }
                    None => b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_vec(),
                };
                let _ = stream.write_all(&response);
            }
        });
        Self { url }
    }
}

#[test]
fn download_mtime_comes_from_last_modified() {
    let server = HttpServer::start();
    let tmp = tempfile::tempdir().expect("tempdir");
    let ctx = tmp.path().join("ctx");
    std::fs::create_dir(&ctx).expect("ctx");
    let text = format!("FROM scratch\nADD {}/files/data.bin /d\n", server.url);
    let dockerfile = ctx.join("Dockerfile");
    std::fs::write(&dockerfile, &text).expect("dockerfile");
    let root = build(tmp.path(), &ctx, &dockerfile, &text).expect("build");
    let modified = std::fs::metadata(root.join("d")).expect("d").modified().expect("mtime");
    assert_eq!(modified.duration_since(UNIX_EPOCH).expect("after epoch").as_secs(), 1_700_000_000);
}

#[test]
fn hard_links_inside_a_copied_directory_stay_linked() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let ctx = tmp.path().join("ctx");
    std::fs::create_dir_all(ctx.join("src")).expect("dirs");
    std::fs::write(ctx.join("src/a"), "same").expect("file");
    std::fs::hard_link(ctx.join("src/a"), ctx.join("src/b")).expect("link");
    let text = "FROM scratch\nCOPY src /app\n";
    let dockerfile = ctx.join("Dockerfile");
    std::fs::write(&dockerfile, text).expect("dockerfile");
    let root = build(tmp.path(), &ctx, &dockerfile, text).expect("build");
    let (a, b) = (std::fs::metadata(root.join("app/a")).expect("a"), std::fs::metadata(root.join("app/b")).expect("b"));
    assert_eq!((a.ino(), a.nlink()), (b.ino(), 2));
    assert_eq!(std::fs::read_to_string(root.join("app/b")).expect("b"), "same");
}

#[test]
fn chown_gives_created_parent_directories_the_owner() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let ctx = tmp.path().join("ctx");
    std::fs::create_dir_all(&ctx).expect("ctx");
    std::fs::write(ctx.join("s"), "x").expect("file");
    let text = "FROM scratch\nCOPY s /app/s\nCOPY --chown=1000:1001 --chmod=640 s /app/data/deep/s\n";
    let dockerfile = ctx.join("Dockerfile");
    std::fs::write(&dockerfile, text).expect("dockerfile");
    let root = build(tmp.path(), &ctx, &dockerfile, text).expect("build");
    let owner = |p: &str| {
        let path = root.join(p);
        let m = std::fs::metadata(&path).expect(p);
        match xattr::get(&path, OWNER_XATTR).ok().flatten().and_then(|v| OwnerRecord::parse(&v).ok()) {
            Some(r) => (r.uid, r.gid, r.effective_mode(m.mode(), m.is_dir())),
            None => (m.uid(), m.gid(), m.mode() & 0o7777),
        }
    };
    assert_eq!(owner("app/data"), (1000, 1001, 0o755));
    assert_eq!(owner("app/data/deep"), (1000, 1001, 0o755));
    assert_eq!(owner("app/data/deep/s"), (1000, 1001, 0o640));
    assert_eq!(owner("app").0, 0, "an existing parent keeps its owner");
}

#[test]
fn directory_mtimes_are_kept() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let ctx = tmp.path().join("ctx");
    std::fs::create_dir_all(ctx.join("src/sub")).expect("dirs");
    std::fs::write(ctx.join("src/sub/f"), "x").expect("file");
    let old = std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1_600_000_000);
    for dir in ["src/sub", "src"] {
        std::fs::File::open(ctx.join(dir)).expect("open").set_modified(old).expect("set mtime");
    }
    let text = "FROM scratch\nCOPY src /app\n";
    let dockerfile = ctx.join("Dockerfile");
    std::fs::write(&dockerfile, text).expect("dockerfile");
    let root = build(tmp.path(), &ctx, &dockerfile, text).expect("build");
    for dir in ["app/sub", "app"] {
        let m = std::fs::metadata(root.join(dir)).expect("dir").modified().expect("mtime");
        assert_eq!(m, old, "{dir}");
    }
}
