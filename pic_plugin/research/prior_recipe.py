"""The recipe that produces the shipped prior weights (``data/pic_prior.pt``): data, settings, seeds.

Used by ``scripts/train_prior.py`` and ``pic train``. Data: the ``train`` split of the photos with human subject
masks (and their mirror images) less a fixed validation fold of scenes (``prior_training.validation_fold``: its curve is
printed while training, it is never a training signal), with out-of-fold subject maps (``prior_training.out_of_fold_subject_maps``); the
well-composed photographs for the self-supervised VFN term; optionally GAICD scored crops and real users' crops
when the user owns those datasets. Everything is seeded; the splits are fixed by hashing scene names.
"""

from __future__ import annotations

import hashlib
import io
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from pic_plugin.model.finetune import torch_threads
from pic_plugin.model.network import PRIOR_FILE, PicNet, save_prior
from pic_plugin.research.datasets import load_gaicd, subject_photos
from pic_plugin.research.feature_store import FeatureStore
from pic_plugin.research.prior_training import (
    PriorConfig,
    load_or_make_oof_maps,
    photo_item,
    scored_items,
    train_prior,
    user_tasks_from_csv,
    validation_callback,
    validation_fold,
    view_pairs,
    well_composed_paths,
)

SHIPPED = PriorConfig(steps=1500)


def weights_version(net: PicNet) -> str:
    buf = io.BytesIO()
    torch.save(net.state_dict(), buf)
    return "pic-" + hashlib.sha1(buf.getvalue()).hexdigest()[:10]


def train_shipped_prior(
    out: Path | None = None,
    steps: int | None = None,
    gaicd: Path | None = None,
    per_user: Sequence[Path] = (),
    images: Path | None = None,
    cache: Path | None = None,
    log: Callable[[str], None] = print,
    config: PriorConfig | None = None,
    threads: int = 1,
) -> dict[str, Any]:
    """Train and write the prior. Returns its metadata (also stored inside the weights file).

    One torch thread by default: the matrices are small, and the shipped weights were made that way."""
    with torch_threads(threads):
        return _train(out, steps, gaicd, per_user, images, cache, log, config)


def _train(
    out: Path | None,
    steps: int | None,
    gaicd: Path | None,
    per_user: Sequence[Path],
    images: Path | None,
    cache: Path | None,
    log: Callable[[str], None],
    config: PriorConfig | None,
) -> dict[str, Any]:
    t0 = time.time()
    cfg = config or PriorConfig(**{**asdict(SHIPPED), **({"steps": steps} if steps else {})})
    store = FeatureStore(cache)
    photos = [p for p in subject_photos() if p.split == "train"]
    if not photos:
        raise FileNotFoundError("the photos with subject masks are needed (../shared/data or $PIC_SHARED_DATA)")
    oof: dict[str, Any] = {}
    if cfg.teacher_branch:
        oof = {"teacher": True, "branch": True}
    elif cfg.teacher_masks:
        oof = {"teacher": True, "epochs": 10}
    maps = load_or_make_oof_maps(photos, store, log=log, **oof)
    train = [p for p in photos if not validation_fold(p)]
    held = [p for p in photos if validation_fold(p)]
    items = [photo_item(p, store, flip, maps.get((str(p.image), flip))) for p in train for flip in (False, True)]
    val_items = [photo_item(p, store, False, maps.get((str(p.image), False))) for p in held]
    views = view_pairs(well_composed_paths(), store)
    log(
        f"data: {len(items)} training photos (with mirror images), {len(val_items)} validation photos, "
        f"{len(views.full)} well-composed views ({time.time() - t0:.0f}s)"
    )
    scored = []
    if gaicd is not None:
        sets = [s for s in load_gaicd(gaicd).values() if s.split != "test" and s.image is not None]
        scored = scored_items(sets, store)
        log(f"GAICD: {len(scored)} training images with scored crops")
    tasks = []
    if per_user:
        if images is None:
            raise FileNotFoundError("--per-user needs --images (the folder with the images the CSV files name)")
        files = [f for p in per_user for f in (sorted(Path(p).rglob("*.csv")) if Path(p).is_dir() else [Path(p)])]
        tasks = user_tasks_from_csv(files, images, store, log)
        log(f"per-user data: {len(tasks)} users with images")
    validate = validation_callback(val_items)
    net, report = train_prior(items, views, cfg, log=log, validate=validate, scored=scored, user_tasks=tasks)
    meta = {
        "version": weights_version(net),
        "trained": time.strftime("%Y-%m-%d"),
        "config": asdict(cfg),
        "data": {
            "photos": len(items),
            "validation_photos": len(val_items),
            "views": len(views.full),
            "gaicd": len(scored),
            "real_users": len(tasks),
        },
        "history": report["history"],
        "seconds": round(time.time() - t0, 1),
    }
    target = out or PRIOR_FILE
    save_prior(net, target, meta)
    log(f"wrote {target} ({target.stat().st_size // 1024} KiB), version {meta['version']}, {meta['seconds']:.0f}s")
    return meta
