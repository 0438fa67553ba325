"""Sidecar files: read with a stamp, replace atomically with a concurrency check.

``read_sidecar`` / ``write_sidecar_atomic``: the write goes to a temp file in the same directory, is fsynced and
renamed over the original with ``os.replace`` (original mode kept). Just before the rename the file on disk is
compared with what was read (mtime_ns, size, SHA-256); if an editor wrote it meanwhile, ``ConcurrentChangeError``
is raised and nothing is replaced. A temp file is never left behind.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path

from pic_plugin.core.errors import ConcurrentChangeError, SidecarError
from pic_plugin.editors.xmp import tree
from pic_plugin.editors.xmp.document import XmpDocument
from pic_plugin.editors.xmp.parse import parse_xmp

# --- files: reading with a stamp, atomic replace with a concurrency check -------------------------------------


@dataclass(frozen=True)
class FileStamp:
    """What a sidecar looked like when pic read it; None fields mean "did not exist"."""

    exists: bool
    mtime_ns: int | None = None
    size: int | None = None
    sha256: str | None = None


MISSING = FileStamp(False)


def _stamp_now(path: Path) -> FileStamp:
    try:
        with open(path, "rb") as fh:
            st = os.fstat(fh.fileno())
            data = fh.read(tree.MAX_BYTES + 1)
    except FileNotFoundError:
        return MISSING
    return FileStamp(True, st.st_mtime_ns, st.st_size, hashlib.sha256(data).hexdigest())


def read_bytes(path: Path) -> tuple[bytes | None, FileStamp]:
    """The file's bytes (None if it does not exist) and the stamp to check before replacing it."""
    for _ in range(5):
        try:
            st = os.stat(path)
            if not stat.S_ISREG(st.st_mode):  # a FIFO would block, a device would never end
                raise SidecarError(f"{os.fsdecode(path)}: not a regular file")
            if st.st_size > tree.MAX_BYTES:
                raise SidecarError(f"{os.fsdecode(path)}: {st.st_size} bytes is more than the "
                                   f"{tree.MAX_BYTES >> 20} MiB pic accepts for XMP")
            with open(path, "rb") as fh:
                data = fh.read(tree.MAX_BYTES + 1)
            after = os.stat(path)
        except FileNotFoundError:
            return None, MISSING
        except OSError as exc:
            raise SidecarError(f"{os.fsdecode(path)}: cannot read ({exc.strerror or exc})") from None
        if len(data) > tree.MAX_BYTES:
            raise SidecarError(f"{os.fsdecode(path)}: more than the {tree.MAX_BYTES >> 20} MiB pic accepts for XMP")
        if (after.st_mtime_ns, after.st_size) == (st.st_mtime_ns, st.st_size) == (st.st_mtime_ns, len(data)):
            return data, FileStamp(True, st.st_mtime_ns, st.st_size, hashlib.sha256(data).hexdigest())
    raise ConcurrentChangeError(f"{os.fsdecode(path)}: keeps changing while pic reads it")


def read_sidecar(path: Path) -> tuple[XmpDocument | None, FileStamp]:
    data, stamp = read_bytes(path)
    if data is None:
        return None, stamp
    return parse_xmp(data, source=os.fsdecode(path)), stamp


def check_unchanged(path: Path, expected: FileStamp) -> None:
    """Raise ``ConcurrentChangeError`` if ``path`` is no longer what was read (or appeared / vanished)."""
    now = _stamp_now(path)
    if now.exists != expected.exists:
        what = "appeared" if now.exists else "disappeared"
        raise ConcurrentChangeError(f"{path}: {what} while pic prepared its update; retry")
    if now.exists and (now.mtime_ns, now.size, now.sha256) != (expected.mtime_ns, expected.size, expected.sha256):
        raise ConcurrentChangeError(f"{path}: changed on disk while pic prepared its update (an editor wrote it); retry")


def _real_target(path: Path) -> Path:
    """Write through a symlinked sidecar instead of replacing the link with a file."""
    return Path(os.path.realpath(path)) if path.is_symlink() else path


def write_sidecar_atomic(path: Path, data: bytes, expected: FileStamp) -> None:
    """Replace ``path`` with ``data`` atomically, only if it still is what ``expected`` describes."""
    target = _real_target(path)
    directory = target.parent
    try:
        st = os.stat(target)
        mode = stat.S_IMODE(st.st_mode)
        owner = (st.st_uid, st.st_gid)
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        mode, owner = 0o666 & ~umask, None
    fd, tmp_name = tempfile.mkstemp(prefix=".pic-", suffix=".xmp.tmp", dir=directory)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        if owner is not None and hasattr(os, "geteuid") and os.geteuid() == 0:
            with contextlib.suppress(OSError):
                os.chown(tmp, *owner)
        check_unchanged(target, expected)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    _fsync_dir(directory)


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
