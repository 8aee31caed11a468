"""Regenerates the hostile archives of this context (committed; run by hand)."""
import io
import tarfile


def add(tar, name, data=b"", link=None):
    info = tarfile.TarInfo(name)
    info.mtime = 1700000000
    if link is not None:
        info.type = tarfile.SYMTYPE
        info.linkname = link
        tar.addfile(info)
    else:
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))


with tarfile.open("climb.tar", "w", format=tarfile.GNU_FORMAT) as t:
    add(t, "../../../../tmp/rbuild-escaped", b"escaped\n")
with tarfile.open("contained.tar", "w", format=tarfile.GNU_FORMAT) as t:
    add(t, "etc", link="/")
    add(t, "etc/contained.txt", b"stayed inside\n")
