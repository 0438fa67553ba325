#!/usr/bin/env python3
"""Train the feature head (reduced CNN map + subject map) on human subject masks and the teacher's pseudo-masks.

Reproduces ``pic_plugin/data/feature_head.pt``: seeded, fixed split (``SubjectPhoto.split``). Trains on the
human masks of the ``train`` split and, with ``--teacher`` (the folder ``scripts/make_teacher_masks.py`` fills),
on the teacher's pseudo-masks of every photo outside the ``test`` split that has no human mask. Prints held-out
numbers on the ``test`` split against a centre-prior baseline. Needs ``../shared/data``; backbone taps are cached
under ``build/subject-taps/``.

    python scripts/train_feature_head.py --teacher build/teacher-masks [--out pic_plugin/data/feature_head.pt]

``--keep-map HEAD`` starts from HEAD (e.g. the shipped head, trained on human masks only) and trains only its subject
branch: the reduced CNN map the prior was trained on stays as it is (measured, not shipped: README "Finding the
subject").
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

from pic_plugin.analysis.heads import HEAD_FILE, FeatureHead
from pic_plugin.research.datasets import subject_photos
from pic_plugin.research.subject_head_training import (
    TapCache,
    Target,
    build_targets,
    load_examples,
    photo_key,
    teacher_masks,
    train_head,
)


def evaluate(head: FeatureHead, examples) -> dict[str, float]:  # type: ignore[no-untyped-def]
    ious, maes, base_ious, base_maes = [], [], [], []
    head.eval()
    with torch.inference_mode():
        for taps, target, _ in examples:
            _, logits = head(taps)
            pred = torch.sigmoid(logits[0])
            h, w = target.shape
            yy, xx = torch.meshgrid(torch.linspace(-1, 1, h), torch.linspace(-1, 1, w), indexing="ij")
            centre = torch.exp(-(xx**2 + yy**2) / 0.5)
            for p, iou_list, mae_list in ((pred, ious, maes), (centre, base_ious, base_maes)):
                hard, gt = p >= 0.5, target >= 0.5
                inter = (hard & gt).sum().item()
                union = (hard | gt).sum().item()
                iou_list.append(inter / union if union else 1.0)
                mae_list.append((p - target).abs().mean().item())
    return {
        "mask_iou": float(np.mean(ious)),
        "mae": float(np.mean(maes)),
        "centre_prior_mask_iou": float(np.mean(base_ious)),
        "centre_prior_mae": float(np.mean(base_maes)),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=HEAD_FILE)
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--teacher", type=Path, default=None, help="teacher pseudo-masks folder (make_teacher_masks.py)")
    ap.add_argument("--keep-map", type=Path, default=None,
                    help="a feature head whose CNN map is kept frozen: only its subject branch is trained")
    args = ap.parse_args()

    np.random.seed(args.seed)
    photos = subject_photos()
    if not photos:
        print("no shared data found (../shared/data or $PIC_SHARED_DATA)", file=sys.stderr)
        return 2
    teacher = teacher_masks(args.teacher) if args.teacher else {}
    if args.teacher and not teacher:
        print(f"no teacher masks in {args.teacher}: run scripts/make_teacher_masks.py", file=sys.stderr)
        return 2
    test = [p for p in photos if p.split == "test"]
    targets = build_targets(photos, teacher, human_filter=lambda p: p.split == "train",
                            exclude={photo_key(p.image) for p in test})
    cache = TapCache()
    t0 = time.time()
    train_ex = load_examples(targets, cache)
    test_ex = load_examples([Target(p.image, p.mask, False, frozenset()) for p in test], cache, flips=False)
    n_teacher = sum(t.soft for t in targets)
    print(f"targets: {len(targets) - n_teacher} human + {n_teacher} teacher masks ({len(train_ex)} examples with "
          f"mirrors), {len(test_ex)} held-out masks; features in {time.time() - t0:.0f}s", flush=True)
    keep = None
    if args.keep_map:
        keep = FeatureHead()
        keep.load_state_dict(torch.load(args.keep_map, map_location="cpu", weights_only=True))
        print(f"held-out, {args.keep_map} as it is: {evaluate(keep, test_ex)}")
    head = train_head(train_ex, epochs=args.epochs, seed=args.seed, keep_map=keep)
    print(f"held-out: {evaluate(head, test_ex)}")
    head.eval()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(head.state_dict(), args.out)
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes) in {time.time() - t0:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
