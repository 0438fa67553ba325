"""``pic batch``: suggestions for every photo under some folders, written where the editors see them.

The main process enumerates files, skips those whose size/mtime (and sidecars) are unchanged since the last
run — no image work at all on an unchanged library — and hands the rest to worker processes (one per core by
default). Workers decode, extract features (or reuse the catalog's cached ones), score and optionally export a
cropped copy. The main process is the catalog's single writer and writes the sidecars, so files are never
written concurrently. One bad file gives one error line and never stops the batch.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import os
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from pic_plugin.analysis import features
from pic_plugin.analysis.suggest import Scorer, Suggestion, suggest
from pic_plugin.core.errors import PicError
from pic_plugin.core.geometry import FREE, Ratio
from pic_plugin.library.analyze import analyze_file
from pic_plugin.library.catalog import Catalog
from pic_plugin.library.scan import content_key, file_signature, in_shard, iter_images
from pic_plugin.model import scorers

#: Sidecar formats ``pic batch`` can write (``--targets``); see ``pic_plugin.editors.sidecars``.
WRITE_TARGETS = ("pic", "darktable", "crs")

#: Work items in flight per worker: enough to keep cores busy, small enough that memory stays flat.
IN_FLIGHT_PER_JOB = 4


@dataclass
class BatchOptions:
    user: str | None = None
    ratio: Ratio = FREE
    top_k: int = 3
    write: bool = True
    targets: tuple[str, ...] = ("pic", "darktable")
    mode: str = "apply"  # apply: darktable renders the crop | suggest: metadata only, crop entry disabled
    force: bool = False  # replace a crop the user made (never without this)
    export_dir: Path | None = None
    jobs: int = 1
    dry_run: bool = False
    shard: tuple[int, int] | None = None
    scorer: str | None = None
    refresh: bool = False  # redo files even when unchanged


@dataclass
class FileResult:
    path: Path
    status: str  # done | unchanged | error | planned
    suggestion: Suggestion | None = None
    error: str | None = None
    written: dict[str, Any] = field(default_factory=dict)
    exported: str | None = None
    cached_features: bool = False
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"path": os.fsdecode(self.path), "status": self.status}
        if self.suggestion is not None:
            out.update(self.suggestion.to_json())
            out["path"] = os.fsdecode(self.path)
        if self.error:
            out["error"] = self.error
        if self.written:
            out["written"] = self.written
        if self.exported:
            out["exported"] = self.exported
        return out


#: A crop keeping at least this share of the frame is the whole frame: "leave the photo as it is".
UNCROPPED_AREA = 0.999


@dataclass
class BatchSummary:
    counts: Counter[str] = field(default_factory=Counter)  # per FileResult.status
    kept_user_crops: int = 0  # photos whose own (user-made) crop was left alone
    uncropped: int = 0  # photos done whose best suggestion is (almost) the whole frame
    seconds: float = 0.0
    failed: list[tuple[Path, str]] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def line(self) -> str:
        parts = [f"{self.counts[k]} {k}" for k in ("done", "unchanged", "planned", "error") if self.counts[k]]
        if self.kept_user_crops:
            parts.append(f"{self.kept_user_crops} with your own crop kept")
        if self.uncropped:
            parts.append(f"{self.uncropped} best left uncropped")
        return f"{self.total} photos: " + (", ".join(parts) or "nothing to do") + f" in {self.seconds:.1f}s"

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


def parse_targets(text: str) -> tuple[str, ...]:
    targets = tuple(dict.fromkeys(t.strip().lower() for t in text.split(",") if t.strip()))
    unknown = [t for t in targets if t not in WRITE_TARGETS]
    if unknown or not targets:
        raise ValueError(f"--targets: unknown {', '.join(unknown) or '(none)'}; choose from {', '.join(WRITE_TARGETS)}")
    return targets


# --- worker side -----------------------------------------------------------------------------------------------


@dataclass
class _Job:
    path: Path
    signature: tuple[int, int]
    root: Path | None


@dataclass
class _Output:
    path: Path
    signature: tuple[int, int]
    content_key: str | None = None
    orientation: int = 1
    format: str | None = None
    size: tuple[int, int] | None = None
    new_features: bytes | None = None
    cached: bool = False
    suggestion: Suggestion | None = None
    exported: str | None = None
    error: str | None = None
    seconds: float = 0.0


_STATE: dict[str, Any] = {}


def _init_worker(catalog_path: str, options: BatchOptions, single_threaded: bool) -> None:
    if single_threaded:
        features.set_single_threaded()
    catalog = Catalog(catalog_path, readonly=True) if catalog_path != ":memory:" else None
    _STATE.update(
        catalog=catalog,
        options=options,
        scorer=scorers.load(options.scorer, catalog=catalog, user=options.user),
    )


def _process(job: _Job) -> _Output:
    return process_file(job, _STATE["options"], _STATE["scorer"], _STATE["catalog"])


def process_file(
    job: _Job, options: BatchOptions, scorer: Scorer, catalog: Catalog | None, key: str | None = None
) -> _Output:
    """Analyze and suggest one file (worker side; writes nothing). ``key``: its content key when already known.

    Also the watcher's unit of work (it runs this in threads, with the scorer of the moment)."""
    t0 = time.perf_counter()
    out = _Output(job.path, job.signature)
    try:
        key = key or content_key(job.path, job.signature[0])
        cached = catalog.features(key, features.FEATURE_VERSION) if catalog is not None else None
        fa = analyze_file(job.path, cached, key)
        out.content_key, out.orientation, out.format = key, fa.orientation, fa.format
        out.size, out.new_features, out.cached = fa.analysis.size, fa.new_features, fa.cached
        out.suggestion = suggest(
            fa.analysis,
            scorer,
            options.ratio,
            options.top_k,
            user=options.user,
            path=os.fsdecode(job.path),
            user_name=options.user,
        )
        if options.export_dir is not None:
            from pic_plugin.imaging.export import export_crop, export_path

            target = export_path(job.path, job.root, options.export_dir)
            out.exported = os.fsdecode(export_crop(job.path, out.suggestion.crop, options.ratio, target))
    except PicError as exc:
        out.error = str(exc)
    except MemoryError:
        out.error = "out of memory while processing this image"
    except Exception as exc:  # one file's surprise must not stop the batch; report it with its type
        out.error = f"internal error: {type(exc).__name__}: {exc}"
    out.seconds = time.perf_counter() - t0
    return out


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


def _unchanged(catalog: Catalog, path: Path, signature: tuple[int, int], options: BatchOptions, model: str) -> bool:
    record = catalog.image(path)
    if record is None or record.error or (record.file_size, record.mtime_ns) != signature:
        return False
    previous = catalog.suggestion(record.id, options.user, options.ratio.name)
    if previous is None or previous["model"] != model or previous["top_k"] != options.top_k:
        return False
    written = previous["written"] or {}
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
    return True


def run_batch(
    roots: Iterable[Path],
    options: BatchOptions,
    catalog: Catalog,
    on_start: Callable[[int], None] | None = None,
    on_result: Callable[[FileResult], None] | None = None,
) -> BatchSummary:
    t0 = time.perf_counter()
    summary = BatchSummary()
    items = collect(roots, options)
    if on_start:
        on_start(len(items))
    # The workers build the scorer; here only its version is needed (cheap: no torch for an unchanged folder).
    model_version = scorers.version(options.scorer, catalog=catalog, user=options.user)

    def emit(result: FileResult) -> None:
        summary.counts[result.status] += 1
        if "kept-user-crop" in (result.written.get("darktable"), result.written.get("crs")):
            summary.kept_user_crops += 1
        if result.status == "error":
            summary.failed.append((result.path, result.error or "error"))
        if result.status == "done" and result.suggestion is not None and result.suggestion.crop.area >= UNCROPPED_AREA:
            summary.uncropped += 1
        if on_result:
            on_result(result)

    jobs: list[_Job] = []
    for path, root in items:
        try:
            signature = file_signature(path)
        except OSError as exc:
            emit(FileResult(path, "error", error=f"cannot read file: {exc.strerror or exc}"))
            continue
        if not options.refresh and _unchanged(catalog, path, signature, options, model_version):
            emit(FileResult(path, "unchanged"))
            continue
        if options.dry_run:
            emit(FileResult(path, "planned"))
            continue
        jobs.append(_Job(path, signature, root))

    for output in _run_jobs(jobs, options, catalog):
        emit(_finish(output, options, catalog))
    summary.seconds = time.perf_counter() - t0
    return summary


def _run_jobs(jobs: list[_Job], options: BatchOptions, catalog: Catalog) -> Iterator[_Output]:
    if not jobs:
        return
    catalog_path = str(catalog.path)
    workers = max(1, min(options.jobs, len(jobs)))
    if workers == 1:
        _init_worker(catalog_path, options, single_threaded=False)
        try:
            for job in jobs:
                yield _process(job)
        finally:
            _STATE.clear()
        return
    ctx = multiprocessing.get_context("spawn")  # no fork after torch/OpenMP have started threads
    with cf.ProcessPoolExecutor(
        max_workers=workers, mp_context=ctx, initializer=_init_worker, initargs=(catalog_path, options, True)
    ) as pool:
        pending: set[cf.Future[_Output]] = set()
        queue = iter(jobs)
        for job in queue:
            pending.add(pool.submit(_process, job))
            if len(pending) >= workers * IN_FLIGHT_PER_JOB:
                break
        while pending:
            done, pending = cf.wait(pending, return_when=cf.FIRST_COMPLETED)
            for fut in done:
                yield fut.result()
                nxt = next(queue, None)
                if nxt is not None:
                    pending.add(pool.submit(_process, nxt))


SidecarWriter = Callable[[_Output, BatchOptions], dict[str, Any]]


def _finish(out: _Output, options: BatchOptions, catalog: Catalog, write: SidecarWriter | None = None) -> FileResult:
    """Main-process side of one file: catalog, sidecars (through ``write``, default ``_write_sidecars``), result."""
    if out.error is not None or out.suggestion is None:
        catalog.upsert_image(
            out.path, file_size=out.signature[0], mtime_ns=out.signature[1], error=out.error or "no suggestion"
        )
        return FileResult(out.path, "error", error=out.error, seconds=out.seconds)
    assert out.size is not None and out.content_key is not None
    image_id = catalog.upsert_image(
        out.path,
        file_size=out.signature[0],
        mtime_ns=out.signature[1],
        content_key=out.content_key,
        width=out.size[0],
        height=out.size[1],
        orientation=out.orientation,
        format=out.format,
        error=None,
    )
    if out.new_features is not None:
        catalog.put_features(out.content_key, features.FEATURE_VERSION, out.new_features)
    written: dict[str, Any] = {"targets": list(options.targets) if options.write else [], "mode": options.mode}
    if out.exported:
        written["exported"] = out.exported
    status = "done"
    error = None
    turned_down = None if options.force else review_decision(catalog, image_id, out.content_key, options.user)
    if options.write:
        write_options = options
        if turned_down is not None and options.mode == "apply":
            # The user turned pic's crop down on the review page: offer the new one, never apply it.
            write_options = replace(options, mode="suggest")
            written["held_back"] = turned_down
        try:
            written.update((write or _write_sidecars)(out, write_options))
        except PicError as exc:
            status, error = "error", f"sidecar not written: {exc}"
    suggestion_id = catalog.save_suggestion(
        image_id,
        options.user,
        options.ratio.name,
        out.suggestion.model,
        out.suggestion.crop,
        out.suggestion.score,
        [{"crop": a.crop.as_list(), "score": a.score} for a in out.suggestion.alternatives],
        options.top_k,
        written=written if status == "done" else {"error": error},
    )
    if turned_down == "rejected":
        catalog.set_suggestion_status(suggestion_id, "rejected")  # stays turned down for the next run
    return FileResult(
        out.path,
        status,
        suggestion=out.suggestion,
        error=error,
        written={k: v for k, v in written.items() if k not in ("files",)},
        exported=out.exported,
        cached_features=out.cached,
        seconds=out.seconds,
    )


def review_decision(catalog: Catalog, image_id: int, content_key: str, user: str | None) -> str | None:
    """``"rejected"`` or ``"uncropped"`` when the user turned pic's crop down for this photo on the review page
    (rejected it, or accepted the uncropped frame, which darktable shows as no crop at all), else None."""
    if user:
        row = catalog.user_crop(user, content_key, "review")
        if row is not None:
            if row["detail"].get("decision") == "rejected":
                return "rejected"
            if row["crop"].area >= UNCROPPED_AREA:
                return "uncropped"
    for previous in catalog.suggestions_for_image(image_id):
        if previous["user"] == (user or "") and previous["status"] == "rejected":
            return "rejected"
    return None


def _write_sidecars(out: _Output, options: BatchOptions, writer: Callable[..., Any] | None = None) -> dict[str, Any]:
    """Write the suggestion to the requested sidecars; what was done, per target, for the catalog and output.

    ``files`` records each sidecar's (size, mtime) after writing, so that a re-run notices when the user (or
    their editor) changed one since. Raises PicError when a target failed (the file counts as failed).
    ``writer``: ``sidecars.write_suggestion`` (default) or a stand-in with its signature (the watcher's tests).
    """
    from pic_plugin.editors.sidecars import write_suggestion

    assert out.suggestion is not None
    report = (writer or write_suggestion)(
        out.path, out.suggestion, out.orientation, targets=options.targets, mode=options.mode, force=options.force
    )
    info: dict[str, Any] = {t: r.status for t, r in report.results.items()}
    files: dict[str, list[int]] = {}
    for result in report.results.values():
        if result.path is not None:
            try:
                st = os.stat(result.path)
                files[os.fsdecode(result.path)] = [st.st_size, st.st_mtime_ns]
            except OSError:
                pass  # not created (e.g. crs skipped in suggest-only mode)
    info["files"] = files
    if report.darktable_entry is not None:
        info["darktable_entry"] = list(report.darktable_entry)
    notes = {t: r.message for t, r in report.results.items() if r.message and r.status != "error"}
    if notes:
        info["notes"] = notes
    if report.errors:
        raise PicError("; ".join(f"{target}: {message}" for target, message in report.errors.items()))
    return info
