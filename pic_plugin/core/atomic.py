"""Atomic file output: write beside the target, then rename over it, so readers see the old or the new file
and never half of one (an editor, a browser or a BQM run may read it at any moment).

Sidecars have their own writer (``editors/xmp/files.write_sidecar_atomic``): it replaces with
``exchange`` (Linux ``renameat2(RENAME_EXCHANGE)``) so that what it replaced can be inspected and swapped back,
and it never renames over a file the user made read-only.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

#: ``renameat2`` flags (linux/fs.h).
_RENAME_NOREPLACE = 1
_RENAME_EXCHANGE = 2
_AT_FDCWD = -100
_UNSUPPORTED = frozenset({errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP})


def _load_renameat2():  # type: ignore[no-untyped-def]
    if not sys.platform.startswith("linux"):
        return None
    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):  # a libc without it (glibc < 2.28, some musl builds)
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    fn.restype = ctypes.c_int
    return fn


_renameat2 = _load_renameat2()


def _rename2(src: Path, dst: Path, flags: int) -> bool:
    """``renameat2(src, dst, flags)``; False when the system or file system does not support it."""
    if _renameat2 is None:
        return False
    if _renameat2(_AT_FDCWD, os.fsencode(src), _AT_FDCWD, os.fsencode(dst), flags) == 0:
        return True
    err = ctypes.get_errno()
    if err in _UNSUPPORTED:
        return False
    raise OSError(err, os.strerror(err), os.fsdecode(src), None, os.fsdecode(dst))


def exchange(a: Path, b: Path) -> bool:
    """Swap the files at ``a`` and ``b`` in one step (both must exist); False if this system cannot."""
    return _rename2(a, b, _RENAME_EXCHANGE)


def rename_noreplace(src: Path, dst: Path) -> None:
    """Rename ``src`` to ``dst`` only if ``dst`` does not exist (``FileExistsError`` otherwise)."""
    try:
        os.link(src, dst)  # atomic "create if absent" on every POSIX file system with hard links
    except FileExistsError:
        raise
    except OSError:
        if not _rename2(src, dst, _RENAME_NOREPLACE):
            if os.path.lexists(dst):
                raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), os.fsdecode(dst)) from None
            os.replace(src, dst)  # no hard links, no renameat2: the best this file system offers
        return
    os.unlink(src)


@contextlib.contextmanager
def atomic_path(target: Path, suffix: str | None = None, fsync: bool = True) -> Iterator[Path]:
    """A temporary path in ``target``'s folder; on success it replaces ``target``, on error it is removed.

    ``suffix`` (default: the target's) lets libraries that pick a format from the name (Pillow) see the right one.
    """
    fd, tmp_name = tempfile.mkstemp(prefix=".pic-", suffix=target.suffix if suffix is None else suffix,
                                    dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        if fsync:
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def write_bytes_atomic(target: Path, data: bytes, fsync: bool = True) -> Path:
    with atomic_path(target, fsync=fsync) as tmp:
        tmp.write_bytes(data)
    return target
