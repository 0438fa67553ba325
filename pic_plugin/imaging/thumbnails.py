"""Upright JPEG thumbnails of photos, generated once and cached on disk.

The review page and the static report show many photos; decoding a 24 MP original for every view would make a
5,000-photo folder unusable. A thumbnail is made once per (content, size) through ``decode.decode`` (JPEG DCT
scaling, RAW embedded previews, EXIF orientation applied, so it is in pic's displayed frame like every crop)
and kept under ``$XDG_CACHE_HOME/pic/thumbs/`` (``~/.cache/pic/thumbs``). Keys are the catalog's content keys,
so a renamed photo keeps its thumbnail and an edited one gets a new one. Writes are atomic (temp file +
rename), so concurrent requests for the same thumbnail never see half a file.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
from pathlib import Path

from PIL import Image

from pic_plugin.core.atomic import atomic_path
from pic_plugin.imaging.decode import decode

#: Long side of the grid thumbnails and of the large review view, in pixels.
GRID_SIZE = 384
PREVIEW_SIZE = 1600
JPEG_QUALITY = 85

_KEY_RE = re.compile(r"^[0-9a-f]{8,128}$")


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "pic" / "thumbs"


class ThumbnailCache:
    """Thumbnails under ``root`` (default: the XDG cache dir). Thread-safe; at most ``workers`` decodes at once."""

    def __init__(self, root: Path | None = None, workers: int | None = None) -> None:
        self.root = Path(root) if root is not None else default_cache_dir()
        # Decoding is CPU- and memory-heavy: a browser opening 6 connections must not start 6 full decodes.
        self._slots = threading.BoundedSemaphore(max(1, workers or min(4, os.cpu_count() or 1)))
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()

    def path_for(self, content_key: str, size: int) -> Path:
        """Where the thumbnail of ``content_key`` at ``size`` lives (the key is sanitized: it names a file)."""
        key = content_key if _KEY_RE.match(content_key) else hashlib.blake2b(content_key.encode(), digest_size=16).hexdigest()
        return self.root / key[:2] / f"{key}-{int(size)}.jpg"

    def get(self, image: Path, content_key: str, size: int = GRID_SIZE) -> Path:
        """The cached thumbnail of ``image``, made now if missing. Raises DecodeError for unreadable images."""
        target = self.path_for(content_key, size)
        if target.is_file():
            return target
        with self._lock_for(target):
            if target.is_file():  # another thread made it while we waited
                return target
            with self._slots:
                img = render(image, size)
            _save_atomic(img, target)
        return target

    def _lock_for(self, target: Path) -> threading.Lock:
        with self._locks_guard:
            return self._locks.setdefault(str(target), threading.Lock())


def render(image: Path, size: int) -> Image.Image:
    """An upright RGB image of ``image`` whose long side is at most ``size`` pixels."""
    decoded = decode(image, long_side=size)
    return Image.fromarray(decoded.pixels, "RGB")


def _save_atomic(img: Image.Image, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(target, fsync=False) as tmp:  # a cache: a lost thumbnail is simply made again
        img.save(tmp, "JPEG", quality=JPEG_QUALITY, optimize=True)
