"""``pic batch``: suggestions for every photo under some folders, written where the editors see them.

The main process enumerates files, skips those whose size/mtime (and sidecars) are unchanged since the last
run — no image work at all on an unchanged library — and hands the rest to worker processes (one per core by
default). Workers decode, extract features (or reuse the catalog's cached ones), score and optionally export a
cropped copy. The main process is the catalog's single writer and writes the sidecars, so files are never
written concurrently. One bad file gives one error line and never stops the batch.
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from concurrent import futures
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pic_plugin.analysis import extract
from pic_plugin.library.catalog import Catalog
from pic_plugin.library.options import BatchOptions
from pic_plugin.library.pipeline import (
    FAST_SUFFIX,
    UNCROPPED_AREA,
    FileResult,
    PhotoJob,
    PhotoOutput,
    finish,
    process_file,
)
from pic_plugin.library.scan import file_signature, in_shard, iter_images
from pic_plugin.model import scorers

_PR_SET_PDEATHSIG = 1  # linux/prctl.h

#: Work items in flight per worker: enough to keep cores busy, small enough that memory stays flat.
IN_FLIGHT_PER_JOB = 4


@dataclass
class BatchSummary:
    counts: Counter[str] = field(default_factory=Counter)  # per FileResult.status
    kept_user_crops: int = 0  # photos whose own (user-made) crop was left alone
    uncropped: int = 0  # photos done whose best suggestion is (almost) the whole frame
    seconds: float = 0.0
    failed: list[tuple[Path, str]] = field(default_factory=list)
    darktable_library: Counter[str] = field(default_factory=Counter)  # library route state per photo
    library_problem: str | None = None  # darktable's library could not be read
    found: int = 0  # photos under the roots (after sharding)
    interrupted: bool = False  # stopped by ``stop`` (Ctrl-C) before every photo was looked at

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def line(self) -> str:
        parts = [f"{self.counts[k]} {k}" for k in ("done", "unchanged", "planned", "error") if self.counts[k]]
        if self.kept_user_crops:
            parts.append(f"{self.kept_user_crops} with your own crop kept")
        if self.uncropped:
            parts.append(f"{self.uncropped} best left uncropped")
        if self.interrupted:
            return (f"interrupted after {self.total} of {self.found} photos: " + (", ".join(parts) or "none done")
                    + f" in {self.seconds:.1f}s; run it again for the rest (photos done are skipped)")
        return f"{self.total} photos: " + (", ".join(parts) or "nothing to do") + f" in {self.seconds:.1f}s"

    def darktable_line(self) -> str | None:
        """What reached darktable's library and what waits for the plugin (photos darktable has imported)."""
        if self.library_problem:
            return f"darktable library not read ({self.library_problem}): imported photos got sidecar entries only"
        c = self.darktable_library
        if not c:
            return None
        parts = []
        if c["in-darktable"]:
            parts.append(f"{c['in-darktable']} show pic's crop in darktable")
        if c["pending"]:
            parts.append(f"{c['pending']} wait for the darktable plugin (pic.lua applies them when darktable starts, "
                         "or press 'apply pending')")
        if c["kept-user-crop"]:
            parts.append(f"{c['kept-user-crop']} keep your darktable crop")
        if c["unchanged"]:
            parts.append(f"{c['unchanged']} need no crop")
        if c["suggested"]:
            parts.append(f"{c['suggested']} suggested only")
        line = f"in darktable's library: {sum(v for k, v in c.items() if k != 'removed')} photos: " + ", ".join(parts)
        if c["removed"]:
            removed = f"{c['removed']} sidecars lost pic's crop in darktable (rewritten or removed there): not written again"
            return removed if len(c) == 1 else f"{line}; {removed}"
        return line

    def style_hint(self, options: BatchOptions) -> str | None:
        """What to do when pic, knowing nothing of the user, suggested leaving most photos as they are: the generic
        prior's safest guess for an unknown photographer (README "What to expect before pic knows you"), which
        reads like pic did nothing."""
        done = self.counts["done"]
        if options.user or not options.ratio.is_free or self.uncropped < 2 or 2 * self.uncropped < done:
            return None
        return (
            f"pic suggested leaving {self.uncropped} of {done} photos uncropped: it does not know your style yet. "
            "Ask for a ratio (--ratio 4:5), describe your framing (pic profile --user me --set ratio=4:5 "
            "--set framing=tight, then --user me), or teach it your own crops "
            "(pic learn --user me --from-library ~/Pictures)."
        )


# --- worker side -----------------------------------------------------------------------------------------------


_STATE: dict[str, Any] = {}


def _die_with_parent(parent: int) -> None:
    """A worker must not outlive a ``kill -9`` of ``pic batch``: the kernel kills it when its parent dies (Linux
    ``PR_SET_PDEATHSIG``), and a watchdog thread does the same wherever that is missing."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)  # re-parented: the batch is gone, nobody will read our results

    if os.getppid() != parent:
        os._exit(1)  # the parent died before the death signal was armed
    threading.Thread(target=watch, name="pic-parent-watch", daemon=True).start()


def _init_worker(catalog_path: str, options: BatchOptions, single_threaded: bool, parent: int | None = None) -> None:
    if parent is not None:
        _die_with_parent(parent)
    if parent is not None:
        # Ctrl-C reaches the whole process group: a worker must not die of it with a photo half done. The parent
        # stops handing out photos and shuts the pool down once the photos in hand are finished.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    if single_threaded:
        extract.set_single_threaded()
    catalog = Catalog(catalog_path, readonly=True) if catalog_path != ":memory:" else None
    _STATE.update(
        catalog=catalog,
        options=options,
        scorer=scorers.load(options.scorer, catalog=catalog, user=options.user),
    )


def _close_worker_state() -> None:
    # Closed now, not whenever it is collected: a read-only connection that outlives the writer's close keeps
    # catalog.db-wal and -shm on disk (only the last connection to close removes them, and it must be a writer).
    catalog = _STATE.get("catalog")
    _STATE.clear()
    if catalog is not None:
        catalog.close()


def _process(job: PhotoJob) -> PhotoOutput:
    return process_file(job, _STATE["options"], _STATE["scorer"], _STATE["catalog"])


# --- main side -------------------------------------------------------------------------------------------------


def collect(roots: Iterable[Path], options: BatchOptions) -> list[tuple[Path, Path | None]]:
    """(image, the root it was found under) for every image in the batch, after sharding."""
    exclude = [options.export_dir] if options.export_dir is not None else []
    out = []
    for root in roots:
        root_dir = root if root.is_dir() else None
        for path in iter_images([root], exclude=exclude):
            if in_shard(path, options.shard):
                out.append((path, root_dir))
    return out


def _unchanged(catalog: Catalog, path: Path, signature: tuple[int, int], options: BatchOptions,
               model: str) -> bool | str:
    """True when nothing changed since the last run; the last run's error when that is all there is to say (a
    sidecar pic cannot write into, still as it was: writing it again would only rewrite pic's record)."""
    record = catalog.image(path)
    if record is None or record.error or (record.file_size, record.mtime_ns) != signature:
        return False
    previous = catalog.suggestion(record.id, options.user, options.ratio.name)
    # a --fast run keeps full suggestions; a full run redoes --fast ones (they were made without the detector)
    models = {model, model + FAST_SUFFIX} if options.fast else {model}
    if previous is None or previous["model"] not in models or previous["top_k"] != options.top_k:
        return False
    written = previous["written"] or {}
    if written.get("error") and not (written.get("lasting") and options.write):
        return False  # a failure that may pass (a concurrent edit, permissions): try again
    if options.write:
        if sorted(written.get("targets", [])) != sorted(options.targets) or written.get("mode") != options.mode:
            return False
        for file, sig in written.get("files", {}).items():
            try:
                st = os.stat(file)
            except OSError:
                return False
            if [st.st_size, st.st_mtime_ns] != sig:
                return False  # a sidecar changed (the user edited, or it was deleted): look again
    if options.export_dir is not None:
        exported = written.get("exported")
        if not exported or not os.path.exists(exported):
            return False
    return str(written["error"]) if written.get("error") else True


def run_batch(
    roots: Iterable[Path],
    options: BatchOptions,
    catalog: Catalog,
    on_start: Callable[[int], None] | None = None,
    on_result: Callable[[FileResult], None] | None = None,
    stop: threading.Event | None = None,
) -> BatchSummary:
    """``stop``: once set (Ctrl-C), no new photo is started; the photos in hand are finished and written, and the
    summary says it was interrupted."""
    t0 = time.perf_counter()
    summary = BatchSummary()
    stop = stop if stop is not None else threading.Event()
    items = collect(roots, options)
    summary.found = len(items)
    if on_start:
        on_start(len(items))
    # The workers build the scorer; here only its version is needed (cheap: no torch for an unchanged folder).
    model_version = scorers.version(options.scorer, catalog=catalog, user=options.user)

    route = None
    if options.darktable_library is not None and options.darktable_library.exists() and not options.dry_run:
        from pic_plugin.core.errors import PicError
        from pic_plugin.library.darktable_route import LibraryRoute

        try:
            route = LibraryRoute.open(options.darktable_library)
        except PicError as exc:
            summary.library_problem = str(exc)

    def emit(result: FileResult) -> None:
        summary.counts[result.status] += 1
        state = result.written.get("darktable_library")
        if state:
            summary.darktable_library[state] += 1
        elif result.written.get("darktable") == "removed":
            summary.darktable_library["removed"] += 1
        if "kept-user-crop" in (result.written.get("darktable"), result.written.get("crs")):
            summary.kept_user_crops += 1
        if result.status == "error":
            summary.failed.append((result.path, result.error or "error"))
        if result.status == "done" and result.suggestion is not None and result.suggestion.crop.area >= UNCROPPED_AREA:
            summary.uncropped += 1
        if on_result:
            on_result(result)

    jobs: list[PhotoJob] = []
    for path, root in items:
        if stop.is_set():
            break
        try:
            signature = file_signature(path)
        except OSError as exc:
            emit(FileResult(path, "error", error=f"cannot read file: {exc.strerror or exc}"))
            continue
        # --force must reach the photos whose user crop an earlier run kept, so it revisits like --refresh.
        same = False if options.refresh or options.force else _unchanged(catalog, path, signature, options,
                                                                            model_version)
        if isinstance(same, str):  # reported again, not written again (it would fail the same way)
            emit(FileResult(path, "error", error=f"{same}; unchanged since the last run"))
            continue
        if same:
            emit(FileResult(path, "unchanged"))
            continue
        if options.dry_run:
            emit(FileResult(path, "planned"))
            continue
        jobs.append(PhotoJob(path, signature, root))

    writer = route.writer(catalog) if route is not None else None
    try:
        for output in _run_jobs(jobs, options, catalog, stop):
            emit(finish(output, options, catalog, writer))
    finally:
        if route is not None:
            route.close()
    summary.interrupted = stop.is_set() and summary.total < summary.found
    summary.seconds = time.perf_counter() - t0
    return summary


def _run_jobs(
    jobs: list[PhotoJob], options: BatchOptions, catalog: Catalog, stop: threading.Event
) -> Iterator[PhotoOutput]:
    """Each job's output, in completion order; after ``stop`` only those already being worked on."""
    if not jobs:
        return
    catalog_path = str(catalog.path)
    workers = max(1, min(options.jobs, len(jobs)))
    if workers == 1:
        _init_worker(catalog_path, options, single_threaded=False)
        try:
            for job in jobs:
                if stop.is_set():
                    break
                yield _process(job)
        finally:
            _close_worker_state()
        return
    ctx = multiprocessing.get_context("spawn")  # no fork after torch/OpenMP have started threads
    with futures.ProcessPoolExecutor(
        max_workers=workers, mp_context=ctx, initializer=_init_worker,
        initargs=(catalog_path, options, True, os.getpid())
    ) as pool:
        pending: set[futures.Future[PhotoOutput]] = set()
        queue = iter(jobs)
        for job in queue:
            pending.add(pool.submit(_process, job))
            if len(pending) >= workers * IN_FLIGHT_PER_JOB:
                break
        while pending:
            done, pending = futures.wait(pending, return_when=futures.FIRST_COMPLETED)
            if stop.is_set():
                # photos not started yet are dropped; those a worker already holds are finished and written
                pending = {fut for fut in pending if not fut.cancel()}
            for fut in done:
                try:
                    output = fut.result()
                except futures.CancelledError:
                    continue
                except BrokenProcessPool:
                    if stop.is_set():
                        return  # a worker hit by Ctrl-C while it started up: its photo was not begun
                    raise
                yield output
                nxt = None if stop.is_set() else next(queue, None)
                if nxt is not None:
                    pending.add(pool.submit(_process, nxt))


