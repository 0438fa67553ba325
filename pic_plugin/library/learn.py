"""``pic learn``: a user's crops -> the catalog -> a fine-tuned, versioned user model.

What the front ends call:

- ``add_crops(catalog, user, crops)``: record crops (from a CSV, the sidecar readers or the review page; each
  ``(path, Box, source, weight)``) and return how many were new;
- ``learn(catalog, user, crops=())``: add ``crops``, then fine-tune the user's model on *all* their crops in the
  catalog and store it as a new active version (``pic model --rollback`` undoes it).

Features of each photo come from the catalog's cache (``content_key`` + ``FEATURE_VERSION``) and are computed
and stored there when missing, so fine-tuning again after a new crop needs no image work. The scorer that uses
the stored model is ``model.personalize.load_scorer``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pic_plugin.analysis import features
from pic_plugin.analysis.features import ImageAnalysis
from pic_plugin.core.errors import DecodeError
from pic_plugin.core.geometry import Box
from pic_plugin.library.analyze import analyze_with_catalog
from pic_plugin.library.catalog import Catalog
from pic_plugin.model.finetune import FinetuneConfig, UserExample, finetune
from pic_plugin.model.network import PicNet, load_prior

log = logging.getLogger(__name__)

#: (path, crop in the displayed frame, source such as "cli" / "darktable" / "digikam", weight)
CropRecord = tuple[Path, Box, str, float]
#: Fine-tuning uses the user's most recent crops, at most this many: habits drift, and k = 200 still takes
#: seconds (the gain over k = 50 is small, see the README).
MAX_FINETUNE_CROPS = 200


def add_crops(catalog: Catalog, user: str, crops: Iterable[CropRecord]) -> tuple[int, list[str]]:
    """Record the user's crops (idempotent). Returns (new or changed, errors as 'path: reason')."""
    added, errors = 0, []
    for path, box, source, weight in crops:
        if not box.is_valid():
            errors.append(f"{os.fsdecode(path)}: not a valid normalized crop {list(box)}")
            continue
        try:
            key = analyze_with_catalog(Path(path), catalog).content_key
        except (OSError, DecodeError) as exc:
            errors.append(f"{os.fsdecode(path)}: {exc}")
            continue
        added += catalog.add_user_crop(user, key, os.fsdecode(path), box, source, weight)
    return added, errors


def user_examples(catalog: Catalog, user: str) -> tuple[list[UserExample], list[str]]:
    """The user's crops with their photos' features (photos that cannot be read are reported, not fatal)."""
    pairs, errors = user_crop_examples(catalog, user)
    return [example for _, example in pairs], errors


def user_crop_examples(catalog: Catalog, user: str) -> tuple[list[tuple[dict[str, Any], UserExample]], list[str]]:
    """``user_examples`` with the catalog row of each crop (oldest first); rejected (weight 0) rows are left out."""
    pairs, errors = [], []
    for row in catalog.user_crops(user):
        if float(row["weight"]) <= 0:
            continue  # a suggestion the user rejected on the review page: kept in the catalog, not a crop to imitate
        data = catalog.features(row["content_key"], features.FEATURE_VERSION)
        analysis = None
        if data is not None:
            try:
                analysis = ImageAnalysis.from_bytes(data)
            except (ValueError, KeyError, OSError):
                analysis = None
        if analysis is None and row["path"]:
            try:
                analysis = analyze_with_catalog(Path(row["path"]), catalog, row["content_key"]).analysis
            except (OSError, DecodeError) as exc:
                errors.append(f"{row['path']}: {exc}")
        if analysis is not None:
            pairs.append((row, UserExample(analysis, row["crop"], float(row["weight"]))))
    return pairs, errors


@dataclass
class LearnResult:
    user: str
    added: int
    k: int  # crops the model was fitted on
    version: int | None  # new model version (None: nothing to learn from)
    seconds: float
    errors: list[str]
    habit: str | None = None  # the framing rule in words (FramingRule.describe)


def learn(
    catalog: Catalog,
    user: str,
    crops: Iterable[CropRecord] = (),
    config: FinetuneConfig | None = None,
    note: str = "",
    net_loader: Callable[[], tuple[PicNet, dict[str, Any]]] = load_prior,
) -> LearnResult:
    """The hook for every source of crops: add them, fine-tune on all the user's crops, store a new version."""
    import time

    catalog.ensure_user(user)
    added, errors = add_crops(catalog, user, crops)
    examples, read_errors = user_examples(catalog, user)
    errors += read_errors
    examples = examples[-MAX_FINETUNE_CROPS:]  # user_crops come oldest first
    if not examples:
        return LearnResult(user, added, 0, None, 0.0, errors)
    net, meta = net_loader()
    attributes = (catalog.user(user) or {}).get("attributes", {})
    t0 = time.perf_counter()
    model = finetune(net, examples, attributes, config, prior=str(meta.get("version", "")))
    seconds = time.perf_counter() - t0
    version = catalog.save_model(
        user,
        model.to_bytes(),
        {"k": model.k, "seconds": round(seconds, 3), **model.metrics},
        note=note or f"fine-tuned on {model.k} crops",
    )
    habit = model.rule.describe() if model.rule is not None else None
    return LearnResult(user, added, model.k, version, seconds, errors, habit)


def read_crop_file(path: Path) -> list[CropRecord]:
    """``pic learn --crops FILE``: CSV with header ``path,left,top,right,bottom`` (normalized, displayed frame) or
    JSON lines with the same keys; optional ``source`` and ``weight`` columns. Relative paths are relative to the
    file. Raises ValueError with the line number on a bad row."""
    import csv
    import json

    path = Path(path)
    text = path.read_text(encoding="utf-8")
    rows: list[tuple[int, dict[str, Any]]] = []
    first = next((line for line in text.splitlines() if line.strip()), "")
    if first.lstrip().startswith("{"):
        for n, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    rows.append((n, json.loads(line)))
                except json.JSONDecodeError as exc:
                    raise ValueError(f"{path}:{n}: not JSON ({exc.msg})") from None
    else:
        reader = csv.DictReader(text.splitlines())
        missing = {"path", "left", "top", "right", "bottom"} - set(reader.fieldnames or [])
        if missing:
            raise ValueError(f"{path}: CSV needs the header path,left,top,right,bottom (missing {sorted(missing)})")
        rows = [(n, row) for n, row in enumerate(reader, 2)]
    out: list[CropRecord] = []
    for n, row in rows:
        try:
            box = Box(*(float(row[k]) for k in ("left", "top", "right", "bottom")))
            p = Path(str(row["path"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{path}:{n}: bad row ({exc})") from None
        if not box.is_valid():
            raise ValueError(f"{path}:{n}: crop {list(box)} is not inside [0, 1] with left < right, top < bottom")
        out.append(
            (
                p if p.is_absolute() else path.parent / p,
                box,
                str(row.get("source") or "cli"),
                float(row.get("weight") or 1.0),
            )
        )
    return out
