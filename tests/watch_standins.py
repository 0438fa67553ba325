"""Simple real stand-ins for the sidecar writer/reader and the learner, for watcher tests and the benchmark.

The watcher takes its writer, crop collector and learner as callables. These write a small JSON "sidecar" next to
the photo (atomically, like the real writer), keep a user crop as the real writer does, and "learn" a user's mean
crop as a model version the ``mean-crop`` scorer below reads from the catalog. They let the event, queue and
fault tests run without the XMP layer or the neural model; the tests that need real darktable sidecars use
``pic_plugin.editors.sidecars``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from pic_plugin.core.atomic import atomic_path
from pic_plugin.core.geometry import Box
from pic_plugin.editors.sidecars import TargetResult, WriteReport
from pic_plugin.library.catalog import Catalog
from pic_plugin.library.harvest import LibraryCrop
from pic_plugin.model import scorers


def sidecar(image: Path) -> Path:
    return image.with_name(image.name + ".xmp")


def read_sidecar(image: Path) -> dict[str, Any]:
    try:
        return json.loads(sidecar(image).read_text())
    except (OSError, ValueError):
        return {}


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    with atomic_path(path, suffix=".xmp.tmp") as tmp:  # a temp name the watcher ignores, like the real writer's
        tmp.write_text(json.dumps(data))


def json_writer(image: Path, suggestion: Any, orientation: int, *, targets: Any = ("pic",), mode: str = "suggest",
                force: bool = False) -> WriteReport:
    path = sidecar(image)
    report = WriteReport(image)
    data = read_sidecar(image)
    if data.get("user") and not force:
        report.results["pic"] = TargetResult("pic", "kept-user-crop", path)
        return report
    data["pic"] = suggestion.crop.as_list()
    data["model"] = suggestion.model
    try:
        write_json_atomic(path, data)
    except OSError as exc:
        report.results["pic"] = TargetResult("pic", "error", path, f"{exc.strerror or exc}")
        return report
    report.results["pic"] = TargetResult("pic", "written", path)
    report.files.append(path)
    return report


def json_collect(image: Path, on_error: Any = None) -> list[LibraryCrop]:
    """The crops "the editor" made, as ``harvest.collect_crops`` reports them."""
    data = read_sidecar(image)
    if not data.get("user"):
        return []
    detail = {"sidecar": os.fsdecode(sidecar(image))}
    return [LibraryCrop(image, Box(*data["user"]), "darktable", "darktable", detail, False, False)]


def user_edit(image: Path, crop: Box) -> None:
    """What an editor does: rewrite the sidecar with the user's crop (keeping what is there)."""
    data = read_sidecar(image)
    data["user"] = list(crop)
    write_json_atomic(sidecar(image), data)


def mean_crop_learner(catalog_path: Path, user: str) -> dict[str, Any]:
    """Fine-tune stand-in: the weighted mean of the user's crops becomes a new model version."""
    with Catalog(catalog_path) as catalog:
        crops = catalog.user_crops(user)
        w = np.array([c["weight"] for c in crops], dtype=np.float64)
        boxes = np.array([list(c["crop"]) for c in crops], dtype=np.float64)
        mean = (boxes * w[:, None]).sum(0) / w.sum()
        version = catalog.save_model(user, json.dumps(mean.tolist()).encode(), {"k": len(crops)})
    return {"version": version, "k": len(crops)}


class MeanCropScorer:
    """Scores candidates by closeness to the user's learned mean crop (the prior: the full frame)."""

    name = "mean-crop"
    temperature = 0.1

    def __init__(self, catalog: Catalog | None = None, user: str | None = None) -> None:
        model = catalog.active_model(user) if catalog is not None and user else None
        self.target = np.array(json.loads(model[1]) if model else [0.0, 0.0, 1.0, 1.0], dtype=np.float32)
        self.version = f"mean-crop-v{model[0] if model else 0}"

    def score(self, analysis: Any, boxes: np.ndarray, user: Any = None, ratio: Any = None) -> np.ndarray:
        return -np.abs(np.asarray(boxes, dtype=np.float32) - self.target).sum(axis=1)


@scorers.register("mean-crop")
def _mean_crop(catalog: Catalog | None = None, user: str | None = None, **_: Any) -> MeanCropScorer:
    return MeanCropScorer(catalog, user)
