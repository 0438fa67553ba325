"""The watcher's scans of its folders: stat-only (an unchanged photo costs one ``stat``), resumable (a root's
scan saves its position in the catalog, so a restart continues where it stopped) and held back while enough
work is queued (the caller checks the queue before each step)."""

from __future__ import annotations

import logging
import os
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pic_plugin.library.catalog import Catalog
from pic_plugin.library.scan import iter_images, walk_key
from pic_plugin.library.watch.state import EVENT, SCAN, WatchState

log = logging.getLogger("pic.watch")


@dataclass
class Scan:
    root: Path
    priority: int
    persist: bool  # root scans save their position (resumable); a new folder's scan does not
    it: Iterator[Path]
    after: tuple[tuple[int, str], ...] | None = None
    count: int = 0
    last: Path | None = None
    started: float = field(default_factory=time.time)


class Scanner:
    """The scans under way, first one first. ``unchanged(path)`` says a photo needs no work (stat-only)."""

    def __init__(
        self,
        state: WatchState,
        catalog: Catalog,
        unchanged: Callable[[Path], bool],
        problem: Callable[[str, str, Path | None], None],
        chunk: int,
    ) -> None:
        self.state, self.catalog, self.unchanged, self.problem, self.chunk = state, catalog, unchanged, problem, chunk
        self.scans: deque[Scan] = deque()

    def __bool__(self) -> bool:
        return bool(self.scans)

    def walk(self, folder: Path) -> Iterator[Path]:
        def unreadable(path: Path, exc: OSError) -> None:
            self.problem("warning", f"cannot read folder: {exc.strerror or exc}", path)

        return iter_images([folder], dedupe=False, on_error=unreadable)

    def start(self, root: Path, resume: bool) -> None:
        """Scan a watched root (again), from where the last run stopped when ``resume``."""
        after = None
        if resume:
            saved = self.state.get(f"scan:{os.fsdecode(root)}") or {}
            if not saved.get("complete") and saved.get("after"):
                after = tuple((int(a), str(b)) for a, b in saved["after"])
                log.info("resuming the scan of %s after %s", os.fsdecode(root), "/".join(b for _, b in after))
        self.scans = deque(s for s in self.scans if not (s.persist and s.root == root))
        self.scans.append(Scan(root, SCAN, True, self.walk(root), after))

    def add_folder(self, folder: Path) -> None:
        """A folder that appeared (moved in): its photos may bring no events of their own. Scanned first."""
        self.scans.appendleft(Scan(folder, EVENT, False, self.walk(folder)))

    def advance(self) -> int:
        """One short step of the first scan (about 30 ms or ``chunk`` photos); how many photos it queued."""
        if not self.scans:
            return 0
        scan = self.scans[0]
        rows: list[tuple[Path, str, int]] = []
        deadline = time.perf_counter() + 0.03
        finished = False
        while True:
            path = next(scan.it, None)
            if path is None:
                finished = True
                break
            scan.count += 1
            if scan.after is not None:
                try:
                    if walk_key(path, scan.root) <= scan.after:
                        continue
                except ValueError:
                    pass
                scan.after = None
            scan.last = path
            if not self.unchanged(path):
                rows.append((path, "scan", scan.priority))
            if time.perf_counter() > deadline or len(rows) >= self.chunk:
                break
        with self.catalog.transaction():
            self.state.enqueue(rows)
            if scan.persist:
                self._save(scan, finished)
        if finished:
            self.scans.popleft()
            if scan.persist:
                log.info("scan of %s done: %d photos", os.fsdecode(scan.root), scan.count)
        return len(rows)

    def _save(self, scan: Scan, finished: bool) -> None:
        value: dict[str, Any] = {"complete": finished, "seen": scan.count, "started": scan.started}
        if finished:
            value["finished"] = time.time()
        elif scan.last is not None:
            value["after"] = [list(k) for k in walk_key(scan.last, scan.root)]
        self.state.set(f"scan:{os.fsdecode(scan.root)}", value)
