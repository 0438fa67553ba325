"""Sidecar files: read with a stamp, replace atomically with a concurrency check.

``read_sidecar`` / ``write_sidecar_atomic``: the write goes to a temp file in the same directory, is fsynced and
swapped with the original (original mode kept). Just before, the file on disk is compared with what was read
(mtime_ns, size, SHA-256); the swap itself is verified (what came out must be what was read, otherwise it is
swapped back), so an editor's write landing in between is never lost: ``ConcurrentChangeError``, retry. A
read-only sidecar is never replaced. A temp file is left behind only by a kill, and removed later.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import signal
import stat
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from pic_plugin.core.atomic import exchange, rename_noreplace
from pic_plugin.core.errors import ConcurrentChangeError, ReadOnlySidecarError, SidecarError
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
    ino: int | None = None


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
            return data, FileStamp(True, st.st_mtime_ns, st.st_size, hashlib.sha256(data).hexdigest(), st.st_ino)
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
    """Write through a symlinked sidecar instead of replacing the link with a file, but only to a file in the
    link's own folder: a link planted to a file elsewhere (another user's, one outside the library) is refused."""
    if not path.is_symlink():
        return path
    real = Path(os.path.realpath(path))
    if os.path.realpath(path.parent) != str(real.parent):
        raise SidecarError(f"{os.fsdecode(path)}: a symlink to {os.fsdecode(real)}, outside the photo's folder; "
                           "not written")
    return real


#: pic's temp files: ``.pic-XXXXXXXX.xmp.tmp`` beside the sidecar (hidden; gone after each write, even a failed
#: one). Only a kill -9 between creating and renaming leaves one: ``remove_stale_temp`` deletes it later.
TEMP_PREFIX = ".pic-"
TEMP_SUFFIX = ".xmp.tmp"
#: A temp file older than this is debris (a live write holds its temp file for milliseconds).
STALE_TEMP_SECONDS = 600.0


def is_temp_name(name: str | bytes) -> bool:
    name = os.fsdecode(name)
    return name.startswith(TEMP_PREFIX) and name.endswith(TEMP_SUFFIX) and len(name) > len(TEMP_PREFIX + TEMP_SUFFIX)


def remove_stale_temp(path: Path, max_age: float = STALE_TEMP_SECONDS) -> bool:
    """Delete ``path`` if it is one of pic's own temp files (by name, owner and type) older than ``max_age``."""
    if not is_temp_name(path.name):
        return False
    try:
        st = os.lstat(path)
        if not stat.S_ISREG(st.st_mode) or (hasattr(os, "geteuid") and st.st_uid != os.geteuid()):
            return False
        if time.time() - st.st_mtime < max_age:
            return False
        os.unlink(path)
    except OSError:
        return False
    return True


def is_read_only(st: os.stat_result, path: Path) -> bool:
    """No write bit at all (a user's ``chmod 444``, which root would override), or not writable by us."""
    return not st.st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH) or not os.access(path, os.W_OK)


def _content_is(path: Path, sha256: str | None, size: int | None) -> bool:
    try:
        with open(path, "rb") as fh:
            data = fh.read(tree.MAX_BYTES + 1)
    except OSError:
        return False
    return len(data) == size and hashlib.sha256(data).hexdigest() == sha256


def write_sidecar_atomic(path: Path, data: bytes, expected: FileStamp) -> None:
    """Replace ``path`` with ``data`` atomically, only if it still is what ``expected`` describes.

    A read-only sidecar raises ``ReadOnlySidecarError`` and is never renamed over. On Linux the replace is an
    exchange (``renameat2(RENAME_EXCHANGE)``), so it is verified: the file that came out must be the version pic
    read; if an editor wrote in between, its version is swapped back and ``ConcurrentChangeError`` is raised.
    Elsewhere (or on a file system without the exchange) the check just before ``os.replace`` is all there is.
    """
    target = _real_target(path)
    directory = target.parent
    try:
        st = os.stat(target)
    except FileNotFoundError:
        st = None
    if st is not None:
        if is_read_only(st, target):
            raise ReadOnlySidecarError(f"{os.fsdecode(path)}: read-only, not written")
        mode = stat.S_IMODE(st.st_mode)
        owner: tuple[int, int] | None = (st.st_uid, st.st_gid)
    else:
        umask = os.umask(0)
        os.umask(umask)
        mode, owner = 0o666 & ~umask, None
    fd, tmp_name = tempfile.mkstemp(prefix=TEMP_PREFIX, suffix=TEMP_SUFFIX, dir=directory)
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
        check_unchanged(target, expected)  # the cheap early answer; the exchange below is the real guard
        if not expected.exists:
            try:
                rename_noreplace(tmp, target)
            except FileExistsError:
                raise ConcurrentChangeError(f"{path}: appeared while pic prepared its update; retry") from None
        else:
            _replace_verified(tmp, target, expected, data)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    _fsync_dir(directory)


class _Lease:
    """A lease (``fcntl(F_SETLEASE)``, Linux) on the file about to be replaced, held for the swap.

    An editor that opens the file for writing in the swap window writes nothing yet, so no stat or hash can see
    it; but its ``open`` breaks the lease, and the kernel holds that ``open`` until pic lets go (at most
    ``/proc/sys/fs/lease-break-time``; pic lets go within milliseconds). So pic can tell, and put the file back
    where the editor's coming write belongs. A *read* lease (``F_RDLCK``) is the kind broken by exactly that (an
    open for writing, or a truncate); a write lease would be broken by every reader (a thumbnailer, the watcher)
    as well. A file already open for writing elsewhere (EAGAIN) is an editor mid-save: ``busy``, and pic does not
    swap (an in-place write could land in the file pic swaps out, after the verification looked). Where the
    kernel refuses for other reasons (not our file, a file system without leases: EACCES / EINVAL ...), there is
    no lease and the verification after the swap is all there is."""

    def __init__(self, path: Path) -> None:
        self.fd: int | None = None
        self.busy = False
        if not sys.platform.startswith("linux") or not hasattr(fcntl, "F_SETLEASE"):
            return
        # The break is signalled; SIGIO (the default) would end the process, SIGURG is ignored unless handled.
        if signal.getsignal(signal.SIGURG) not in (signal.SIG_DFL, signal.SIG_IGN, None):
            return
        try:
            # O_NONBLOCK: another process's lease on it makes this open fail at once instead of waiting for it
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
        except OSError:
            return
        try:
            fcntl.fcntl(fd, fcntl.F_SETSIG, signal.SIGURG)
            fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_RDLCK)
        except OSError as exc:
            os.close(fd)
            self.busy = exc.errno == errno.EAGAIN
            if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EINVAL, errno.EBUSY, errno.ENOLCK, errno.EPERM):
                raise
            return
        self.fd = fd
        self.ino = os.fstat(fd).st_ino

    def broken(self) -> bool:
        """Someone opened the leased file for writing (or truncated it) since the lease was taken."""
        if self.fd is None:
            return False
        return fcntl.fcntl(self.fd, fcntl.F_GETLEASE) != fcntl.F_RDLCK

    def release(self) -> None:
        """Let go: a waiting ``open`` proceeds."""
        if self.fd is not None:
            with contextlib.suppress(OSError):
                fcntl.fcntl(self.fd, fcntl.F_SETLEASE, fcntl.F_UNLCK)
            os.close(self.fd)
            self.fd = None


def _replace_verified(tmp: Path, target: Path, expected: FileStamp, data: bytes) -> None:
    ours = os.stat(tmp).st_ino
    lease = _Lease(target)
    try:
        if lease.fd is not None and expected.ino not in (None, lease.ino):
            lease.release()  # another file than the one pic read: the checks below answer
        if lease.broken() or lease.busy:  # an editor has it open for writing: pic has swapped nothing yet
            raise ConcurrentChangeError(f"{target}: open for writing by another program (an editor saving it) as "
                                        "pic prepared its update; retry")
        if not exchange(tmp, target):
            os.replace(tmp, target)  # no exchange here: the check just before is the only guard
            return
        # ``tmp`` now holds what was at ``target``. Until it is judged, pic's file stands where an editor's newer
        # save may belong, so the first look is a stat (microseconds): any other inode, size or time is put back.
        st = os.stat(tmp)
        same = (st.st_size, st.st_mtime_ns) == (expected.size, expected.mtime_ns) and expected.ino in (None, st.st_ino)
        # An editor holding the file that came out open for writing would write into a deleted file: keep it.
        opened = lease.fd is not None and lease.ino == st.st_ino and lease.broken()
        if same and not opened and _content_is(tmp, expected.sha256, expected.size):
            os.unlink(tmp)
            lease.release()
            try:
                replaced = os.stat(target).st_ino != ours
            except FileNotFoundError:
                replaced = True
            if replaced:  # an editor renamed its file over pic's right after: its version stands, pic's is gone
                raise ConcurrentChangeError(f"{target}: an editor replaced it as pic wrote; retry")
            return
        _put_back(tmp, target, ours, data)
    finally:
        lease.release()  # after the put-back: the editor's write then lands in the file back at ``target``
    if opened:
        raise ConcurrentChangeError(f"{target}: an editor opened it for writing as pic replaced it; its file was "
                                    "put back; retry")
    raise ConcurrentChangeError(f"{target}: changed on disk as pic replaced it (an editor wrote it); its version "
                                "was put back; retry")


def _put_back(tmp: Path, target: Path, ours: int, data: bytes) -> None:
    """An editor's version came out of ``target``: swap it back. Should another editor write land on ``target``
    meanwhile, the newest version ends up at ``target``; only pic's own bytes, or an editor version the editor
    itself superseded, are deleted."""
    superseded = {os.stat(tmp).st_ino}  # what came out was at target before anything that replaced pic's file
    for _ in range(8):
        exchange(tmp, target)
        st_tmp, st_target = os.stat(tmp), os.stat(target)
        if st_tmp.st_ino == ours and _content_is(tmp, hashlib.sha256(data).hexdigest(), len(data)):
            os.unlink(tmp)  # pic's version, untouched: withdrawn
            return
        if st_tmp.st_ino in superseded or st_tmp.st_mtime_ns < st_target.st_mtime_ns:
            os.unlink(tmp)
            return
        superseded.add(st_target.st_ino)  # the newer version is at tmp: swap once more
    keep = target.with_name(f"{target.name}.pic-kept-{os.getpid()}")
    os.replace(tmp, keep)  # never delete what may be an editor's latest: leave it for the user
    raise ConcurrentChangeError(f"{target}: kept changing as pic put an editor's version back; "
                                f"one version kept as {os.fsdecode(keep)}")


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
