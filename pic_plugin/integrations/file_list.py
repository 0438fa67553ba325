"""How editor front ends talk to pic without ever putting a file name into a shell command.

darktable 4.2's Lua can only start programs through ``sh -c`` strings (``dt.control.execute``), and digiKam's
Batch Queue Manager pastes paths into a shell line. So the editors hand pic a *file list* instead of arguments
and read the answers from files in a work folder that the front end created itself (its path is made of safe
characters, so it is the only path that ever appears in a command line):

* ``LIST``: the image paths, NUL-separated (or newline-separated when the file has no NUL at all), read as raw
  bytes so names with spaces, quotes, ``$``, backticks, newlines or non-UTF-8 bytes arrive unchanged.
* ``DIR/progress``: ``done total`` (rewritten atomically after each image) for the editor's progress bar.
* ``DIR/cancel``: created by the editor to stop the job between two images.
* ``DIR/results.tsv``: one line per image, tab-separated, simple enough for a few lines of Lua (no JSON parser
  in darktable's Lua); text fields never contain tabs or newlines. Images are named by their 1-based index in
  ``LIST``, never by path.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterable, Sequence
from pathlib import Path

from pic_plugin.core.atomic import write_bytes_atomic
from pic_plugin.core.errors import PicError

MAX_LIST_BYTES = 64 * 1024 * 1024
RESULTS_NAME = "results.tsv"
PROGRESS_NAME = "progress"
CANCEL_NAME = "cancel"


def read_file_list(path: Path) -> list[Path]:
    """Image paths from ``path`` (NUL-separated, or one per line if the file has no NUL). Empty entries are skipped."""
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_LIST_BYTES + 1)
    except OSError as exc:
        raise PicError(f"cannot read file list {path}: {exc.strerror or exc}") from exc
    if len(data) > MAX_LIST_BYTES:
        raise PicError(f"file list {path} is larger than {MAX_LIST_BYTES} bytes")
    sep = b"\0" if b"\0" in data else b"\n"
    return [Path(os.fsdecode(p)) for p in data.split(sep) if p]


def write_file_list(path: Path, paths: Iterable[os.PathLike[str] | str]) -> Path:
    """The NUL-separated list ``read_file_list`` reads (used by tests and the digiKam script)."""
    data = b"".join(os.fsencode(p) + b"\0" for p in paths)
    return write_bytes_atomic(path, data)


def tsv_field(value: object) -> str:
    """One results field: no tabs, no line breaks, no other control characters."""
    text = "" if value is None else str(value)
    return "".join(" " if (c < " " or c == "\x7f") else c for c in text)


class WorkDir:
    """The front end's work folder: progress, cancel flag and the results table."""

    def __init__(self, path: Path) -> None:
        self.path = path.absolute()
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        # The plugins' work folders live in /tmp, where another local user could plant a symlink (or a folder) of
        # that name before pic creates it: write only into a real folder that belongs to this user.
        st = os.lstat(self.path)
        if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
            raise OSError(errno.ENOTDIR, "a symlink or not a folder; pic writes only into a real folder", str(path))
        if hasattr(os, "geteuid") and st.st_uid != os.geteuid():
            raise OSError(errno.EPERM, "a folder that belongs to another user", str(path))
        self._rows: list[str] = []

    def file(self, name: str) -> Path:
        return self.path / name

    def progress(self, done: int, total: int) -> None:
        write_bytes_atomic(self.file(PROGRESS_NAME), f"{done} {total}\n".encode())

    def cancelled(self) -> bool:
        return self.file(CANCEL_NAME).exists()

    def add_row(self, fields: Sequence[object]) -> None:
        self._rows.append("\t".join(tsv_field(f) for f in fields))
        # rewritten after every image, so a crash or a cancel still leaves the finished ones readable
        write_bytes_atomic(self.file(RESULTS_NAME), ("\n".join(self._rows) + "\n").encode("utf-8", "surrogateescape"))

    def finish(self) -> None:
        if not self._rows:
            write_bytes_atomic(self.file(RESULTS_NAME), b"")
