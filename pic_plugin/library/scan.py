"""Finding photos under the folders a user names, and recognising a file's content cheaply.

Walks recursively without following directory symlinks (no loops), skips hidden folders and pic's own
export folders, removes the temp files a killed sidecar write left (pic's own, by name and age), and yields
paths in a stable order so ``--shard i/n`` splits a batch the same way on every machine. ``content_key`` hashes the size and three 64 KiB samples (head, middle, tail): enough to recognise a
photo after a move or rename without reading all of a 50 MB RAW file.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from pic_plugin.editors.xmp.files import TEMP_PREFIX, is_temp_name, remove_stale_temp
from pic_plugin.imaging.decode import is_image_path

SAMPLE_BYTES = 64 * 1024
SKIP_DIRS = frozenset({"@eaDir", "__MACOSX", "#recycle", "$RECYCLE.BIN", "lost+found"})


WalkErrorHandler = Callable[[Path, OSError], None]


def iter_images(
    roots: Iterable[str | os.PathLike[str]],
    exclude: Iterable[Path] = (),
    *,
    dedupe: bool = True,
    on_error: WalkErrorHandler | None = None,
) -> Iterator[Path]:
    """Image files under ``roots`` (files named directly are taken as they are), sorted, without duplicates.

    ``dedupe=False`` keeps no set of the paths seen (memory stays flat on a 100,000-photo library; the walk never
    follows directory symlinks, so one root yields each file once). ``on_error`` hears of folders that cannot be
    read (they are skipped either way).
    """
    excluded = {os.path.realpath(p) for p in exclude}
    seen: set[str] = set()
    for root in roots:
        root = Path(root)
        if root.is_file():
            real = os.path.realpath(root)
            if real not in seen and is_image_path(root):
                seen.add(real)
                yield root
            continue
        for path in _walk(root, excluded, on_error):
            if not dedupe:
                yield path
                continue
            real = os.path.realpath(path)
            if real not in seen:
                seen.add(real)
                yield path


def walk_key(path: Path, root: Path) -> tuple[tuple[int, str], ...]:
    """A sort key that orders paths under ``root`` as ``iter_images`` yields them (a folder's files, then its
    subfolders, by name): lets a walk resume after a given path."""
    parts = path.relative_to(root).parts
    return tuple((1, p) for p in parts[:-1]) + ((0, parts[-1]),) if parts else ()


def _walk(folder: Path, excluded: set[str], on_error: WalkErrorHandler | None = None) -> Iterator[Path]:
    if os.path.realpath(folder) in excluded:
        return
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError as exc:
        if on_error is not None:
            on_error(folder, exc)
        return  # unreadable folder: nothing to do here (the caller reports roots that do not exist)
    subdirs = []
    for entry in entries:
        name = entry.name
        try:
            if entry.is_dir(follow_symlinks=False):
                if not name.startswith(".") and name not in SKIP_DIRS:
                    subdirs.append(Path(entry.path))
            elif entry.is_file() and not name.startswith("._") and is_image_path(Path(name)):
                yield Path(entry.path)
            elif name.startswith(TEMP_PREFIX) and is_temp_name(name):
                remove_stale_temp(Path(entry.path))  # a sidecar write killed half-way left it: by name and age
        except OSError:
            continue
    for sub in subdirs:
        yield from _walk(sub, excluded, on_error)


def in_shard(path: Path, shard: tuple[int, int] | None) -> bool:
    """Whether ``path`` belongs to shard ``(i, n)`` (1-based i), by a stable hash of its absolute path."""
    if shard is None:
        return True
    i, n = shard
    digest = hashlib.sha1(os.fsencode(os.path.abspath(path))).digest()
    return int.from_bytes(digest[:4], "big") % n == i - 1


def parse_shard(text: str | None) -> tuple[int, int] | None:
    if not text:
        return None
    try:
        a, b = text.split("/")
        i, n = int(a), int(b)
    except ValueError:
        raise ValueError(f"--shard takes i/n such as 2/8, not {text!r}") from None
    if not (n >= 1 and 1 <= i <= n):
        raise ValueError(f"--shard {text}: need 1 <= i <= n")
    return i, n


def file_signature(path: Path) -> tuple[int, int]:
    """(size, mtime_ns): what ``pic batch`` compares to skip unchanged files without reading them."""
    st = os.stat(path)
    if not stat.S_ISREG(st.st_mode):
        raise OSError(f"not a regular file: {path}")
    return st.st_size, st.st_mtime_ns


def content_key(path: Path, size: int | None = None) -> str:
    """A short hash of the file's size and three samples of its bytes."""
    if size is None:
        size = os.path.getsize(path)
    h = hashlib.blake2b(digest_size=16)
    h.update(size.to_bytes(8, "little"))
    with open(path, "rb") as fh:
        h.update(fh.read(SAMPLE_BYTES))
        if size > 2 * SAMPLE_BYTES:
            fh.seek(size // 2 - SAMPLE_BYTES // 2)
            h.update(fh.read(SAMPLE_BYTES))
            fh.seek(max(0, size - SAMPLE_BYTES))
            h.update(fh.read(SAMPLE_BYTES))
    return h.hexdigest()
