"""Atomic file output: write beside the target, then rename over it, so readers see the old or the new file
and never half of one (an editor, a browser or a BQM run may read it at any moment).

Sidecars have their own writer (``sidecars/xmp.write_sidecar_atomic``) because they also check, just before
renaming, that no editor changed the file meanwhile.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


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
