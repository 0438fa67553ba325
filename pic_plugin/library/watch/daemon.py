"""``pic watch``: the background daemon that suggests crops for new photos and learns from the user's own crops.

Data flow (one process; DESIGN.md sections 2 and 7)::

    observers (inotify, or polling)  ->  EventRouter  ->  Debouncer  ->  catalog queue (watch_queue)
    initial / resumed scan (stat-only skip, back-pressured)  ------------^        |
                                                                                   v
    main loop: claim -> learn from the photo's edits (harvest readers -> Catalog.add_user_crop)
               -> unchanged? done : analysis thread pool (batch.process_file) -> batch._finish (catalog + sidecars)
    new user crops -> fine-tune (rate-limited, batched, own thread) -> reload scorer -> refresh not-yet-edited
    photos from cached features (no decode)

The main thread is the catalog's only writer here and writes every sidecar, so pic never writes one file twice
at once. Suggestions are suggest-only by default (a disabled darktable crop entry + pic's record), a photo whose
sidecar carries a crop the user made is never written to, a sidecar someone else touched in the last quiet
period is left alone until it settles, and pic's own writes are recognised (``OwnWrites`` and the sidecar stamps
the catalog records) so they never trigger work again. Every queued path stays in the catalog until its results
are committed: a restart, also after ``kill -9``, resumes where the last run stopped.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pic_plugin.analysis import extract
from pic_plugin.core.geometry import Box, iou
from pic_plugin.core.suggestion import Scorer, Suggestion
from pic_plugin.imaging.decode import is_image_path
from pic_plugin.library.catalog import Catalog
from pic_plugin.library.harvest import APPROXIMATE_FACTOR, WEIGHT_ACCEPTED_SUGGESTION
from pic_plugin.library.options import BatchOptions, SuggestOptions
from pic_plugin.library.pipeline import (
    PhotoJob,
    PhotoOutput,
    SidecarWriteError,
    finish,
    process_file,
    result_json,
    write_sidecars,
)
from pic_plugin.library.scan import content_key, file_signature
from pic_plugin.library.watch.events import Debouncer, EventRouter, OwnWrites, photos_for_sidecar
from pic_plugin.library.watch.observers import WatchedRoot, dedupe_roots, filesystem_type, hidden_or_skipped
from pic_plugin.library.watch.scanner import Scanner
from pic_plugin.library.watch.state import EVENT, REFRESH, REFRESH_NEAR, DaemonLock, QueueItem, WatchState
from pic_plugin.model import scorers

log = logging.getLogger("pic.watch")

#: Weights as ``harvest`` gives them: a suggestion taken unchanged 0.3 (the user's own crop 1), approximate half.
ACCEPTED_WEIGHT = WEIGHT_ACCEPTED_SUGGESTION
#: digiKam names its versions ``IMG_v1.JPG``; their crop history is inside the file (no sidecar needed).
_DIGIKAM_VERSION = re.compile(r"_v\d+$")
#: A user crop this close to pic's suggestion counts as "accepted as is".
SAME_CROP_IOU = 0.98
#: Sidecars are hashed up to this size for the refusal signature (pic reads no larger XMP).
MAX_SIDECAR_BYTES = 16 << 20
Writer = Callable[..., Any]  # pic_plugin.editors.sidecars.write_suggestion
#: (photo, on_error) -> the crops the user made that concern it (``harvest.collect_crops`` for one photo)
CropCollector = Callable[[Path, Callable[[str, str], None]], list[Any]]
#: (catalog path, user) -> what happened ({"version": ..., "k": ...}), or None when there was nothing to learn.
Learner = Callable[[Path, str], "dict[str, Any] | None"]


@dataclass
class WatchOptions(SuggestOptions):
    mode: str = "suggest"  # the watcher only suggests unless told --apply (DESIGN "Apply or suggest")
    jobs: int = field(default_factory=lambda: os.cpu_count() or 1)
    poll: bool = False  # polling observers for every root (network drives; inotify limits)
    poll_interval: float = 5.0
    quiet: float = 0.5  # debounce: a path is looked at this long after its last event
    max_delay: float = 10.0  # ... but at most this long after its first
    scan: bool = True  # scan the roots at start (incremental, resumable)
    finetune_delay: float = 5.0  # wait for more crops this long after a new one (batches a burst of edits)
    finetune_interval: float = 60.0  # at most one fine-tune per this many seconds (a k=50 fine-tune takes <10 s)
    max_attempts: int = 5  # sidecar write retries (concurrent edits, disk full) before giving up on a photo
    retry_delay: float = 2.0  # first back-off; doubles per attempt
    supervise_interval: float = 2.0  # roots that vanished / came back, observers that died
    in_flight_per_job: int = 2
    scan_high_water: int = 256  # the scan only runs ahead while fewer paths wait (back-pressure)
    scan_chunk: int = 128  # paths queued (and the scan position saved) per step
    heartbeat: float = 5.0


@dataclass
class WatchResult:
    path: Path
    status: str  # done | unchanged | learned | removed | deferred | error
    reason: str
    suggestion: Suggestion | None = None
    error: str | None = None
    learned: int = 0
    wrote: bool = False

    def to_json(self) -> dict[str, Any]:
        out = result_json(self.path, self.status, self.suggestion, self.error, learned=self.learned)
        return {"reason": self.reason, **out}


# --- defaults: the real modules ---------------------------------------------------------------------------------


def default_writer() -> Writer:
    from pic_plugin.editors.sidecars import write_suggestion

    return write_suggestion


def default_crop_collector() -> CropCollector:
    """The editor readers of ``harvest`` (darktable and crs sidecars, digiKam versions), for one photo."""
    from pic_plugin.library.harvest import collect_crops

    def collect(photo: Path, on_error: Callable[[str, str], None]) -> list[Any]:
        return collect_crops([photo], on_error=on_error)

    return collect


def default_learner() -> Learner:
    """The per-user fine-tune of the learned model (``library.learn.learn``: all the user's crops in the catalog ->
    a new active model version)."""
    from pic_plugin.library.learn import learn

    def run(catalog_path: Path, user: str) -> dict[str, Any] | None:
        with Catalog(catalog_path) as catalog:  # its own connection: this runs in the fine-tune thread
            result = learn(catalog, user)
        return {"version": result.version, "k": result.k, "seconds": round(float(result.seconds), 3),
                "errors": list(result.errors)[:5]}  # fmt: skip

    return run


# --- helpers ----------------------------------------------------------------------------------------------------


def sidecar_candidates(photo: Path) -> list[Path]:
    """The sidecars an editor may be writing for ``photo``: ``IMG.ext.xmp`` and ``IMG.xmp``."""
    return [photo.with_name(photo.name + ".xmp"), photo.with_suffix(".xmp")]


def _stamp(path: Path) -> list[int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns]


def _signatures(photo: Path) -> dict[str, list[Any]]:
    """(size, mtime_ns, SHA-256) of each of ``photo``'s sidecars that exists, by path."""
    out: dict[str, list[Any]] = {}
    for p in sidecar_candidates(photo):
        try:
            with open(p, "rb") as fh:
                st = os.fstat(fh.fileno())
                digest = hashlib.sha256(fh.read(MAX_SIDECAR_BYTES)).hexdigest()
        except OSError:
            continue
        out[os.fsdecode(p)] = [st.st_size, st.st_mtime_ns, digest]
    return out


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


@dataclass
class _InFlight:
    item: QueueItem
    write: bool
    learned: int


# --- the daemon ---------------------------------------------------------------------------------------------------


class Watcher:
    """Watches ``roots`` and keeps ``catalog`` and the sidecars up to date until ``stop()``.

    ``writer``, ``crop_collector`` and ``learner`` default to the real sidecar, harvest and model modules; tests and
    benchmarks may pass stand-ins. ``on_result`` hears about every photo looked at.
    """

    def __init__(
        self,
        roots: Iterable[Path],
        options: WatchOptions,
        catalog: Catalog,
        *,
        writer: Writer | None = None,
        crop_collector: CropCollector | None = None,
        learner: Learner | None | str = "default",
        on_result: Callable[[WatchResult], None] | None = None,
        lock: bool = True,
    ) -> None:
        self.roots = [WatchedRoot(p) for p in dedupe_roots(roots)]
        self.options = options
        self.catalog = catalog
        self.state = WatchState(catalog)
        # WAL + NORMAL: a crash (kill -9) never corrupts nor loses committed rows; only a power cut may roll back the
        # last commits, and the queue then redoes that work. FULL would fsync every photo's commit.
        catalog.db.execute("PRAGMA synchronous = NORMAL")
        self.writer = writer if writer is not None else default_writer()
        self.collect_crops = crop_collector if crop_collector is not None else default_crop_collector()
        self.learner: Learner | None = default_learner() if learner == "default" else learner  # type: ignore[assignment]
        self.on_result = on_result
        self.own = OwnWrites()
        self.router = EventRouter(self.own)
        self.debouncer = Debouncer(options.quiet, options.max_delay)
        self.batch_options = BatchOptions(
            user=options.user, ratio=options.ratio, top_k=options.top_k, write=True, targets=options.targets,
            mode=options.mode, force=False, scorer=options.scorer,
        )  # fmt: skip
        self.counters: Counter[str] = Counter()
        self._stop = threading.Event()
        self._lock = DaemonLock(catalog.path) if lock and str(catalog.path) != ":memory:" else None
        self._scorer: Scorer | None = None
        self._pool: futures.ThreadPoolExecutor | None = None
        self._learn_pool: futures.ThreadPoolExecutor | None = None
        self._local = threading.local()
        self._worker_catalogs: list[Catalog] = []
        self._worker_lock = threading.Lock()
        self._inflight: dict[futures.Future[PhotoOutput], _InFlight] = {}
        self._busy: set[bytes] = set()
        self.scanner = Scanner(self.state, catalog, self._scan_unchanged, self._problem, options.scan_chunk)
        self._next_claim = 0.0
        self._pending = 0
        self._pending_checked = 0.0
        self._next_supervise = 0.0
        self._next_heartbeat = 0.0
        self._finetune_at: float | None = None
        self._last_finetune = -1e18
        self._finetune_future: futures.Future[dict[str, Any] | None] | None = None
        self._refresh_near: set[str] = set()
        self._started = time.time()
        self._errors_in_a_row = 0
        self._holding = False
        self._last_counters: dict[str, int] = {}
        self._last_heartbeat = -1e18

    # --- public API ---

    @property
    def scorer(self) -> Scorer:
        if self._scorer is None:
            self._scorer = scorers.load(self.options.scorer, catalog=self.catalog, user=self.options.user)
        return self._scorer

    def stop(self) -> None:
        """Ask the daemon to stop (thread- and signal-safe); ``run`` finishes in-flight work and returns."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def run(self, ready: Callable[[], None] | None = None) -> None:
        """Watch until ``stop()``. ``ready`` is called once the observers are armed."""
        try:
            self.start()
            if ready is not None:
                ready()
            while not self._stop.is_set():
                self.tick()
        finally:
            self.close()

    def start(self) -> None:
        if self._lock is not None:
            self._lock.acquire(
                {"pid": os.getpid(), "started": self._started, "roots": [os.fsdecode(r.path) for r in self.roots],
                 "catalog": os.fsdecode(self.catalog.path), "user": self.options.user}
            )  # fmt: skip
        self._holding = True  # from here on this daemon owns the catalog's watch state
        self._pool = futures.ThreadPoolExecutor(max(1, self.options.jobs), thread_name_prefix="pic-analyze")
        self._learn_pool = futures.ThreadPoolExecutor(1, thread_name_prefix="pic-finetune")
        _ = self.scorer
        for root in self.roots:
            root.arm(self._on_event, self._problem, self.options.poll, self.options.poll_interval)
            if self.options.scan and root.mode != "missing":
                self.scanner.start(root.path, resume=True)
        self._save_roots()
        self._pending = self.state.pending()
        if self._pending:
            log.info("resuming %d queued photos from the last run", self._pending)
        self.state.log("info", f"watching {len(self.roots)} folder(s) as user {self.options.user!r}")

    def tick(self, wait: float = 0.05) -> None:
        """One round of the main loop (also used by tests to drive the daemon step by step)."""
        steps: list[Callable[[], None]] = [self._pump_events, self._maybe_supervise, self._advance_scans,
                                           self._dispatch, self._maybe_finetune, self._maybe_heartbeat]  # fmt: skip
        for step in steps:
            try:
                step()
                self._errors_in_a_row = 0
            except Exception as exc:  # disk full, a locked catalog, a bug: report, back off, keep watching
                self._errors_in_a_row += 1
                self._problem("error", f"{step.__name__}: {type(exc).__name__}: {exc}", None, log_exc=True)
                time.sleep(min(5.0, 0.1 * 2 ** min(self._errors_in_a_row, 6)))
        try:
            busy = bool(self.scanner) and self._pending < self.options.scan_high_water
            self._collect(0.0 if busy else wait)
        except Exception as exc:
            self._problem("error", f"collect: {type(exc).__name__}: {exc}", None, log_exc=True)
            time.sleep(0.1)

    def idle(self) -> bool:
        """Nothing waiting, nothing running, no scan going on (tests and benchmarks wait for this)."""
        return (
            not self._inflight and not self.scanner and len(self.debouncer) == 0 and self.state.pending() == 0
            and self._finetune_at is None and self._finetune_future is None
        )  # fmt: skip

    def close(self) -> None:
        """Stop observing, keep everything noticed in the queue, finish (or leave queued) in-flight work."""
        for root in self.roots:
            root.disarm()
        if not self._holding:
            return  # start() failed before taking the catalog (another daemon has it): touch nothing
        self._holding = False
        try:
            self._pump_events(everything=True)
        except Exception as exc:
            log.error("could not save pending events: %s", exc)
        deadline = time.monotonic() + 30
        while self._inflight and time.monotonic() < deadline:
            try:
                self._collect(0.2)
            except Exception as exc:
                log.error("could not finish in-flight work: %s", exc)
                break
        if self._finetune_future is not None:
            with contextlib.suppress(Exception):
                self._finetune_future.result(timeout=30)
        for pool in (self._pool, self._learn_pool):
            if pool is not None:
                pool.shutdown(wait=False, cancel_futures=True)
        for cat in self._worker_catalogs:
            with contextlib.suppress(Exception):
                cat.close()
        try:
            self.state.set("counters", dict(self.counters))
            self.state.set("daemon", {"pid": os.getpid(), "started": self._started, "stopped": time.time()})
        except Exception:
            pass
        if self._lock is not None:
            self._lock.release()

    # --- observers ---

    def _on_event(self, root: Path, event: Any) -> None:
        kind = event.event_type
        if kind in ("opened", "closed_no_write"):
            return
        self.counters["events"] += 1
        paths = [event.src_path]
        if kind == "moved":
            paths.append(event.dest_path)
        for raw in paths:
            path = Path(os.fsdecode(raw))
            try:
                rel = path.relative_to(root).parts
            except ValueError:
                continue
            if hidden_or_skipped(rel[:-1] if not event.is_directory else rel):
                continue
            if event.is_directory:
                if kind in ("created", "moved") and raw is paths[-1] and path.is_dir():
                    self.debouncer.poke(("dir", path))  # a folder moved in: its photos may bring no events
                continue
            for routed in self.router.route(path):
                value = "photo" if routed.kind == "photo" else frozenset({routed.sidecar})
                self.debouncer.poke(("photo", routed.photo), value)

    def _maybe_supervise(self) -> None:
        now = time.monotonic()
        if now < self._next_supervise:
            return
        self._next_supervise = now + self.options.supervise_interval
        changed = False
        for root in self.roots:
            exists = root.path.is_dir()
            if root.observer is not None and (not exists or not root.alive()):
                root.disarm()
                if not exists:
                    root.mode = "missing"
                    self._problem("warning", "watched folder disappeared; waiting for it to come back", root.path)
                else:
                    self._problem("warning", "the folder's observer stopped; watching it again", root.path)
                changed = True
            if root.observer is None and exists:
                was_missing = root.mode == "missing"
                root.arm(self._on_event, self._problem, self.options.poll, self.options.poll_interval)
                if root.observer is not None:
                    if was_missing:
                        self.state.log("info", "watched folder is back; rescanning", root.path)
                    self.scanner.start(root.path, resume=False)
                    changed = True
        if changed:
            self._save_roots()
        self._check_model_outside()

    def _check_model_outside(self) -> None:
        """A model changed outside the daemon (``pic learn`` or ``pic model --rollback`` in a terminal, a profile
        edited with ``pic profile``): load it and refresh the suggestions, as after our own fine-tune. The version
        check is torch-free and cheap (``scorers.version``)."""
        if self._scorer is None or self._finetune_future is not None:
            return
        old = self._scorer.version
        try:
            current = scorers.version(self.options.scorer, catalog=self.catalog, user=self.options.user)
            if current == old:
                return
            self._scorer = scorers.load(self.options.scorer, catalog=self.catalog, user=self.options.user)
        except Exception as exc:  # never let a check stop the daemon; the current scorer stays
            log.debug("model version check failed: %s", exc)
            return
        n = self._enqueue_refresh()
        self.state.log("info", f"model changed outside the watcher: {old} -> {self._scorer.version}")
        log.info("model %s -> %s (changed outside the watcher): refreshing %d suggestions", old, current, n)

    def _save_roots(self) -> None:
        self.state.set("roots", [r.describe() for r in self.roots])

    # --- events -> queue ---

    def _pump_events(self, everything: bool = False) -> None:
        items = self.debouncer.drain() if everything else self.debouncer.due(limit=5000)
        rows = []
        for key, value in items:
            kind, path = key  # type: ignore[misc]
            if kind == "dir":
                if everything:
                    continue  # the next start's scan finds them
                self.scanner.add_folder(path)
                continue
            if isinstance(value, frozenset):
                if value and all(self.own.is_ours(p) for p in value):
                    self.counters["own_writes_ignored"] += 1  # checked once settled: the write has been noted
                    continue
                rows.append((path, "sidecar", EVENT))
            else:
                rows.append((path, "event", EVENT))
        if rows:
            self.state.enqueue(rows)
            self._pending += len(rows)
            self._next_claim = 0.0

    # --- scanning (``scanner.Scanner``) ---

    def _advance_scans(self) -> None:
        if not self.scanner:
            return
        now = time.monotonic()
        if now - self._pending_checked > 0.5:
            self._pending = self.state.pending()
            self._pending_checked = now
        if self._pending >= self.options.scan_high_water:
            return  # back-pressure: let the workers catch up first
        queued = self.scanner.advance()
        if queued:
            self._pending += queued
            self._next_claim = 0.0

    def _scan_unchanged(self, path: Path) -> bool:
        """Stat-only: the photo and the sidecars pic last saw are as they were, and the model is the same."""
        try:
            sig = file_signature(path)
        except OSError:
            return False  # processing reports it
        record = self.catalog.image(path)
        if record is None or (record.file_size, record.mtime_ns) != sig:
            return False
        if record.error:
            return True  # a bad file that has not changed: reported when it was found
        prev = self.catalog.suggestion(record.id, self.options.user, self.options.ratio.name)
        if not self._current(prev):
            return False
        assert prev is not None
        return all(_stamp(Path(f)) == s for f, s in (prev["written"].get("files") or {}).items())

    def _current(self, prev: dict[str, Any] | None, refused: bool = False) -> bool:
        """``prev`` is this model's suggestion, written as the options ask (``refused``: or refused for good)."""
        if prev is None or prev["model"] != self.scorer.version or prev["top_k"] != self.options.top_k:
            return False
        w = prev["written"] or {}
        if "error" in w and not (refused and w.get("lasting")):
            return False
        targets = w.get("targets")
        return not targets or (sorted(targets) == sorted(self.options.targets) and w.get("mode") == self.options.mode)

    # --- queue -> work ---

    def _dispatch(self) -> None:
        capacity = max(1, self.options.jobs) * self.options.in_flight_per_job
        deadline = time.perf_counter() + 0.05
        while len(self._inflight) < capacity and time.time() >= self._next_claim and not self._stop.is_set():
            items = self.state.claim(capacity - len(self._inflight), self._busy)
            if not items:
                nxt = self.state.next_ready()
                self._next_claim = time.time() + (0.5 if nxt is None else min(0.5, max(0.0, nxt - time.time())))
                if nxt is None:
                    self._pending = 0
                break
            for item in items:
                self._prepare(item)
            if time.perf_counter() > deadline:
                break

    def _prepare(self, item: QueueItem) -> None:
        """Learn from the photo's sidecars; submit the analysis when its suggestion is missing or stale."""
        path = item.path
        try:
            sig = file_signature(path)
        except (FileNotFoundError, NotADirectoryError):
            if item.reason != "refresh" and self.catalog.image(path) is not None:
                self.catalog.forget_image(path)  # deleted or moved away; its user crops stay (keyed by content)
            self._done(item, WatchResult(path, "removed", item.reason))
            return
        except OSError as exc:
            self._problem("error", f"cannot read: {exc.strerror or exc}", path)
            self._done(item, WatchResult(path, "error", item.reason, error=str(exc)))
            return
        if not is_image_path(path):
            self._done(item, WatchResult(path, "unchanged", item.reason))
            return
        if self._editor_busy(path):
            self.state.retry(path, "an editor is writing its sidecar", self.options.quiet, count=False)
            self.counters["deferred"] += 1
            return
        record = self.catalog.image(path)
        same_file = record is not None and (record.file_size, record.mtime_ns) == sig
        if item.reason == "scan" and record is not None and same_file and record.error:
            self._done(item, WatchResult(path, "unchanged", item.reason))
            return
        prev = self.catalog.suggestion(record.id, self.options.user, self.options.ratio.name) if record else None
        if same_file and record is not None and not record.error and self._refused_unchanged(prev, path):
            # the batch's rule: a sidecar pic cannot write into was reported once; not again until it changes
            self._done(item, WatchResult(path, "unchanged", item.reason))
            return
        key = record.content_key if record is not None and same_file else None
        if item.reason == "refresh" and prev is not None and self._sidecars_as_seen(prev, path):
            has_user_crop, learned = False, 0  # nothing changed since pic last looked (an edit would be an event)
        else:
            has_user_crop, learned, key = self._learn(path, record, sig, prev, key)
        if same_file and record is not None and not record.error and self._current(prev):
            assert prev is not None
            self._note_sidecars(prev, path)
            self._done(item, WatchResult(path, "learned" if learned else "unchanged", item.reason, learned=learned))
            return
        assert self._pool is not None
        fut = self._pool.submit(self._analyze, PhotoJob(path, sig, None), self.scorer, key)
        self._inflight[fut] = _InFlight(item, write=not has_user_crop, learned=learned)
        self._busy.add(item.key)

    def _analyze(self, job: PhotoJob, scorer: Scorer, key: str | None) -> PhotoOutput:
        """Worker thread: decode + features (or the catalog's cached ones) + suggestion."""
        catalog = getattr(self._local, "catalog", None)
        if catalog is None and str(self.catalog.path) != ":memory:":
            catalog = self._local.catalog = Catalog(self.catalog.path, readonly=True)
            with self._worker_lock:
                self._worker_catalogs.append(catalog)
                if self.options.jobs > 1 and len(self._worker_catalogs) == 1:
                    extract.set_single_threaded()  # the threads share the cores: one torch thread each
        return process_file(job, self.batch_options, scorer, catalog, key)

    def _collect(self, timeout: float) -> None:
        if not self._inflight:
            if timeout > 0:
                self._stop.wait(timeout)
            return
        done, _ = futures.wait(list(self._inflight), timeout=timeout, return_when=futures.FIRST_COMPLETED)
        for fut in done:
            info = self._inflight.pop(fut)
            self._busy.discard(info.item.key)
            try:
                out = fut.result()
            except Exception as exc:  # process_file catches per-file errors; this is a bug, reported per file
                out = PhotoOutput(info.item.path, (0, 0), error=f"internal error: {type(exc).__name__}: {exc}")
            self._complete(info, out)

    def _complete(self, info: _InFlight, out: PhotoOutput) -> None:
        item, path = info.item, info.item.path
        if out.error is None and info.write and self._editor_busy(path):
            if out.new_features is not None and out.content_key is not None:
                self.catalog.put_features(out.content_key, out.feature_version, out.new_features)
            self.state.retry(path, "an editor is writing its sidecar", self.options.quiet, count=False)
            self.counters["deferred"] += 1
            return
        options = self.batch_options if info.write else dataclasses.replace(self.batch_options, write=False)
        with self.catalog.transaction():  # one commit per photo: catalog rows and the queue row go together
            result = finish(out, options, self.catalog, write=self._write)
            if result.status != "error":
                if not info.write:
                    self._note_skipped_write(path)
                self.counters["suggested"] += 1
                if out.cached:
                    self.counters["from_cached_features"] += 1  # no decode, no CNN
                self._done(item, WatchResult(path, "done", item.reason, out.suggestion, learned=info.learned,
                                             wrote=info.write))  # fmt: skip
                return
        if out.error is not None:  # the photo itself cannot be read: wait for it to change
            self._problem("error", out.error, path)
            self._done(item, WatchResult(path, "error", item.reason, error=out.error))
            return
        if result.written.get("refused") is not None:  # retrying cannot help: report once, wait for a change
            self._problem("error", f"{result.error} (not tried again until the sidecar changes)", path)
            self._done(item, WatchResult(path, "error", item.reason, error=result.error))
            return
        attempts = self.state.retry(path, result.error, self.options.retry_delay * 2 ** item.attempts)
        if attempts >= self.options.max_attempts:
            self._problem("error", f"giving up after {attempts} tries: {result.error}", path)
            self._done(item, WatchResult(path, "error", item.reason, error=result.error))
        else:
            self.counters["retried"] += 1
            self._problem("warning", f"will retry: {result.error}", path)
            self._emit(WatchResult(path, "deferred", item.reason, error=result.error))

    def _write(self, out: PhotoOutput, options: BatchOptions) -> dict[str, Any]:
        """Write the suggestion's sidecars (main thread, batch's writer path), remembering them as pic's own.

        A sidecar pic cannot write into (``UnsupportedSidecarError``, the batch's "lasting" failure) gets the
        signature of every sidecar as it stands after the refusal (``refused``), so that the photo is not written
        again until one of them changes."""
        try:
            written = write_sidecars(out, options, writer=self.writer)
        except SidecarWriteError as exc:
            for f in exc.info.get("files", {}):
                self.own.remember(Path(f))  # the targets that were written (pic's record) are pic's own writes
            if exc.lasting:
                exc.info["refused"] = _signatures(out.path)
            raise
        for f in written.get("files", {}):
            self.own.remember(Path(f))
        return written

    def _refused_unchanged(self, prev: dict[str, Any] | None, photo: Path) -> bool:
        """pic's last write for ``photo`` was refused for good, and its sidecars are still as they were then."""
        if prev is None or not self._current(prev, refused=True):
            return False
        refused = (prev["written"] or {}).get("refused")
        return refused is not None and refused == _signatures(photo)

    def _sidecars_as_seen(self, prev: dict[str, Any], photo: Path) -> bool:
        files = (prev["written"] or {}).get("files") or {}
        return all(_stamp(p) == files.get(os.fsdecode(p)) for p in sidecar_candidates(photo))

    def _note_sidecars(self, prev: dict[str, Any], photo: Path) -> None:
        """Record the sidecar stamps seen now, so the next scan skips a photo whose sidecar the user edited."""
        written = dict(prev["written"] or {})
        files = dict(written.get("files") or {})
        for p in sidecar_candidates(photo):
            stamp = _stamp(p)
            if stamp is not None:
                files[os.fsdecode(p)] = stamp
        if files != (written.get("files") or {}):
            written["files"] = files
            self.catalog.set_suggestion_written(prev["id"], written)

    def _note_skipped_write(self, photo: Path) -> None:
        record = self.catalog.image(photo)
        prev = self.catalog.suggestion(record.id, self.options.user, self.options.ratio.name) if record else None
        if prev is not None:
            prev["written"] = {**(prev["written"] or {}), "skipped": "the user's own crop"}
            self._note_sidecars(prev, photo)

    def _editor_busy(self, photo: Path) -> bool:
        """``photo`` or one of its sidecars changed by someone else less than the quiet period ago (still being
        copied, an editor still writing): let it settle first."""
        now = time.time_ns()
        photo_stamp = _stamp(photo)
        quiet = self.options.quiet * 1e9
        if photo_stamp is not None and 0 <= now - photo_stamp[1] < quiet:  # (a future mtime: clock skew, not busy)
            return True
        for p in sidecar_candidates(photo):
            stamp = _stamp(p)
            if stamp is not None and 0 <= now - stamp[1] < quiet and not self.own.is_ours(p):
                return True
        return False

    def _done(self, item: QueueItem, result: WatchResult) -> None:
        self.state.done(item.path)
        self._pending = max(0, self._pending - 1)
        self.counters[result.status] += 1
        self._emit(result)

    def _emit(self, result: WatchResult) -> None:
        if self.on_result is not None:
            try:
                self.on_result(result)
            except Exception:
                log.exception("on_result callback failed")

    # --- learning ---

    def _learn(
        self, path: Path, record: Any, sig: tuple[int, int], prev: dict[str, Any] | None, key: str | None
    ) -> tuple[bool, int, str | None]:
        """Record the crops the user made (``harvest``'s readers) for ``path`` in the catalog.

        Returns (``path`` carries a crop of the user's, how many crops were new or changed, its content key).
        A crop equal to pic's own suggestion counts as accepted (weight 0.3, as ``harvest`` weighs it); in apply
        mode pic's own enabled entry is pic's doing, not the user's, and is not learned from.
        """
        if not any(p.exists() for p in _all_sidecars(path)) and not _DIGIKAM_VERSION.search(path.stem):
            return False, 0, key  # no sidecar, not a digiKam version: nothing to learn (a new photo, usually)

        def problem(where: str, message: str) -> None:
            self._problem("warning", f"reading its edits: {message}", Path(where))

        try:
            crops = self.collect_crops(path, problem)
        except Exception as exc:  # an editor file we cannot read must not stop the photo
            self._problem("warning", f"cannot read its edits: {type(exc).__name__}: {exc}", path)
            return False, 0, key
        here = os.path.abspath(path)
        user = self.options.user
        has_user_crop, learned, all_same = False, 0, True
        for c in crops:
            if c.pic_suggestion and self.options.mode == "apply":
                continue  # pic's own applied crop
            mine = os.path.abspath(c.image) == here
            same = c.pic_suggestion or (mine and prev is not None and iou(Box(*c.crop), Box(*prev["crop"])) >= SAME_CROP_IOU)
            if mine:
                has_user_crop, all_same = True, all_same and same
            if not user:
                continue
            weight = c.weight
            if same and not c.pic_suggestion:
                weight = ACCEPTED_WEIGHT * (APPROXIMATE_FACTOR if c.approximate else 1.0)
            if mine:
                key = key or content_key(path, sig[0])
                ck = key
            else:  # a digiKam version: the crop belongs to its original
                try:
                    ck = content_key(Path(c.image))
                except OSError as exc:
                    self._problem("warning", f"cannot read the original of a digiKam version: {exc}", Path(c.image))
                    continue
            detail = _jsonable({**dict(c.detail or {}), "approximate": bool(c.approximate),
                                "pic_suggestion": bool(c.pic_suggestion), "editor": c.source, "via": "pic watch"})
            if self.catalog.add_user_crop(user, ck, os.fsdecode(c.image), Box(*c.crop), c.key, weight, detail):
                learned += 1
                what = "an accepted suggestion" if same else "a crop"
                self.state.log("info", f"learned {what} from {c.source} (weight {weight:g})", Path(c.image))
        if has_user_crop and prev is not None:
            self.catalog.set_suggestion_status(prev["id"], "accepted" if all_same else "adjusted")
        if learned:
            self.counters["crops_learned"] += learned
            self._schedule_finetune(path.parent)
        return has_user_crop, learned, key

    def _schedule_finetune(self, folder: Path) -> None:
        now = time.monotonic()
        self._finetune_at = max(now + self.options.finetune_delay, self._last_finetune + self.options.finetune_interval)
        self._refresh_near.add(os.fsdecode(folder))

    def _maybe_finetune(self) -> None:
        fut = self._finetune_future
        if fut is not None:
            if not fut.done():
                return
            self._finetune_future = None
            self._finetuned(fut)
        if self._finetune_at is None or time.monotonic() < self._finetune_at:
            return
        self._finetune_at = None
        user = self.options.user
        if self.learner is None or not user:
            self.state.set(f"finetune:{user}", {"time": time.time(), "skipped": "no trainable model installed"})
            return
        self._last_finetune = time.monotonic()
        assert self._learn_pool is not None
        log.info("fine-tuning %s's model", user)
        self._finetune_future = self._learn_pool.submit(self.learner, self.catalog.path, user)

    def _finetuned(self, fut: futures.Future[dict[str, Any] | None]) -> None:
        user = self.options.user
        t0 = time.time()
        try:
            info = fut.result() or {}
        except Exception as exc:
            self._problem("error", f"fine-tune failed: {type(exc).__name__}: {exc}", None, log_exc=True)
            self.state.set(f"finetune:{user}", {"time": t0, "error": str(exc)})
            return
        self.counters["finetunes"] += 1
        old = self.scorer.version
        self._scorer = scorers.load(self.options.scorer, catalog=self.catalog, user=user)
        self.state.set(f"finetune:{user}", {"time": t0, **_jsonable(info), "scorer": self._scorer.version})
        self.state.log("info", f"fine-tuned {user}'s model: {self._scorer.version}")
        if self._scorer.version != old:
            n = self._enqueue_refresh()
            log.info("model %s -> %s: refreshing %d suggestions", old, self._scorer.version, n)

    def _enqueue_refresh(self) -> int:
        """Queue every not-yet-edited photo under the roots for a new suggestion (cached features, no decode);
        photos in the folders where the user just cropped go first."""
        near, self._refresh_near = self._refresh_near, set()
        total = 0
        for root in self.roots:
            prefix = os.fsdecode(root.path).rstrip(os.sep) + os.sep
            last = 0
            while True:
                rows = self.catalog.db.execute(
                    "SELECT i.id, i.path FROM images i WHERE i.id > ? AND i.error IS NULL"
                    " AND substr(i.path, 1, ?) = ? AND NOT EXISTS (SELECT 1 FROM user_crops u"
                    " WHERE u.user = ? AND u.content_key = i.content_key) ORDER BY i.id LIMIT 1000",
                    [last, len(prefix), prefix, self.options.user or ""],
                ).fetchall()
                if not rows:
                    break
                last = rows[-1][0]
                items = [(Path(p), "refresh", REFRESH_NEAR if os.path.dirname(p) in near else REFRESH) for _, p in rows]
                total += self.state.enqueue(items)
        self._pending += total
        self._next_claim = 0.0
        return total

    # --- reporting ---

    def _problem(self, level: str, message: str, path: Path | None, log_exc: bool = False) -> None:
        self.counters[f"{level}s"] += 1
        where = f"{os.fsdecode(path)}: " if path is not None else ""
        if log_exc:
            log.exception("%s%s", where, message)
        else:
            log.log(logging.ERROR if level == "error" else logging.WARNING, "%s%s", where, message)
        # The catalog itself may be the problem (disk full): the log line above still went out.
        with contextlib.suppress(Exception):
            self.state.log(level, message, path)

    def _maybe_heartbeat(self) -> None:
        now = time.monotonic()
        if now < self._next_heartbeat:
            return
        self._next_heartbeat = now + self.options.heartbeat
        counters = dict(self.counters)
        if counters == self._last_counters and now - self._last_heartbeat < 60:
            return  # idle: no catalog write every few seconds
        self._last_counters, self._last_heartbeat = counters, now
        self.state.set("counters", counters)
        self.state.set("daemon", {"pid": os.getpid(), "started": self._started, "heartbeat": time.time(),
                                  "roots": [r.describe() for r in self.roots]})  # fmt: skip


def _all_sidecars(photo: Path) -> list[Path]:
    out = sidecar_candidates(photo)
    base, ext = os.path.splitext(photo.name)
    out.append(photo.with_name(f"{base}_01{ext}.xmp"))  # a darktable duplicate's sidecar (cheap first check)
    return out


__all__ = [
    "ACCEPTED_WEIGHT",
    "Watcher",
    "WatchOptions",
    "WatchResult",
    "dedupe_roots",
    "default_crop_collector",
    "default_learner",
    "default_writer",
    "filesystem_type",
    "photos_for_sidecar",
]
