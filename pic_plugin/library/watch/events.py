"""From raw filesystem events to "look at this photo again": routing, debouncing, and pic's own writes.

The watcher's observers call ``EventRouter.route`` for every event (from their own threads). A photo event names
the photo; a sidecar event names the photo it belongs to (``IMG.ext.xmp``, darktable duplicates
``IMG_NN.ext.xmp``, Lightroom/digiKam ``IMG.xmp``). Editors write a sidecar several times in a row and a copy
produces created/modified/closed events, so ``Debouncer`` lets a path through only after a quiet period; repeated
events collapse into one. ``OwnWrites`` remembers the (size, mtime) of every sidecar pic wrote, so the events of
pic's own writes are recognised and dropped instead of looping.
"""

from __future__ import annotations

import heapq
import os
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pic_plugin.imaging.decode import is_image_path

#: darktable duplicate sidecar: ``IMG_0001_01.CR2.xmp`` belongs to ``IMG_0001.CR2`` (FORMATS.md 1.1).
_DUPLICATE = re.compile(r"^(?P<base>.+)_(?P<n>\d{2,})(?P<ext>\.[^.]+)$")
#: Names that are never a finished photo or sidecar: temp files of atomic writes (ours are ``.pic-*.xmp.tmp``),
#: partial downloads, editor backups. Hidden files are skipped as well (the scan does the same).
_TRANSIENT_SUFFIXES = (".tmp", ".part", ".crdownload", ".partial", "~", ".swp", ".bak")


@dataclass(frozen=True)
class Routed:
    photo: Path
    kind: str  # "photo" (the image file itself changed) | "sidecar" (one of its sidecars changed)
    sidecar: Path | None = None


def _transient(name: str) -> bool:
    return name.startswith(".") or name.lower().endswith(_TRANSIENT_SUFFIXES)


def photos_for_sidecar(sidecar: Path, *, must_exist: bool = True) -> list[Path]:
    """The photos a sidecar belongs to (existing ones only, unless ``must_exist`` is false)."""
    name = sidecar.name
    if not name.lower().endswith(".xmp") or len(name) <= 4:
        return []
    stem = name[:-4]
    folder = sidecar.parent
    out: list[Path] = []
    if is_image_path(Path(stem)):
        out.append(folder / stem)  # IMG.ext.xmp (darktable, digiKam default)
        m = _DUPLICATE.match(stem)
        if m:
            out.append(folder / (m["base"] + m["ext"]))  # IMG_NN.ext.xmp: a darktable duplicate
    else:
        # IMG.xmp (Lightroom/crs, digiKam's alternative naming): any image IMG.<ext> in the folder.
        try:
            with os.scandir(folder) as entries:
                for entry in entries:
                    base, ext = os.path.splitext(entry.name)
                    if base == stem and ext and is_image_path(Path(entry.name)):
                        out.append(folder / entry.name)
        except OSError:
            return []
        return sorted(out)
    if must_exist:
        out = [p for p in out if p.is_file()][:1]  # a real file named like a duplicate wins over the base
    return out


class OwnWrites:
    """The (size, mtime_ns) of sidecars pic just wrote, bounded; an event whose file still matches is ours."""

    def __init__(self, capacity: int = 4096) -> None:
        self.capacity = capacity
        self._stamps: OrderedDict[str, tuple[int, int]] = OrderedDict()
        self._lock = threading.Lock()

    def remember(self, path: Path) -> None:
        try:
            st = os.stat(path)
        except OSError:
            return
        key = os.fspath(path)
        with self._lock:
            self._stamps[key] = (st.st_size, st.st_mtime_ns)
            self._stamps.move_to_end(key)
            while len(self._stamps) > self.capacity:
                self._stamps.popitem(last=False)

    def is_ours(self, path: Path) -> bool:
        key = os.fspath(path)
        with self._lock:
            stamp = self._stamps.get(key)
        if stamp is None:
            return False
        try:
            st = os.stat(path)
        except OSError:
            return False
        return (st.st_size, st.st_mtime_ns) == stamp

    def __len__(self) -> int:
        return len(self._stamps)


class EventRouter:
    """Maps one filesystem event path to the photos to look at; drops noise and pic's own writes."""

    def __init__(self, own: OwnWrites | None = None) -> None:
        self.own = own if own is not None else OwnWrites()
        self.dropped_own = 0

    def route(self, path: str | os.PathLike[str]) -> list[Routed]:
        p = Path(os.fsdecode(path))
        name = p.name
        if not name or _transient(name):
            return []
        if is_image_path(p):
            return [Routed(p, "photo")]
        if name.lower().endswith(".xmp"):
            if self.own.is_ours(p):
                self.dropped_own += 1
                return []
            return [Routed(photo, "sidecar", p) for photo in photos_for_sidecar(p)]
        return []


class Debouncer:
    """Per-key quiet period: a key is due ``quiet`` seconds after its last poke, or ``max_delay`` after its
    first (a file written non-stop is still looked at). Thread-safe; memory grows only with distinct keys."""

    def __init__(self, quiet: float = 0.5, max_delay: float = 10.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.quiet = quiet
        self.max_delay = max_delay
        self.clock = clock
        self._entries: dict[object, list] = {}  # key -> [first, last, value]
        self._heap: list[tuple[float, int, object]] = []
        self._seq = 0
        self._lock = threading.Lock()

    def poke(self, key: object, value: object = None) -> None:
        now = self.clock()
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                self._entries[key] = [now, now, value]
                self._push(now + self.quiet, key)
            else:
                entry[1] = now
                if value is not None:
                    entry[2] = _merge(entry[2], value)

    def _push(self, when: float, key: object) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (when, self._seq, key))

    def due(self, now: float | None = None, limit: int | None = None) -> list[tuple[object, object]]:
        """Keys whose quiet period is over, oldest first, removed from the debouncer."""
        now = self.clock() if now is None else now
        out: list[tuple[object, object]] = []
        with self._lock:
            while self._heap and self._heap[0][0] <= now and (limit is None or len(out) < limit):
                _, _, key = heapq.heappop(self._heap)
                entry = self._entries.get(key)
                if entry is None:
                    continue
                first, last, value = entry
                ready = min(last + self.quiet, first + self.max_delay)
                if ready > now:
                    self._push(ready, key)  # poked again meanwhile: wait for quiet
                    continue
                del self._entries[key]
                out.append((key, value))
        return out

    def drain(self) -> list[tuple[object, object]]:
        """Everything still waiting (used on shutdown, so nothing noticed is lost)."""
        with self._lock:
            items = [(k, e[2]) for k, e in self._entries.items()]
            self._entries.clear()
            self._heap.clear()
        return items

    def __len__(self) -> int:
        return len(self._entries)


def _merge(old: object, new: object) -> object:
    # A photo change outranks a sidecar change: it needs a new suggestion, not only a look at the crops. Sidecar
    # changes collect the sidecars involved, so the watcher can tell, once they settle, whether all were its own.
    if old == "photo" or new == "photo":
        return "photo"
    if isinstance(old, frozenset) and isinstance(new, frozenset):
        return old | new
    return new
