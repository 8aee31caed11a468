"""Writes the hostile-archive corpus (issue 16) into OUT, aimed at the canary directory CANARY.

Usage: make-corpus.py OUT CANARY. Every archive tries to write, delete, or link outside the
build root, or is malformed; the test feeds each through FROM and ADD and checks CANARY.
"""
import gzip
import io
import sys
import tarfile

OUT, CANARY = sys.argv[1], sys.argv[2].rstrip("/")
UP = "../" * 12 + CANARY.lstrip("/")
REG, DIR, SYM, LNK = tarfile.REGTYPE, tarfile.DIRTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE


def entry(name, kind=REG, data=b"", link="", mode=0o644, pax=None, dev=(0, 0)):
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mode, info.mtime = kind, link, mode, 1700000000
    info.size = len(data) if kind == REG else 0
    info.devmajor, info.devminor = dev
    if pax:
        info.pax_headers = pax
    return info, data


def tar_bytes(entries, fmt=tarfile.GNU_FORMAT):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as t:
        for info, data in entries:
            t.addfile(info, io.BytesIO(data) if info.type == REG else None)
    return buf.getvalue()


def f(name, data=b"pwned\n", **kw):
    return entry(name, REG, data, **kw)


def sparse(realsize, layout):
    """PAX 0.1 sparse file: map of (offset, size) pairs, realsize claimed."""
    stored = sum(n for _, n in layout)
    pax = {
        "GNU.sparse.major": "0",
        "GNU.sparse.minor": "1",
        "GNU.sparse.name": "sparse",
        "GNU.sparse.size": str(realsize),
        "GNU.sparse.numblocks": str(len(layout)),
        "GNU.sparse.map": ",".join(f"{o},{n}" for o, n in layout),
    }
    return [f("GNUSparseFile.0/sparse", b"s" * stored, pax=pax)]


CASES = {
    "dotdot-file": [f(UP + "/dotdot")],
    "dotdot-in-middle": [entry("a/", DIR), f("a/../../" + UP + "/middle")],
    "absolute-file": [f(CANARY + "/absolute")],
    "absolute-dir-then-file": [entry(CANARY + "/absdir/", DIR), f(CANARY + "/absdir/x")],
    "symlink-abs-write-through": [entry("esc", SYM, link=CANARY), f("esc/through")],
    "symlink-rel-write-through": [entry("esc", SYM, link=UP), f("esc/through-rel")],
    "symlink-chain-write-through": [
        entry("a", SYM, link="b"), entry("b", SYM, link=UP), f("a/chain")],
    "symlink-then-dir-through": [entry("esc", SYM, link=CANARY), entry("esc/made/", DIR)],
    "symlink-overwrite-target": [entry("keep", SYM, link=CANARY + "/keep"), f("keep", b"overwritten\n")],
    "hardlink-abs-target": [entry("hl", LNK, link=CANARY + "/keep")],
    "hardlink-dotdot-target": [entry("hl", LNK, link=UP + "/keep")],
    "hardlink-via-symlink": [entry("esc", SYM, link=CANARY), entry("hl", LNK, link="esc/keep"),
                             f("hl", b"through hardlink\n")],
    "whiteout-dotdot": [entry("x/", DIR), f("x/.wh..."), f(UP + "/.wh.keep", b"")],
    "whiteout-absolute": [f(CANARY + "/.wh.keep", b"")],
    "whiteout-through-symlink": [entry("esc", SYM, link=CANARY), f("esc/.wh.keep", b"")],
    "opaque-at-root": [f(".wh..wh..opq", b""), f("after-opaque")],
    "opaque-through-symlink": [entry("esc", SYM, link=CANARY), f("esc/.wh..wh..opq", b"")],
    "opaque-absolute": [f(CANARY + "/.wh..wh..opq", b"")],
    "device-nodes": [entry("null", tarfile.CHRTYPE, dev=(1, 3), mode=0o666),
                     entry("sda", tarfile.BLKTYPE, dev=(8, 0), mode=0o660)],
    "device-through-symlink": [entry("esc", SYM, link=CANARY),
                               entry("esc/null", tarfile.CHRTYPE, dev=(1, 3))],
    "setuid-setgid": [f("suid", b"#!/bin/sh\n", mode=0o6755), entry("sticky/", DIR, mode=0o1777)],
    "fifo": [entry("pipe", tarfile.FIFOTYPE), entry("esc", SYM, link=CANARY),
             entry("esc/pipe", tarfile.FIFOTYPE)],
    "long-names": [f("d" * 100 + "/" + "e" * 200 + "/" + "f" * 250)],
    "pax-path-override": [f("harmless", pax={"path": UP + "/pax"})],
    "pax-linkpath-override": [entry("esc", SYM, link="ok", pax={"linkpath": CANARY}), f("esc/paxlink")],
    "duplicates-file-dir-symlink": [f("dup"), entry("dup/", DIR), entry("dup", SYM, link=CANARY),
                                    f("dup/dup")],
    "duplicates-dir-to-symlink": [entry("d/", DIR), f("d/x"), entry("d", SYM, link=CANARY), f("d/y")],
    "sparse-map-beyond-size": sparse(16, [(0, 4), (1 << 40, 4)]),
    "sparse-overlapping": sparse(64, [(32, 8), (0, 40)]),
    "sparse-huge-claimed": sparse(1 << 50, [(0, 4)]),
}


def main():
    names = []
    for name, entries in CASES.items():
        fmt = tarfile.PAX_FORMAT if any(i.pax_headers for i, _ in entries) else tarfile.GNU_FORMAT
        with open(f"{OUT}/{name}.tar", "wb") as out:
            out.write(tar_bytes(entries, fmt))
        names.append(f"{name}.tar")
    good = tar_bytes([f("file", b"x" * 4096), f("second", b"y" * 4096)])
    with open(f"{OUT}/truncated.tar", "wb") as out:
        out.write(good[:700])
    tampered = bytearray(gzip.compress(good, mtime=0))
    tampered[len(tampered) // 2] ^= 0xFF
    with open(f"{OUT}/tampered.tar.gz", "wb") as out:
        out.write(tampered)
    bomb = io.BytesIO()
    with gzip.GzipFile(fileobj=bomb, mode="wb", mtime=0) as gz:
        header = tarfile.TarInfo("zeros")
        header.size = 64 << 20
        gz.write(header.tobuf(tarfile.GNU_FORMAT))
        for _ in range(64):
            gz.write(bytes(1 << 20))
        gz.write(bytes(1024))
    with open(f"{OUT}/gzip-bomb.tar.gz", "wb") as out:
        out.write(bomb.getvalue())
    names += ["truncated.tar", "tampered.tar.gz", "gzip-bomb.tar.gz"]
    print("\n".join(names))


main()
