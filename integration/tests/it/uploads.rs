//! One upload per blob on a cache-filling build (issue 19): the real binary as the build user,
//! talking to the real registry through a counting TCP proxy on 127.0.0.1 (the bytes clients
//! send), the registry's access log naming each completed upload. Nothing is mocked.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::Output;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use crate::build::{chown_to_user, ok, run_in, Harness, USER};

/// A TCP proxy in front of the registry counting the bytes its clients send; stops accepting
/// on drop (connections end with the client that opened them).
struct CountingProxy {
    addr: String,
    sent: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl CountingProxy {
    fn start(upstream: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let (sent, stop) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicBool::new(false)));
        let (upstream, counter, stopped) = (upstream.to_string(), sent.clone(), stop.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if stopped.load(Ordering::SeqCst) {
                    break;
                }
                let (Ok(client), Ok(server)) = (client, TcpStream::connect(&upstream)) else { continue };
                pipe(client.try_clone().unwrap(), server.try_clone().unwrap(), Some(counter.clone()));
                pipe(server, client, None);
            }
        });
        Self { addr, sent, stop }
    }

    fn sent(&self) -> u64 {
        self.sent.load(Ordering::SeqCst)
    }
}

impl Drop for CountingProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(&self.addr);
    }
}

/// Copies `from` to `to` on a thread until either side closes, counting into `count`.
fn pipe(mut from: TcpStream, mut to: TcpStream, count: Option<Arc<AtomicU64>>) {
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        while let Ok(n @ 1..) = from.read(&mut buf) {
            if let Some(c) = &count {
                c.fetch_add(n as u64, Ordering::SeqCst);
            }
            if to.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        let _ = to.shutdown(Shutdown::Write);
    });
}

/// The build user's empty local state (a fresh pod).
fn fresh_state(h: &Harness, name: &str) -> PathBuf {
    let dir = h.shared.path().join(name);
    std::fs::create_dir(&dir).unwrap();
    chown_to_user(&dir);
    dir
}

/// Builds `context` through the proxy with the cache repository, pushing every destination.
fn build(h: &Harness, proxy: &CountingProxy, state: &str, context: &std::path::Path, destinations: &[&str]) -> Output {
    let base = format!("BASE={}/busybox:latest", proxy.addr);
    let cache = format!("{}/fill/cache", proxy.addr);
    let mut args = vec![
        "--insecure-registry",
        &proxy.addr,
        "--context",
        context.to_str().unwrap(),
        "--build-arg",
        &base,
        "--cache-repo",
        &cache,
        "--explain-cache",
    ];
    let destinations: Vec<String> = destinations.iter().map(|d| format!("{}/{d}", proxy.addr)).collect();
    for d in &destinations {
        args.extend(["--destination", d]);
    }
    ok(h.build_as(USER, &fresh_state(h, state), &args))
}

/// `--explain-cache` outcomes, in order (`true` for a hit).
fn hits(out: &Output) -> Vec<bool> {
    explained(out).map(|l| l.contains(": hit key ")).collect()
}

/// The cache tag (`sha256-…`) of each step, in order.
fn key_tags(out: &Output) -> Vec<String> {
    let key = |l: String| l.split(" key ").nth(1)?.split_whitespace().next().map(|k| k.replacen(':', "-", 1));
    explained(out).filter_map(key).collect()
}

fn explained(out: &Output) -> impl Iterator<Item = String> + '_ {
    let stderr = std::str::from_utf8(&out.stderr).unwrap_or_default();
    stderr.lines().filter(|l| l.starts_with("cache: stage ")).map(str::to_owned)
}

/// (digest, size) of the layers of the manifest `image` (read from the registry directly).
fn layers(h: &Harness, image: &str) -> Vec<(String, u64)> {
    let out = h.ctx.skopeo(&[
        "inspect".into(),
        "--tls-verify=false".into(),
        "--raw".into(),
        format!("docker://{}", h.image(image)),
    ]);
    let manifest: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let layers = manifest["layers"].as_array().unwrap_or_else(|| panic!("{manifest}"));
    layers.iter().map(|l| (l["digest"].as_str().unwrap().to_string(), l["size"].as_u64().unwrap())).collect()
}

/// Access log lines completing an upload of `digest` (the `PUT …/blobs/uploads/…?digest=`).
fn completed_uploads<'a>(log: &'a str, digest: &str) -> Vec<&'a str> {
    let hex = digest.trim_start_matches("sha256:");
    log.lines().filter(|l| l.contains("\"PUT /v2/") && l.contains("/blobs/uploads/") && l.contains(hex)).collect()
}

#[tokio::test]
async fn cache_filling_build_uploads_each_new_layer_once_and_fills_cache_and_every_tag() {
    let Some(h) = Harness::start().await else { return };
    let proxy = CountingProxy::start(h.ctx.registry.addr());
    let context = h.context("build/cache-fill");
    let (mark, before) = (h.ctx.registry.log().len(), proxy.sent());
    let first = build(&h, &proxy, "state-1", &context, &["fill/app:v1", "fill/app:latest", "fill/mirror:v1"]);
    let sent = proxy.sent() - before;
    assert_eq!(hits(&first), [false; 5], "{}", String::from_utf8_lossy(&first.stderr));
    // Entries are written as their layers finish: the first step's is in the cache
    // repository before the image's manifest (four steps, three of them RUN, later).
    let log = h.ctx.registry.log();
    let put =
        |path: &str| log[mark..].find(&format!("\"PUT /v2/{path} ")).unwrap_or_else(|| panic!("no PUT {path}: {log}"));
    let first_entry = format!("fill/cache/manifests/{}", key_tags(&first)[0]);
    assert!(put(&first_entry) < put("fill/app/manifests/v1"), "the first entry was written after the image was pushed");
    let base: Vec<_> = layers(&h, "busybox:latest").into_iter().map(|(d, _)| d).collect();
    let new: Vec<(String, u64)> = layers(&h, "fill/app:v1").into_iter().filter(|(d, _)| !base.contains(d)).collect();
    assert_eq!(new.len(), 4, "RUN, COPY, RUN, RUN layers: {new:?}");
    for (digest, _) in &new {
        let uploads = completed_uploads(&log[mark..], digest);
        assert_eq!(uploads.len(), 1, "layer {digest} must be uploaded once, to one repository: {uploads:#?}");
    }
    // The bytes on the wire: the new layers once, plus requests, configs and manifests (a
    // few KiB each); a second copy of either random layer (≥ 700 kB) would exceed it.
    let layer_bytes: u64 = new.iter().map(|(_, size)| size).sum();
    assert!(
        sent >= layer_bytes && sent < layer_bytes + 256 * 1024,
        "sent {sent} bytes for {layer_bytes} bytes of new layers"
    );
    let digest = String::from_utf8_lossy(&first.stdout).trim().to_string();
    for image in ["fill/app:v1", "fill/app:latest", "fill/mirror:v1"] {
        assert_eq!(h.digest(&h.image(image)), digest, "{image}");
    }
    // The mounted copy is complete: skopeo copies it and umoci unpacks it.
    let rootfs = h.unpack(&h.image("fill/mirror:v1"));
    assert_eq!(run_in(&rootfs, &["cat", "/note.txt"]), "one upload per blob\n");
    // Every entry is in the cache repository with its layer: a fresh pod hits every step,
    // gives the same image and uploads no layer.
    let mark = h.ctx.registry.log().len();
    let second = build(&h, &proxy, "state-2", &context, &["fill/app:v2"]);
    assert_eq!(hits(&second), [true; 5], "{}", String::from_utf8_lossy(&second.stderr));
    assert_eq!(String::from_utf8_lossy(&second.stdout).trim(), digest);
    let log = h.ctx.registry.log();
    for (digest, _) in &new {
        assert_eq!(completed_uploads(&log[mark..], digest), Vec::<&str>::new(), "the cached rebuild uploaded {digest}");
    }
}
