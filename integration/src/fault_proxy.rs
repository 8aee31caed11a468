//! [`FaultProxy`]: an HTTP/1.1 proxy on 127.0.0.1 in front of the real test registry that
//! injects faults into chosen requests: error statuses, 429 with `Retry-After`, answers cut
//! mid-body, request bodies cut mid-upload, flipped bytes and silence. Each connection carries
//! one request (`Connection: close` both ways), so faults hit exactly the requests a rule
//! names. Also [`SilentServer`]: accepts connections and never answers.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

/// What to do to a matching request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Answer with this status (and an empty JSON error body) instead of forwarding.
    Status(u16),
    /// Answer 429 with `Retry-After: <secs>`.
    TooMany(u64),
    /// Forward, but close the connection after this many bytes of the response body.
    CutAnswer(usize),
    /// Forward only this many bytes of the request body, then close (upload cut short).
    CutRequest(usize),
    /// Forward, flipping one bit of the response body byte at this offset.
    Flip(usize),
    /// Read the request and never answer (until the client gives up).
    Stall,
}

/// A fault for requests whose method is `method` and whose path contains `path`, applied
/// to the first `times` of them.
#[derive(Debug, Clone)]
pub struct Rule {
    /// `GET`, `PUT`, … (empty: any).
    pub method: &'static str,
    /// Substring of the request path (`/blobs/sha256:…`, `/manifests/`).
    pub path: String,
    /// The fault.
    pub fault: Fault,
    /// How many matching requests get it.
    pub times: usize,
}

#[derive(Debug, Default)]
struct State {
    rules: Mutex<Vec<(Rule, usize)>>,
    /// Faults applied so far.
    applied: AtomicUsize,
    /// Request lines seen (`GET /v2/…`).
    seen: Mutex<Vec<String>>,
    stop: AtomicBool,
}

/// A running proxy; stops accepting on drop.
#[derive(Debug)]
pub struct FaultProxy {
    addr: String,
    state: Arc<State>,
}

impl FaultProxy {
    /// Start a proxy to `upstream` (`127.0.0.1:PORT`, plain HTTP) with `rules`.
    pub fn start(upstream: &str, rules: Vec<Rule>) -> io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?.to_string();
        let state =
            Arc::new(State { rules: Mutex::new(rules.into_iter().map(|r| (r, 0)).collect()), ..State::default() });
        let upstream = upstream.to_owned();
        let accept_state = state.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if accept_state.stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let (state, upstream) = (accept_state.clone(), upstream.clone());
                std::thread::spawn(move || {
                    let _ = serve(conn, &upstream, &state);
                });
            }
        });
        Ok(Self { addr, state })
    }

    /// `127.0.0.1:PORT` of the proxy.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// How many faults were injected.
    pub fn applied(&self) -> usize {
        self.state.applied.load(Ordering::SeqCst)
    }

    /// The request lines seen so far.
    pub fn seen(&self) -> Vec<String> {
        self.state.seen.lock().unwrap().clone()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(&self.addr);
    }
}

/// Reads up to the end of the HTTP head; returns (head, bytes read past it).
fn read_head(conn: &mut TcpStream) -> io::Result<(Vec<u8>, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let rest = buf.split_off(end + 4);
            return Ok((buf, rest));
        }
        let n = conn.read(&mut chunk)?;
        if n == 0 || buf.len() > 1 << 20 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// The head with any `Connection` header replaced by `Connection: close`.
fn close_head(head: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(head);
    let mut out = String::new();
    for line in text.trim_end().split("\r\n") {
        if !line.to_ascii_lowercase().starts_with("connection:") {
            out.push_str(line);
            out.push_str("\r\n");
        }
    }
    out.push_str("Connection: close\r\n\r\n");
    out.into_bytes()
}

fn content_length(head: &[u8]) -> usize {
    String::from_utf8_lossy(head)
        .split("\r\n")
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length").then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0)
}

fn pick_fault(state: &State, method: &str, path: &str) -> Option<Fault> {
    let mut rules = state.rules.lock().unwrap();
    let (rule, used) = rules
        .iter_mut()
        .find(|(r, used)| *used < r.times && (r.method.is_empty() || r.method == method) && path.contains(&r.path))?;
    *used += 1;
    state.applied.fetch_add(1, Ordering::SeqCst);
    Some(rule.fault)
}

fn serve(mut conn: TcpStream, upstream: &str, state: &State) -> io::Result<()> {
    let (head, mut body) = read_head(&mut conn)?;
    let line = String::from_utf8_lossy(&head).lines().next().unwrap_or_default().to_owned();
    let mut parts = line.split(' ');
    let (method, path) = (parts.next().unwrap_or_default(), parts.next().unwrap_or_default());
    state.seen.lock().unwrap().push(format!("{method} {path}"));
    let fault = pick_fault(state, method, path);
    let answer = |conn: &mut TcpStream, status: u16, extra: &str| {
        let body = br#"{"errors":[{"code":"UNAVAILABLE","message":"injected fault"}]}"#;
        let head = format!("HTTP/1.1 {status} Injected\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{extra}Connection: close\r\n\r\n", body.len());
        conn.write_all(head.as_bytes())?;
        conn.write_all(body)
    };
    match fault {
        Some(Fault::Status(code)) => return answer(&mut conn, code, ""),
        Some(Fault::TooMany(secs)) => return answer(&mut conn, 429, &format!("Retry-After: {secs}\r\n")),
        Some(Fault::Stall) => {
            // Hold the connection open without a word until the client hangs up.
            let mut sink = [0u8; 4096];
            while conn.read(&mut sink).is_ok_and(|n| n > 0) {}
            return Ok(());
        }
        _ => {}
    }
    // Read the whole request body (as the client sends it), then forward.
    let want = content_length(&head);
    let mut chunk = [0u8; 65536];
    while body.len() < want {
        let n = conn.read(&mut chunk)?;
        if n == 0 {
            return Ok(());
        }
        body.extend_from_slice(&chunk[..n]);
        if let Some(Fault::CutRequest(limit)) = fault {
            if body.len() >= limit {
                // The client's upload dies mid-body: close without answering.
                let _ = conn.shutdown(Shutdown::Both);
                return Ok(());
            }
        }
    }
    let mut up = TcpStream::connect(upstream)?;
    up.write_all(&close_head(&head))?;
    up.write_all(&body)?;
    relay_answer(&mut up, &mut conn, fault)
}

/// Copies the upstream answer to the client, applying `CutAnswer` and `Flip`.
fn relay_answer(up: &mut TcpStream, conn: &mut TcpStream, fault: Option<Fault>) -> io::Result<()> {
    let (head, first) = read_head(up)?;
    conn.write_all(&head)?;
    let mut offset = 0usize;
    let mut pending = first;
    let mut chunk = [0u8; 65536];
    loop {
        if pending.is_empty() {
            let n = up.read(&mut chunk)?;
            if n == 0 {
                return Ok(());
            }
            pending.extend_from_slice(&chunk[..n]);
        }
        match fault {
            Some(Fault::CutAnswer(limit)) if offset + pending.len() >= limit => {
                conn.write_all(&pending[..limit - offset])?;
                conn.flush()?;
                // Give the client the bytes, then drop the connection mid-body.
                std::thread::sleep(Duration::from_millis(50));
                return conn.shutdown(Shutdown::Both);
            }
            Some(Fault::Flip(at)) if (offset..offset + pending.len()).contains(&at) => {
                pending[at - offset] ^= 0x01;
            }
            _ => {}
        }
        conn.write_all(&pending)?;
        offset += pending.len();
        pending.clear();
    }
}

/// A TCP server on 127.0.0.1 that accepts connections and never says a word.
#[derive(Debug)]
pub struct SilentServer {
    addr: String,
    accepted: mpsc::Receiver<()>,
    stop: Arc<AtomicBool>,
}

impl SilentServer {
    /// Start listening.
    pub fn start() -> io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?.to_string();
        let (tx, accepted) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for conn in listener.incoming() {
                if flag.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(conn) = conn {
                    held.push(conn);
                    let _ = tx.send(());
                }
            }
        });
        Ok(Self { addr, accepted, stop })
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Wait until a client has connected (or `timeout` passed); whether one did.
    pub fn wait_for_client(&self, timeout: Duration) -> bool {
        self.accepted.recv_timeout(timeout).is_ok()
    }
}

impl Drop for SilentServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(&self.addr);
    }
}
