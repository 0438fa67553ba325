"""One photo through pic: analyze and suggest (``process_file``, worker side, writes nothing), then record it in the
catalog and write its sidecars (``finish``, the catalog's single writer). ``pic batch`` runs it in worker processes,
``pic watch`` in threads; both get the same ``FileResult``."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from pic_plugin.analysis import features
from pic_plugin.analysis.suggest import suggest
from pic_plugin.core.errors import PicError
from pic_plugin.core.suggestion import Scorer, Suggestion
from pic_plugin.library.analyze import analyze_file
from pic_plugin.library.catalog import Catalog
from pic_plugin.library.options import BatchOptions
from pic_plugin.library.scan import content_key

#: A crop keeping at least this share of the frame is the whole frame: "leave the photo as it is".
UNCROPPED_AREA = 0.999


#: Added to the model version of a suggestion made without the object detector (``--fast``).
FAST_SUFFIX = "+fast"


@dataclass
class PhotoJob:
    path: Path
    signature: tuple[int, int]
    root: Path | None


@dataclass
class PhotoOutput:
    path: Path
    signature: tuple[int, int]
    content_key: str | None = None
    orientation: int = 1
    format: str | None = None
    size: tuple[int, int] | None = None
    new_features: bytes | None = None
    feature_version: str = features.FEATURE_VERSION  # of ``new_features`` (``--fast``: without the detector)
    cached: bool = False
    suggestion: Suggestion | None = None
    exported: str | None = None
    error: str | None = None
    seconds: float = 0.0


def process_file(
    job: PhotoJob, options: BatchOptions, scorer: Scorer, catalog: Catalog | None, key: str | None = None
) -> PhotoOutput:
    """Analyze and suggest one file (worker side; writes nothing). ``key``: its content key when already known.

    Also the watcher's unit of work (it runs this in threads, with the scorer of the moment)."""
    t0 = time.perf_counter()
    out = PhotoOutput(job.path, job.signature)
    try:
        key = key or content_key(job.path, job.signature[0])
        cached = catalog.features(key, features.FEATURE_VERSION) if catalog is not None else None
        if cached is None and options.fast and catalog is not None:
            cached = catalog.features(key, features.FAST_FEATURE_VERSION)
        fa = analyze_file(job.path, cached, key, fast=options.fast)
        out.feature_version = fa.analysis.version
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
        if fa.analysis.version == features.FAST_FEATURE_VERSION:
            out.suggestion.model += FAST_SUFFIX  # a full run redoes it (``batch._unchanged``)
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
        return result_json(self.path, self.status, self.suggestion, self.error, written=self.written, exported=self.exported)


def result_json(
    path: Path, status: str, suggestion: Suggestion | None, error: str | None, **extra: Any
) -> dict[str, Any]:
    """One JSON line of ``pic batch --json`` / ``pic watch --json``: the suggestion's contract (DESIGN section 3),
    the file's status and error, and the ``extra`` fields that are set."""
    out: dict[str, Any] = {"path": os.fsdecode(path), "status": status}
    if suggestion is not None:
        out.update(suggestion.to_json())
        out["path"] = os.fsdecode(path)
    if error:
        out["error"] = error
    out.update({k: v for k, v in extra.items() if v})
    return out


SidecarWriter = Callable[[PhotoOutput, BatchOptions], dict[str, Any]]


class SidecarWriteError(PicError):
    """Some targets failed; ``info`` is what was done (per target, files), as ``write_sidecars`` returns it.

    ``lasting``: every failure stays until the sidecar changes (an unsupported file), so an unchanged photo is
    reported again without being written again."""

    def __init__(self, message: str, info: dict[str, Any], lasting: bool = False) -> None:
        super().__init__(message)
        self.info = info
        self.lasting = lasting


def failure_message(errors: dict[str, str], statuses: dict[str, str]) -> str:
    """"crs not written: <reason> (pic, darktable written)": which targets failed, and what the others did."""
    text = "; ".join(f"{target} not written: {message}" for target, message in errors.items())
    done: dict[str, list[str]] = {}
    for target, status in statuses.items():
        if target not in errors:
            done.setdefault(status, []).append(target)
    if done:
        text += " (" + "; ".join(f"{', '.join(ts)} {status}" for status, ts in done.items()) + ")"
    return text


def finish(out: PhotoOutput, options: BatchOptions, catalog: Catalog, write: SidecarWriter | None = None) -> FileResult:
    """Main-process side of one file: catalog, sidecars (through ``write``, default ``write_sidecars``), result."""
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
        catalog.put_features(out.content_key, out.feature_version, out.new_features)
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
            written.update((write or write_sidecars)(out, write_options))
        except SidecarWriteError as exc:  # the targets that were written are still listed, and remembered
            written.update(exc.info)
            status, error = "error", str(exc)
            if exc.lasting:
                written["lasting"] = True
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
        written=written if status == "done" else {**written, "error": error},
        subject=out.suggestion.subject,
        subject_kind=out.suggestion.subject_kind,
    )
    if turned_down == "rejected":
        catalog.set_suggestion_status(suggestion_id, "rejected")  # stays turned down for the next run
    return FileResult(
        out.path,
        status,
        suggestion=out.suggestion,
        error=error,
        written={k: v for k, v in written.items() if k not in ("files", "lasting")},
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


def write_sidecars(out: PhotoOutput, options: BatchOptions, writer: Callable[..., Any] | None = None) -> dict[str, Any]:
    """Write the suggestion to the requested sidecars; what was done, per target, for the catalog and output.

    ``files`` records each sidecar's (size, mtime) after writing, so that a re-run notices when the user (or
    their editor) changed one since. Raises SidecarWriteError when a target failed (the file counts as failed);
    it carries what the other targets did.
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
        statuses = {t: r.status for t, r in report.results.items()}
        lasting = all(r.lasting for r in report.results.values() if r.status == "error")
        raise SidecarWriteError(failure_message(report.errors, statuses), info, lasting)
    return info
