"""Running a real ``Watcher`` (real observers, real files) in a thread for a test, with bounded waits."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from PIL import Image

from pic_plugin.core.geometry import Box
from pic_plugin.library.catalog import Catalog
from pic_plugin.library.watch.daemon import Watcher, WatchOptions, WatchResult


def wait_for(cond: Callable[[], Any], timeout: float = 20.0, step: float = 0.02, what: str = "condition") -> float:
    """Poll ``cond`` until true; returns the seconds it took. Fails the test after ``timeout``."""
    t0 = time.monotonic()
    while True:
        if cond():
            return time.monotonic() - t0
        if time.monotonic() - t0 > timeout:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(step)


class Running:
    def __init__(self, watcher: Watcher, catalog: Catalog) -> None:
        self.watcher = watcher
        self.catalog = catalog
        self.results: list[tuple[float, WatchResult]] = []
        self._lock = threading.Lock()

    def record(self, result: WatchResult) -> None:
        with self._lock:
            self.results.append((time.monotonic(), result))

    def by_status(self, status: str) -> list[WatchResult]:
        with self._lock:
            return [r for _, r in self.results if r.status == status]

    def done_names(self) -> list[str]:
        return [r.path.name for r in self.by_status("done")]

    def first_done_at(self, name: str) -> float | None:
        with self._lock:
            return next((t for t, r in self.results if r.status == "done" and r.path.name == name), None)

    def wait_idle(self, timeout: float = 30.0) -> None:
        wait_for(lambda: self.watcher.idle(), timeout, what="the watcher to be idle")


def fast_options(**overrides: Any) -> WatchOptions:
    base: dict[str, Any] = dict(
        user="me", quiet=0.2, max_delay=3.0, finetune_delay=0.2, finetune_interval=0.0, supervise_interval=0.2,
        poll_interval=0.3, retry_delay=0.2, heartbeat=0.5, jobs=2,
    )
    base.update(overrides)
    return WatchOptions(**base)


@contextmanager
def running_watcher(roots: list[Path], catalog_path: Path, options: WatchOptions | None = None,
                    **kwargs: Any) -> Iterator[Running]:
    catalog = Catalog(catalog_path)
    holder: dict[str, Running] = {}
    watcher = Watcher(roots, options or fast_options(), catalog, on_result=lambda r: holder["r"].record(r), **kwargs)
    run = holder["r"] = Running(watcher, catalog)
    ready = threading.Event()
    errors: list[BaseException] = []

    def target() -> None:
        try:
            watcher.run(ready=ready.set)
        except BaseException as exc:  # surfaced in the test thread
            errors.append(exc)
            ready.set()

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    assert ready.wait(30), "watcher did not start"
    if errors:
        raise errors[0]
    try:
        yield run
    finally:
        watcher.stop()
        thread.join(60)
        catalog.close()
        assert not thread.is_alive(), "watcher did not stop"
        if errors:
            raise errors[0]


def darktable_edit(image: Path, crop: Box, orientation: int = 1) -> None:
    """What darktable does when the user crops in darkroom: append an enabled ``crop`` history entry and rewrite
    the sidecar (here with pic's own darktable writer, as a user entry: not pic's, forced over any other)."""
    from pic_plugin.editors import darktable as dt
    from pic_plugin.editors import xmp

    path = dt.sidecar_path(image)
    data, stamp = xmp.read_bytes(path)
    doc = xmp.parse_xmp(data) if data is not None else xmp.XmpDocument.new()
    with Image.open(image) as im:
        size = im.size
    dt.write_crop(doc, crop, orientation, mode="apply", force=True, own=None, size=size, image_name=image.name)
    xmp.write_sidecar_atomic(path, doc.to_bytes(), stamp)
