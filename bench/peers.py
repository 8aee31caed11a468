#!/usr/bin/env python3
"""Peer benchmark driver (issue 9), started by bench/run.sh after it installed the packages and
built rbuild. Python 3 standard library only.

For every case (bench/cases/<case>/) and mode it runs rbuild, buildah and a private dockerd
alternately, repetition by repetition, against one loopback registry behind a byte-counting
proxy, and records wall time (build + push), rbuild's peak RSS and the bytes each operation
moved. Results merge into docs/benchmarks/peers.json (entries of cases/modes not measured in
this run are kept), and docs/benchmarks.md's "Peer comparison" section and
docs/benchmarks/peers.svg are regenerated from that file.
"""

import argparse
import datetime
import json
import os
import platform
import pwd
import re
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time
import random

USER = "rbuild-test"
CASES = ["small", "multistage", "manylayers", "codechange", "bigtree", "debian", "mp-1", "mp-2"]
MODES = ["cold", "cached-fresh-pod", "edit", "warm-local", "push"]
PEERS = ["rbuild", "buildah", "docker"]
# The file the edit mode changes in each case (a late COPY source).
EDIT_FILE = {
    "small": "config.txt",
    "multistage": "src/template.txt",
    "manylayers": "files/f17.txt",
    "codechange": "src/main.c",
    "bigtree": "app.txt",
    "debian": "app.sh",
    "mp-1": "app.txt",
    "mp-2": "app.txt",
}
BASES = {"debian": "debian:bookworm", "mp-1": "busybox-multi:latest", "mp-2": "busybox-multi:latest"}  # else busybox:latest
# Issue 20: one context (bench/cases/multiplatform) built for one platform and for two (arm64
# emulated through qemu-user); the peer is buildah's `--platform` list (`--manifest`).
CASE_DIRS = {"mp-1": "multiplatform", "mp-2": "multiplatform"}
PLATFORMS = {"mp-1": "linux/amd64", "mp-2": "linux/amd64,linux/arm64"}
SECTION = "## Peer comparison (bench/run.sh)"
RUNC = "/usr/sbin/runc"

# Issue 9's targets: (case, mode, seconds or None, the figure to beat, label).
TARGETS = [
    ("small", "cold", 0.15, "Kaniko 0.21 s; BuildKit 0.76 s; Docker 0.77 s; buildah/overlay 1.0 s"),
    ("manylayers", "cold", 0.30, "Kaniko 0.41 s; BuildKit 1.29 s"),
    ("multistage", "cold", 0.40, "Kaniko 0.67 s; BuildKit 0.80 s"),
    ("codechange", "cold", 0.70, "Docker 1.2 s; Kaniko 1.28 s"),
] + [
    (c, "cached-fresh-pod", 0.15, "Kaniko 0.18 s (small), 21 s (bigtree); BuildKit 0.27–0.65 s")
    for c in CASES
] + [
    ("codechange", "edit", 0.40, "BuildKit 0.76 s; Docker 0.90 s"),
    ("manylayers", "warm-local", 0.05, "Docker 0.11 s"),
]


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def run(argv, check=True, **kw):
    """Runs an untimed helper command; raises with its output on failure."""
    p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)
    if check and p.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, argv))} failed ({p.returncode}):\n{p.stdout[-3000:]}")
    return p


def tail(text, n=6):
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return " / ".join(lines[-n:])[-600:]


def chown_user(path):
    pw = pwd.getpwnam(USER)
    os.chown(path, pw.pw_uid, pw.pw_gid)


def user_dir(path, mode=0o755):
    os.makedirs(path, exist_ok=True)
    chown_user(path)
    os.chmod(path, mode)
    return path


def rm_tree(path):
    """Removes a state directory; unmounts what a peer left mounted under it first."""
    if not os.path.exists(path):
        return
    real = os.path.realpath(path)
    with open("/proc/self/mounts") as f:
        mounts = [line.split()[1] for line in f]
    for m in sorted((m for m in mounts if m == real or m.startswith(real + "/")), reverse=True):
        subprocess.run(["umount", "-l", m], stderr=subprocess.DEVNULL)
    shutil.rmtree(path, ignore_errors=True)
    if os.path.exists(path):
        subprocess.run(["rm", "-rf", path])


# ---------------------------------------------------------------------------------------------
# Registry and byte counting


class CountingProxy:
    """A TCP relay in front of the registry counting bytes in each direction (client→registry
    = uploaded, registry→client = downloaded). Every tool talks to the registry through it."""

    def __init__(self, upstream_port):
        self.upstream = ("127.0.0.1", upstream_port)
        self.lock = threading.Lock()
        self.up = 0
        self.down = 0
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def counters(self):
        with self.lock:
            return self.up, self.down

    def _accept(self):
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.upstream)
            except OSError:
                client.close()
                continue
            for s in (client, server):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            threading.Thread(target=self._pipe, args=(client, server, True), daemon=True).start()
            threading.Thread(target=self._pipe, args=(server, client, False), daemon=True).start()

    def _pipe(self, src, dst, upward):
        """Relays one direction with splice(2) through a pipe (no copies through Python, so the
        proxy costs little CPU even for the 300 MB case); counts what it relays."""
        r, w = os.pipe()
        try:
            while True:
                n = os.splice(src.fileno(), w, 1 << 20)
                if n == 0:
                    break
                left = n
                while left:
                    left -= os.splice(r, dst.fileno(), left)
                with self.lock:
                    if upward:
                        self.up += n
                    else:
                        self.down += n
        except OSError:
            pass
        finally:
            os.close(r)
            os.close(w)
            try:
                dst.shutdown(socket.SHUT_WR)
            except OSError:
                pass
            if not upward:
                src.close()
                dst.close()


LOG_FIELD = re.compile(r'(http\.request\.method|http\.request\.uri|http\.response\.status|http\.response\.written)=("[^"]*"|\S+)')


class Registry:
    """integration/scripts/registry.sh's registry (plain HTTP, loopback) plus the proxy."""

    def __init__(self, root, directory):
        self.script = os.path.join(root, "integration/scripts/registry.sh")
        self.dir = directory
        addr = run([self.script, "start", "http", directory]).stdout.strip().splitlines()[-1]
        self.direct = addr
        self.proxy = CountingProxy(int(addr.rsplit(":", 1)[1]))
        self.addr = f"127.0.0.1:{self.proxy.port}"
        self.log = os.path.join(directory, "registry.log")

    def stop(self):
        subprocess.run([self.script, "stop", self.dir])

    def mark(self):
        return os.path.getsize(self.log), self.proxy.counters()

    def traffic(self, mark):
        """What moved since `mark`: raw bytes both ways, blobs uploaded (count, bytes: layers and
        configs the registry stored), cross-repository mounts, blob bytes downloaded."""
        time.sleep(0.2)  # the registry logs a request just after answering it
        offset, (up0, down0) = mark
        up1, down1 = self.proxy.counters()
        with open(self.log, "rb") as f:
            f.seek(offset)
            text = f.read().decode("utf-8", "replace")
        out = {"bytes_up": up1 - up0, "bytes_down": down1 - down0, "blobs_up": 0,
               "blob_bytes_up": 0, "layer_bytes_up": 0, "mounts": 0, "blob_bytes_down": 0}
        for line in text.splitlines():
            if 'msg="response completed"' not in line:
                continue
            f = {k: v.strip('"') for k, v in LOG_FIELD.findall(line)}
            method, uri, status = f.get("http.request.method"), f.get("http.request.uri", ""), f.get("http.response.status")
            if method == "GET" and "/blobs/sha256:" in uri and status == "200":
                out["blob_bytes_down"] += int(f.get("http.response.written", 0))
            elif method in ("PUT", "POST") and status == "201":
                if "mount=" in uri:
                    out["mounts"] += 1
                m = re.search(r"digest=sha256(?::|%3A)([0-9a-f]{64})", uri)
                if m and "/blobs/uploads/" in uri:
                    size, is_config = self.blob(m.group(1))
                    out["blobs_up"] += 1
                    out["blob_bytes_up"] += size
                    if not is_config:
                        out["layer_bytes_up"] += size
        return out

    def blob(self, hexdigest):
        """Size of a stored blob, and whether it is an image config (JSON) rather than a layer."""
        p = os.path.join(self.dir, "storage/docker/registry/v2/blobs/sha256", hexdigest[:2], hexdigest, "data")
        try:
            with open(p, "rb") as f:
                return os.path.getsize(p), f.read(1) == b"{"
        except OSError:
            return 0, False


# ---------------------------------------------------------------------------------------------
# Base images and case contexts


def make_minbase(state):
    """The Debian bookworm minbase image, as an OCI archive made once under the state dir."""
    d = os.path.join(state, "minbase")
    archive = os.path.join(d, "debian-minbase.oci.tar")
    if os.path.exists(archive):
        return archive
    os.makedirs(d, exist_ok=True)
    rootfs = os.path.join(d, "rootfs")
    if not os.path.exists(rootfs + ".done"):
        log("debootstrap --variant=minbase bookworm (once)")
        rm_tree(rootfs)
        run(["debootstrap", "--variant=minbase", "bookworm", rootfs, "http://deb.debian.org/debian"])
        open(rootfs + ".done", "w").close()
    ctx = os.path.join(d, "ctx")
    os.makedirs(ctx, exist_ok=True)
    run(["tar", "-C", rootfs, "--numeric-owner", "-cf", os.path.join(ctx, "rootfs.tar"), "."])
    with open(os.path.join(ctx, "Dockerfile"), "w") as f:
        f.write('FROM scratch\nADD rootfs.tar /\nCMD ["bash"]\n')
    g = ["buildah", "--root", os.path.join(d, "broot"), "--runroot", os.path.join(d, "brunroot"), "--storage-driver", "vfs"]
    run(g + ["bud", "--isolation", "chroot", "-t", "localhost/debian-minbase:bookworm", ctx])
    run(g + ["push", "localhost/debian-minbase:bookworm", f"oci-archive:{archive}:bookworm"])
    rm_tree(os.path.join(d, "broot"))
    rm_tree(os.path.join(d, "brunroot"))
    os.remove(os.path.join(ctx, "rootfs.tar"))
    return archive


def make_vendor(state, lock_file):
    """codechange's vendored dependency tree (~50 MB, same bytes every run so cache keys hold):
    per locked package ~66 KB of source text, a 640 KiB library (incompressible) every tenth."""
    out = os.path.join(state, "generated", "codechange-vendor")
    if os.path.exists(out + ".done"):
        return out
    rm_tree(out)
    rng = random.Random(9)
    with open(lock_file) as f:
        pkgs = [line.split() for line in f if line.strip() and not line.startswith("#")]
    for i, (name, version) in enumerate(pkgs):
        d = os.path.join(out, f"{name}-{version}")
        os.makedirs(d)
        with open(os.path.join(d, "index.js"), "w") as f:
            f.writelines(f"export function {name}_{j}(x) {{ return x * {j} + {len(name)}; }} // {version}\n" for j in range(1100))
        if i % 10 == 0:
            with open(os.path.join(d, f"lib{name}.so"), "wb") as f:
                f.write(rng.randbytes(655360))
    os.utime(out, (1700000000, 1700000000))
    run(["find", out, "-exec", "touch", "-h", "-d", "@1700000000", "{}", "+"])
    open(out + ".done", "w").close()
    return out


def prepare_cases(root, state, work, cases):
    """Copies each case into the run's work dir (world-readable), generating what is not
    committed; returns {case: template dir}."""
    out = {}
    for case in cases:
        dst = os.path.join(work, "cases", case)
        shutil.copytree(os.path.join(root, "bench/cases", CASE_DIRS.get(case, case)), dst, symlinks=True)
        if case == "codechange":
            shutil.copytree(make_vendor(state, os.path.join(dst, "deps.lock")), os.path.join(dst, "vendor"), symlinks=True)
        run(["chmod", "-R", "a+rX", dst])
        out[case] = dst
    return out


# ---------------------------------------------------------------------------------------------
# The tools


class Op:
    """One timed operation: commands run one after another (build, then push where separate)."""

    def __init__(self, cmds, env=None, user=False):
        self.cmds, self.env, self.user = cmds, env, user


def as_user(argv):
    return ["setpriv", "--reuid", USER, "--regid", USER, "--init-groups"] + argv


class Rbuild:
    name = "rbuild"

    def __init__(self, h):
        self.h = h
        self.bin = os.path.join(h.work, "bin", "rbuild")
        os.makedirs(os.path.dirname(self.bin), exist_ok=True)
        shutil.copy2(os.path.join(h.root, "target/release/rbuild"), self.bin)
        os.chmod(self.bin, 0o755)
        self.home = user_dir(os.path.join(h.work, "home", "rbuild"))
        helptext = run([self.bin, "build", "--help"]).stdout
        self.has_cache = "--cache-repo" in helptext
        self.version = run([self.bin, "--version"]).stdout.strip()
        self.note = "" if self.has_cache else "--cache-repo not in this build"

    def env(self):
        return {"PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", "HOME": self.home,
                "XDG_CACHE_HOME": os.path.join(self.home, ".cache")}

    def fresh_state(self, key):
        path = os.path.join(self.h.work, "state", "rbuild", key)
        rm_tree(path)
        return user_dir(path)

    def uses_cache(self, mode):
        return mode in ("cached-fresh-pod", "edit") or (self.has_cache and mode in ("warm-local", "push"))

    def supports(self, mode):
        if mode in ("cached-fresh-pod", "edit") and not self.has_cache:
            return "n/a (not implemented in this build)"
        return None

    def build(self, case, ctx, state, dest, mode):
        argv = [self.bin, "build", "--insecure-registry", self.h.reg.addr, "--cache-dir", state,
                "--build-arg", f"BASE={self.h.base(case)}", "--destination", dest]
        if self.uses_cache(mode):
            argv += ["--cache-repo", f"{self.h.reg.addr}/cache/{case}"]
        if case in PLATFORMS:
            argv += ["--platform", PLATFORMS[case]]
        return Op([as_user(argv + [ctx])], self.env(), user=True)

    def copy(self, case, state, ctx, src, dest, mode):
        # No push-only command: the same build from the same local state, to a new repository.
        return self.build(case, ctx, state, dest, mode)


class Buildah:
    name = "buildah"

    def __init__(self, h):
        self.h = h
        self.home = user_dir(os.path.join(h.work, "home", "buildah"))
        self.xdg = user_dir(os.path.join(h.work, "xdg", "buildah"), 0o700)
        self.version = run(["buildah", "--version"]).stdout.strip()
        self.driver, self.note = self.detect_driver()

    def env(self):
        return {"PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", "HOME": self.home,
                "XDG_RUNTIME_DIR": self.xdg}

    def g(self, state, driver=None):
        return ["buildah", "--root", os.path.join(state, "root"), "--runroot", os.path.join(state, "runroot"),
                "--storage-driver", driver or self.driver]

    def detect_driver(self):
        """overlay where a rootless RUN works with it, else vfs."""
        ctx = os.path.join(self.h.work, "probe")
        os.makedirs(ctx, exist_ok=True)
        with open(os.path.join(ctx, "Dockerfile"), "w") as f:
            f.write(f"FROM {self.h.base('small')}\nRUN echo probe > /probe\n")
        run(["chmod", "-R", "a+rX", ctx])
        errors = []
        for driver in ("overlay", "vfs"):
            state = self.fresh_state(f"probe-{driver}")
            argv = self.g(state, driver) + ["bud", "--runtime", RUNC, "--network", "host", "--tls-verify=false", "-t", "probe", ctx]
            p = run(as_user(argv), check=False, env=self.env())
            rm_tree(state)
            if p.returncode == 0:
                return driver, ("; ".join(errors) if errors else "")
            errors.append(f"{driver} failed: {tail(p.stdout, 2)}")
        raise RuntimeError("buildah cannot build rootless here: " + "; ".join(errors))

    def fresh_state(self, key):
        path = os.path.join(self.h.work, "state", "buildah", key)
        rm_tree(path)
        return user_dir(path)

    def supports(self, mode):
        return None

    def build(self, case, ctx, state, dest, mode):
        bud = self.g(state) + ["bud", "--runtime", RUNC, "--network", "host", "--tls-verify=false",
                               "--build-arg", f"BASE={self.h.base(case)}"]
        multi = "," in PLATFORMS.get(case, "")
        if case in PLATFORMS:
            bud += ["--platform", PLATFORMS[case]]
        bud += ["--manifest", dest] if multi else ["-t", dest]
        if mode in ("cached-fresh-pod", "edit"):
            repo = f"{self.h.reg.addr}/cache/buildah-{case}"
            bud += ["--layers", "--cache-from", repo, "--cache-to", repo]
        elif mode in ("warm-local", "push"):
            bud += ["--layers"]
        push = self.g(state) + ["push", "--tls-verify=false", dest, f"docker://{dest}"]
        if multi:
            push = self.g(state) + ["manifest", "push", "--all", "--tls-verify=false", dest, f"docker://{dest}"]
        return Op([as_user(bud + [ctx]), as_user(push)], self.env(), user=True)

    def copy(self, case, state, ctx, src, dest, mode):
        push = self.g(state) + ["push", "--tls-verify=false", src, f"docker://{dest}"]
        return Op([as_user(push)], self.env(), user=True)


class Docker:
    """A private dockerd (Debian's docker.io), BuildKit on, host network for RUN."""

    name = "docker"

    def __init__(self, h):
        self.h = h
        self.dir = os.path.join(h.state, "docker")  # short: containerd's socket path is limited
        rm_tree(self.dir)
        os.makedirs(os.path.join(self.dir, "config"))
        self.sock = f"unix://{self.dir}/docker.sock"
        self.client = ["/usr/bin/docker", "-H", self.sock]
        self.proc = None
        self.note = ""
        self.version = run(["dockerd", "--version"]).stdout.strip()
        logf = open(os.path.join(self.dir, "dockerd.log"), "w")
        self.proc = subprocess.Popen(
            ["dockerd", "--data-root", f"{self.dir}/data", "--exec-root", f"{self.dir}/exec",
             "--pidfile", f"{self.dir}/docker.pid", "--host", self.sock, "--bridge=none",
             "--iptables=false", "--ip-masq=false", "--insecure-registry", h.reg.addr,
             "--log-level", "warn"],
            stdout=logf, stderr=subprocess.STDOUT)
        for _ in range(120):
            if run(self.client + ["version"], check=False, env=self.env()).returncode == 0:
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.25)
        with open(os.path.join(self.dir, "dockerd.log")) as f:
            err = tail(f.read(), 3)
        self.stop()
        raise RuntimeError(f"dockerd did not start: {err}")

    def env(self):
        return {"PATH": "/usr/bin:/bin:/usr/sbin:/sbin", "HOME": self.dir, "DOCKER_BUILDKIT": "1",
                "DOCKER_CONFIG": os.path.join(self.dir, "config")}

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        rm_tree(self.dir)

    def fresh_state(self, key):
        c, e = self.client, self.env()
        run(c + ["system", "prune", "-af"], env=e)
        run(c + ["builder", "prune", "-af"], env=e)
        return key

    def supports(self, mode):
        return None

    def build(self, case, ctx, state, dest, mode):
        argv = self.client + ["build", "-q", "--network", "host", "--build-arg", f"BASE={self.h.base(case)}", "-t", dest]
        if mode in ("cached-fresh-pod", "edit"):
            argv += ["--cache-from", f"{self.h.reg.addr}/cache/docker-{case}:latest", "--build-arg", "BUILDKIT_INLINE_CACHE=1"]
        return Op([argv + [ctx], self.client + ["push", dest]], self.env())

    def prime_cache(self, case, ctx):
        """Docker's registry cache: an inline-cache image (BuildKit in dockerd has no mode=max)."""
        ref = f"{self.h.reg.addr}/cache/docker-{case}:latest"
        return Op([self.client + ["build", "-q", "--network", "host", "--build-arg", f"BASE={self.h.base(case)}",
                                  "--build-arg", "BUILDKIT_INLINE_CACHE=1", "-t", ref, ctx],
                   self.client + ["push", ref]], self.env())

    def copy(self, case, state, ctx, src, dest, mode):
        run(self.client + ["tag", src, dest], env=self.env())
        return Op([self.client + ["push", dest]], self.env())


# ---------------------------------------------------------------------------------------------
# Measuring


def execute(op, logfile):
    """Runs an Op; returns (seconds, peak RSS KiB of the largest process, CPU seconds (user +
    system, the commands and the children they waited for), error or None)."""
    peak = 0
    cpu = 0.0
    t0 = time.monotonic()
    with open(logfile, "a") as out:
        for argv in op.cmds:
            out.write(f"$ {' '.join(argv)}\n")
            out.flush()
            p = subprocess.Popen(argv, stdout=out, stderr=out, env=op.env)
            _, status, ru = os.wait4(p.pid, 0)
            p.returncode = os.waitstatus_to_exitcode(status)
            peak = max(peak, ru.ru_maxrss)
            cpu += ru.ru_utime + ru.ru_stime
            if p.returncode != 0:
                elapsed = time.monotonic() - t0
                out.flush()
                with open(logfile) as f:
                    return elapsed, peak, cpu, f"exit {p.returncode}: {tail(f.read(), 4)}"
    return time.monotonic() - t0, peak, cpu, None


def loadavg():
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


class Harness:
    def __init__(self, args):
        self.args = args
        self.root = args.root
        self.state = args.state
        self.work = os.path.join(self.state, "run")
        rm_tree(self.work)
        os.makedirs(self.work)
        os.chmod(self.work, 0o755)
        self.logs = os.path.join(self.work, "logs")
        os.makedirs(self.logs)
        self.run_id = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%S")
        self.reg = Registry(self.root, os.path.join(self.work, "registry"))
        self.loads = []

    def base(self, case):
        return f"{self.reg.addr}/{BASES.get(case, 'busybox:latest')}"

    def setup_bases(self, cases):
        log(f"registry {self.reg.direct} (counted through {self.reg.addr}); pushing base images")
        # What integration/scripts/make-base-images.sh does, with the release fixture.
        run([os.path.join(self.root, "target/release/rbuild-fixture"), "base-images", self.reg.direct])
        if "debian" in cases:
            archive = make_minbase(self.state)
            run(["skopeo", "copy", "-q", "--dest-tls-verify=false", f"oci-archive:{archive}:bookworm",
                 f"docker://{self.reg.direct}/debian:bookworm"])

    def context(self, tool, case, key, edit=None):
        dst = os.path.join(self.work, "ctx", tool.name, f"{case}-{key}")
        rm_tree(dst)
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        run(["cp", "-a", self.templates[case], dst])
        if edit is not None:
            path = os.path.join(dst, EDIT_FILE[case])
            comment = f"/* edit {edit} */\n" if path.endswith((".c", ".h")) else f"# edit {edit}\n"
            with open(path, "a") as f:
                f.write(comment)
        return dst

    def measure(self, tool, op, label):
        self.loads.append(loadavg())
        mark = self.reg.mark()
        seconds, rss, cpu, err = execute(op, os.path.join(self.logs, f"{label}.log"))
        traffic = self.reg.traffic(mark)
        log(f"  {label}: {seconds:.2f} s{' FAILED ' + err if err else ''}")
        return {"seconds": round(seconds, 4), "cpu_seconds": round(cpu, 4), "rss_kib": rss, "load": self.loads[-1], "error": err, **traffic}

    def untimed(self, op, label):
        seconds, _, _, err = execute(op, os.path.join(self.logs, f"{label}.log"))
        if err:
            raise RuntimeError(f"{label}: {err}")

    def dest(self, tool, case, tag):
        return f"{self.reg.addr}/bench/{tool.name}-{case}:{tag}"

    def run_mode(self, tools, case, mode, reps):
        """Alternates the tools repetition by repetition; returns {tool: entry}."""
        entries = {t.name: {"samples": [], "error": None, "note": getattr(t, "note", "")} for t in tools}
        active = []
        persistent = {}
        for t in tools:
            why = t.supports(mode)
            if not why and t.name == "docker" and case in PLATFORMS:
                why = "n/a (a multi-platform build needs Docker's containerd image store; not set up here)"
            if why:
                entries[t.name]["error"] = why
                continue
            try:
                persistent[t.name] = self.prime(t, case, mode)
                active.append(t)
            except RuntimeError as e:
                entries[t.name]["error"] = f"priming failed: {tail(str(e), 3)}"
                log(f"  {t.name} {case} {mode}: {entries[t.name]['error']}")
        for rep in range(1, reps + 1):
            for t in list(active):
                label = f"{case}-{mode}-{t.name}-{rep}"
                op, cleanup = self.op(t, case, mode, rep, persistent.get(t.name))
                sample = self.measure(t, op, label)
                if cleanup:
                    rm_tree(cleanup)
                if mode == "cold" and case == "bigtree" and t.name == "rbuild" and rep <= 2:
                    sample["reference"] = self.bigtree_reference(rep)
                entries[t.name]["samples"].append(sample)
                if sample["error"]:
                    entries[t.name]["error"] = sample["error"]
                    active.remove(t)  # a failing tool fails every repetition: do not wait for it
        for t in tools:
            st = persistent.get(t.name)
            if st and t.name != "docker":
                rm_tree(st["state"])
        return entries

    def prime(self, t, case, mode):
        """Untimed preparation: fills the registry cache (cached-fresh-pod, edit) or the local
        state (warm-local, push). Returns what the repetitions reuse."""
        if mode == "cold":
            return None
        key = f"{case}-{mode}-prime"
        ctx = self.context(t, case, "prime")
        state = t.fresh_state(key)
        dest = self.dest(t, case, f"prime-{mode}")
        if mode in ("cached-fresh-pod", "edit"):
            if isinstance(t, Docker):
                self.untimed(t.prime_cache(case, ctx), f"{key}-{t.name}")
            else:
                self.untimed(t.build(case, ctx, state, dest, mode), f"{key}-{t.name}")
                if t.name != "docker":
                    rm_tree(state)
            return None
        self.untimed(t.build(case, ctx, state, dest, mode), f"{key}-{t.name}")
        return {"state": state, "ctx": ctx, "src": dest}

    def op(self, t, case, mode, rep, persistent):
        """The timed operation of one repetition and the directory to remove afterwards."""
        tag = f"{mode}-{rep}"
        if mode in ("cold", "cached-fresh-pod", "edit"):
            state = t.fresh_state(f"{case}-{mode}-{rep}")
            ctx = self.context(t, case, f"{mode}-{rep}", edit=f"{self.run_id}-{rep}" if mode == "edit" else None)
            return t.build(case, ctx, state, self.dest(t, case, tag), mode), (state if t.name != "docker" else None)
        if mode == "warm-local":
            return t.build(case, persistent["ctx"], persistent["state"], self.dest(t, case, tag), mode), None
        # push: the image again, to a repository that has none of it (the registry has every blob).
        dest = f"{self.reg.addr}/bench/{t.name}-{case}-copy{rep}:latest"
        return t.copy(case, persistent["state"], persistent["ctx"], persistent["src"], dest, mode), None

    def bigtree_reference(self, rep):
        """The RUN's own work (gen-tree.sh by busybox on the host, no sandbox) and
        `tar -c | gzip -6` of its output: the bigtree cold target is RUN + 1.2 × tar|gzip."""
        d = os.path.join(self.work, "reference")
        rm_tree(d)
        os.makedirs(d)
        t0 = time.monotonic()
        run(["busybox", "sh", os.path.join(self.templates["bigtree"], "gen-tree.sh"), os.path.join(d, "data")])
        t1 = time.monotonic()
        run(["sh", "-c", f"tar -cf - -C {d}/data . | gzip -6 > {d}/data.tar.gz"])
        t2 = time.monotonic()
        size = os.path.getsize(f"{d}/data.tar.gz")
        rm_tree(d)
        log(f"  bigtree reference {rep}: RUN {t1 - t0:.2f} s, tar|gzip {t2 - t1:.2f} s")
        return {"run_seconds": round(t1 - t0, 3), "tar_gzip_seconds": round(t2 - t1, 3), "gzip_bytes": size}

    def main(self, save):
        """Measures every case and mode; calls save(results, environment) after each one so an
        interrupted run keeps what it measured."""
        a = self.args
        results = {}
        tools = []
        try:
            self.setup_bases(a.cases)
            self.templates = prepare_cases(self.root, self.state, self.work, a.cases)
            factories = {"rbuild": Rbuild, "buildah": Buildah, "docker": Docker}
            skipped = {}
            for name in a.peers:
                try:
                    tools.append(factories[name](self))
                    log(f"{name}: {tools[-1].version} {tools[-1].note}")
                except (RuntimeError, OSError) as e:
                    skipped[name] = tail(str(e), 3)
                    log(f"{name}: skipped: {skipped[name]}")
            for case in a.cases:
                for mode in a.modes:
                    log(f"{case} / {mode}")
                    results.setdefault(case, {})[mode] = {
                        "tools": self.run_mode(tools, case, mode, a.reps),
                        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                        "reps": a.reps,
                    }
                    for name, why in skipped.items():
                        results[case][mode]["tools"][name] = {"samples": [], "error": f"not run: {why}", "note": ""}
                    summarise(results[case][mode])
                    save(results, self.environment(tools))
        finally:
            for t in tools:
                if isinstance(t, Docker):
                    t.stop()
            self.reg.stop()
        return results

    def environment(self, tools):
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "?")
        with open("/proc/meminfo") as f:
            mem = int(f.readline().split()[1]) // (1024 * 1024)
        versions = {t.name: t.version for t in tools}
        versions["registry"] = run(["docker-registry", "--version"], check=False).stdout.strip()
        storage = next((f"{t.driver}{' (' + t.note + ')' if t.note else ''}" for t in tools if isinstance(t, Buildah)), None)
        return {
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "machine": f"{cpu}, {os.cpu_count()} cores, {mem} GiB",
            "kernel": platform.release(),
            "os": run(["sh", "-c", ". /etc/os-release; echo $PRETTY_NAME"]).stdout.strip(),
            "versions": versions,
            "buildah_storage": storage,
            "load": {"min": min(self.loads, default=0), "median": statistics.median(self.loads) if self.loads else 0,
                     "max": max(self.loads, default=0)},
        }


# ---------------------------------------------------------------------------------------------
# Reporting


def entries(results):
    """(case, mode, entry) in table order, for what was measured."""
    for case in CASES:
        for mode in MODES:
            e = results.get(case, {}).get(mode)
            if e:
                yield case, mode, e


def stats(values):
    if not values:
        return None
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def summarise(entry):
    """Adds medians and pair-by-pair ratios (rbuild/peer per repetition) to one case/mode."""
    tools = entry["tools"]
    for t in tools.values():
        ok = [s for s in t["samples"] if not s["error"]]
        t["seconds"] = stats([s["seconds"] for s in ok])
        t["rss_mib"] = stats([s["rss_kib"] / 1024 for s in ok])
        t["cpu_seconds"] = stats([s["cpu_seconds"] for s in ok if "cpu_seconds" in s])
        for k in ("bytes_up", "bytes_down", "blob_bytes_up", "layer_bytes_up", "blob_bytes_down", "blobs_up", "mounts"):
            t[k] = stats([s[k] for s in ok])
    rb = {i: s for i, s in enumerate(tools.get("rbuild", {}).get("samples", [])) if not s["error"]}
    entry["ratios"] = {}
    for name, t in tools.items():
        if name == "rbuild":
            continue
        pairs = [rb[i]["seconds"] / s["seconds"] for i, s in enumerate(t["samples"]) if i in rb and not s["error"] and s["seconds"] > 0]
        entry["ratios"][name] = stats(pairs)
    loads = [s["load"] for t in tools.values() for s in t["samples"]]
    entry["load"] = stats(loads)
    refs = [s["reference"] for s in rb.values() if "reference" in s]
    if refs:
        entry["reference"] = {
            "run_seconds": stats([r["run_seconds"] for r in refs]),
            "tar_gzip_seconds": stats([r["tar_gzip_seconds"] for r in refs]),
            "target_seconds": stats([r["run_seconds"] + 1.2 * r["tar_gzip_seconds"] for r in refs]),
        }
    return entry


def fmt_s(st):
    if not st:
        return "—"
    return f"{st['median']:.2f} ({st['min']:.2f}–{st['max']:.2f})"


def fmt_bytes(n):
    if n is None:
        return "—"
    for unit, div in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= div:
            return f"{n / div:.1f} {unit}"
    return f"{int(n)} B"


def cell(t):
    if t is None:
        return "—"
    if t.get("seconds"):
        return fmt_s(t["seconds"])
    err = t.get("error")
    if not err:
        return "—"
    if err.startswith("n/a"):
        return err
    err = err[err.find("error:"):] if "error:" in err else err
    return "failed: " + err[:240].replace("|", "\\|")


def markdown(data):
    env = data["environment"]
    res = data["results"]
    out = [SECTION, ""]
    out.append("`bench/run.sh [--reps N] [--peers rbuild,buildah,docker] [CASE…] [MODE…]` (cases in "
               "`bench/cases/`, driver `bench/peers.py`, raw samples in `docs/benchmarks/peers.json`, "
               "plot `docs/benchmarks/peers.svg`). Every figure is wall time of build **and push** to a "
               "loopback registry (`docker-registry`, behind a byte-counting proxy), as median (min–max) "
               "seconds over the repetitions; the tools run alternately within each repetition, and the "
               "ratio rbuild/peer is taken pair by pair and then its median. rbuild and buildah run rootless "
               "as `rbuild-test`; Docker is a private rootful `dockerd` with BuildKit. *rbuild CPU s* is the "
               "user + system time of rbuild and its RUN children (from `wait4`): on a loaded machine it "
               "is the steadier figure; *load* is the 1-minute load average when the samples started.")
    out.append("")
    out.append("Modes: **cold** = empty local state, no cache flags; **cached-fresh-pod** = empty local state, "
               "registry cache filled by an earlier (untimed) build of the same context (rbuild `--cache-repo`, "
               "buildah `--layers --cache-from/--cache-to`, Docker inline cache `--cache-from`); **edit** = the "
               "same with one source file changed; **warm-local** = the local state of an earlier build, "
               "nothing changed; **push** = the already-built image pushed to a new repository of the same "
               "registry (rbuild has no push-only command: it rebuilds from its warm local state).")
    out.append("")
    out.append(f"Last run: {env['date']}; {env['machine']}; {env['os']}, kernel {env['kernel']}; load average "
               f"during the measurements {env['load']['min']:.1f}–{env['load']['max']:.1f} (median "
               f"{env['load']['median']:.1f}) — other builds shared the 2 cores, so absolute times are noisy, "
               f"the same-run ratios less so. Versions: "
               + "; ".join(f"{k}: {v}" for k, v in env["versions"].items())
               + (f". buildah storage: {env['buildah_storage']}." if env.get("buildah_storage") else "."))
    out.append("")
    out.append("| case | mode | date | reps | rbuild s | buildah s | docker s | rbuild/buildah | rbuild/docker | rbuild CPU s | rbuild peak RSS MiB | load |")
    out.append("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for case, mode, e in entries(res):
        t = e["tools"]
        r = e.get("ratios", {})
        rss = t.get("rbuild", {}).get("rss_mib")
        out.append(f"| {case} | {mode} | {e['date'][:10]} | {e['reps']} | {cell(t.get('rbuild'))} | {cell(t.get('buildah'))} | "
                   f"{cell(t.get('docker'))} | {fmt_ratio(r.get('buildah'))} | {fmt_ratio(r.get('docker'))} | "
                   f"{fmt_cpu(t.get('rbuild', {}).get('cpu_seconds'))} | {fmt_rss(rss)} | {fmt_load(e.get('load'))} |")
    out.append("")
    out.append("Registry traffic per operation (median; up = client→registry, down = registry→client, all "
               "bytes through the proxy; blob bytes = layer and config blobs the registry stored/served, from "
               "its log):")
    out.append("")
    out.append("| case | mode | tool | up | blobs uploaded (bytes) | of which layers | mounts | down | blob bytes down |")
    out.append("|---|---|---|---|---|---|---|---|---|")
    for case, mode, e in entries(res):
        for name in PEERS:
            t = e["tools"].get(name)
            if not t or not t.get("seconds"):
                continue
            m = lambda k: t[k]["median"] if t.get(k) else None  # noqa: E731
            out.append(f"| {case} | {mode} | {name} | {fmt_bytes(m('bytes_up'))} | {m('blobs_up'):.0f} "
                       f"({fmt_bytes(m('blob_bytes_up'))}) | {fmt_bytes(m('layer_bytes_up'))} | {m('mounts'):.0f} | "
                       f"{fmt_bytes(m('bytes_down'))} | {fmt_bytes(m('blob_bytes_down'))} |")
    out.append("")
    out.append("### Targets (issue 9) against the measured rbuild medians")
    out.append("")
    out.append("| target | rbuild target | fastest peer measured earlier | rbuild median here (CPU s) | met? |")
    out.append("|---|---|---|---|---|")
    for case, mode, target, peer in TARGETS:
        e = res.get(case, {}).get(mode)
        t = e["tools"].get("rbuild") if e else None
        med = t["seconds"]["median"] if t and t.get("seconds") else None
        cpu = t["cpu_seconds"]["median"] if t and t.get("cpu_seconds") else None
        if med is None:
            verdict = "not measured" if not t or not t.get("error") else f"n/a ({t['error'][:80]})"
            out.append(f"| {mode} `{case}` | ≤ {target:.2f} s | {peer} | — | {verdict} |")
        else:
            verdict = "met" if med <= target else "missed"
            if med > target and cpu is not None:
                verdict += " (CPU alone within target: the rest is waiting: registry round trips, other load)" if cpu <= target else " (CPU alone over target too)"
            cpu_text = f" ({cpu:.2f})" if cpu is not None else ""
            out.append(f"| {mode} `{case}` | ≤ {target:.2f} s | {peer} | {med:.2f} s{cpu_text} | {verdict} |")
    e = res.get("bigtree", {}).get("cold")
    if e and e.get("reference"):
        ref = e["reference"]
        t = e["tools"].get("rbuild", {})
        med = t["seconds"]["median"] if t.get("seconds") else None
        rss = t["rss_mib"]["max"] if t.get("rss_mib") else None
        target = ref["target_seconds"]["median"]
        verdict = "—" if med is None else ("met" if med <= target else "missed")
        rssv = "—" if rss is None else ("met" if rss < 100 else "missed")
        out.append(f"| cold `bigtree` | ≤ RUN ({ref['run_seconds']['median']:.1f} s) + 1.2 × tar\\|gzip "
                   f"({ref['tar_gzip_seconds']['median']:.1f} s) = {target:.1f} s | peers 18–26 s | "
                   f"{'—' if med is None else f'{med:.1f} s'} | {verdict} |")
        out.append(f"| cold `bigtree` peak RSS | < 100 MB | | {'—' if rss is None else f'{rss:.0f} MiB'} | {rssv} |")
    push = [(c, res[c]["push"]["tools"].get("rbuild")) for c in CASES if "push" in res.get(c, {})]
    push = [(c, t) for c, t in push if t and t.get("layer_bytes_up")]
    if push:
        worst = max(t["layer_bytes_up"]["max"] for _, t in push)
        out.append(f"| push of an image whose layers the registry has | 0 layer bytes uploaded | | max "
                   f"{fmt_bytes(worst)} of layers over {len(push)} cases | {'met' if worst == 0 else 'missed'} |")
    out.append("")
    return "\n".join(out)


def fmt_cpu(st):
    return f"{st['median']:.2f}" if st else "—"


def fmt_load(st):
    return f"{st['median']:.1f}" if st else "—"


def fmt_rss(st):
    return f"{st['median']:.0f} (max {st['max']:.0f})" if st else "—"


def fmt_ratio(st):
    if not st:
        return "—"
    return f"{st['median']:.2f} ({st['min']:.2f}–{st['max']:.2f})"


def svg(data):
    """Horizontal bars: median rbuild/peer ratio per case/mode (log scale), min–max whiskers."""
    rows = []
    for case, mode, e in entries(data["results"]):
        for peer in ("buildah", "docker"):
            st = e.get("ratios", {}).get(peer)
            if st:
                rows.append((f"{case} / {mode} vs {peer}", peer, st))
    import math
    lo, hi = 1 / 64, 4.0
    width, left, right, rowh, top = 760, 250, 20, 18, 40
    height = top + rowh * len(rows) + 30
    span = width - left - right

    def x(v):
        v = min(max(v, lo), hi)
        return left + span * (math.log(v) - math.log(lo)) / (math.log(hi) - math.log(lo))

    colors = {"buildah": "#4e79a7", "docker": "#f28e2b"}
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="11">',
           f'<text x="{left}" y="16" font-size="13">rbuild time / peer time (median, min–max; log scale; left of 1 = rbuild faster)</text>']
    for tick in (1 / 64, 1 / 16, 1 / 4, 1 / 2, 1, 2, 4):
        out.append(f'<line x1="{x(tick):.1f}" y1="{top - 6}" x2="{x(tick):.1f}" y2="{height - 24}" stroke="{"#000" if tick == 1 else "#ddd"}"/>')
        label = f"1/{int(1 / tick)}" if tick < 1 else f"{tick:g}"
        out.append(f'<text x="{x(tick):.1f}" y="{height - 10}" text-anchor="middle">{label}</text>')
    for i, (label, peer, st) in enumerate(rows):
        y = top + i * rowh
        out.append(f'<text x="{left - 6}" y="{y + 12}" text-anchor="end">{label}</text>')
        out.append(f'<rect x="{x(lo):.1f}" y="{y + 3}" width="{x(st["median"]) - x(lo):.1f}" height="{rowh - 6}" fill="{colors[peer]}"/>')
        out.append(f'<line x1="{x(st["min"]):.1f}" y1="{y + rowh / 2}" x2="{x(st["max"]):.1f}" y2="{y + rowh / 2}" stroke="#000"/>')
        out.append(f'<text x="{min(x(st["median"]), x(st["max"])) + 4:.1f}" y="{y + 12}">{st["median"]:.2f}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def update_docs(root, data):
    path = os.path.join(root, "docs/benchmarks.md")
    with open(path) as f:
        text = f.read()
    section = markdown(data)
    if SECTION in text:
        start = text.index(SECTION)
        nxt = text.find("\n## ", start + len(SECTION))
        text = text[:start] + section + ("\n" + text[nxt + 1:] if nxt >= 0 else "")
    else:
        text = text.rstrip("\n") + "\n\n" + section
    with open(path, "w") as f:
        f.write(text)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--state", required=True)
    ap.add_argument("--root", required=True)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--peers", default=",".join(PEERS))
    ap.add_argument("--smoke", action="store_true", help="small, cold, 1 repetition, rbuild + buildah; no docs")
    ap.add_argument("--no-docs", action="store_true", help="write results under the state dir only")
    ap.add_argument("--report-only", action="store_true",
                    help="regenerate docs/benchmarks.md's section and the plot from docs/benchmarks/peers.json")
    ap.add_argument("what", nargs="*", help="cases and modes (default: all)")
    a = ap.parse_args()
    if a.report_only:
        with open(os.path.join(a.root, "docs/benchmarks/peers.json")) as f:
            data = json.load(f)
        with open(os.path.join(a.root, "docs/benchmarks/peers.svg"), "w") as f:
            f.write(svg(data))
        update_docs(a.root, data)
        return
    a.peers = [p for p in a.peers.split(",") if p]
    bad = [p for p in a.peers if p not in PEERS] + [w for w in a.what if w not in CASES + MODES]
    if bad or "rbuild" not in a.peers:
        ap.error(f"unknown {bad} (cases {CASES}, modes {MODES}, peers {PEERS}; rbuild is always one)")
    a.cases = [w for w in a.what if w in CASES] or CASES
    a.modes = [w for w in a.what if w in MODES] or MODES
    if a.smoke:
        a.cases, a.modes, a.reps, a.no_docs = ["small"], ["cold"], 1, True
        a.peers = [p for p in a.peers if p in ("rbuild", "buildah")]
    h = Harness(a)

    def save(results, env):
        if a.no_docs:
            out = os.path.join(a.state, "smoke.json" if a.smoke else "results.json")
            with open(out, "w") as f:
                json.dump({"environment": env, "results": results}, f, indent=1)
            return out
        jpath = os.path.join(a.root, "docs/benchmarks/peers.json")
        os.makedirs(os.path.dirname(jpath), exist_ok=True)
        data = {"environment": env, "results": {}}
        if os.path.exists(jpath):
            with open(jpath) as f:
                data["results"] = json.load(f).get("results", {})
        for case, modes in results.items():
            data["results"].setdefault(case, {}).update(modes)
        with open(jpath, "w") as f:
            json.dump(data, f, indent=1)
        with open(os.path.join(a.root, "docs/benchmarks/peers.svg"), "w") as f:
            f.write(svg(data))
        update_docs(a.root, data)
        return jpath

    saved = {}

    def save_and_remember(results, env):
        saved["path"] = save(results, env)
        saved["data"] = {"environment": env, "results": results}

    results = h.main(save_and_remember)
    if saved:
        print(markdown(saved["data"]))
        log(f"results: {saved['path']}" + ("" if a.no_docs else ", docs/benchmarks.md, docs/benchmarks/peers.svg"))
    rb_failed = [f"{c}/{m}" for c, ms in results.items() for m, e in ms.items()
                 if e["tools"].get("rbuild", {}).get("error") and not e["tools"]["rbuild"]["error"].startswith("n/a")]
    if a.smoke and rb_failed:
        sys.exit(f"rbuild failed: {rb_failed}")


if __name__ == "__main__":
    main()
