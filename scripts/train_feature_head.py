#!/usr/bin/env python3
"""Train the feature head (reduced CNN map + subject map) on real photos with human subject masks.

Reproduces ``pic_plugin/data/feature_head.pt``: seeded, fixed split (``SubjectPhoto.split``), about two
minutes on 2 CPU cores. Prints held-out numbers against a centre-prior baseline. Needs ``../shared/data``.

    python scripts/train_feature_head.py [--out pic_plugin/data/feature_head.pt] [--epochs 60]
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from pic_plugin.analysis import backbone
from pic_plugin.analysis.heads import HEAD_FILE, FeatureHead, backbone_input
from pic_plugin.imaging.decode import decode
from pic_plugin.research.datasets import subject_photos


def load_examples(photos, flip: bool):  # type: ignore[no-untyped-def]
    net = backbone.load_backbone()
    out = []
    for p in photos:
        pixels = decode(p.image).pixels
        mask = np.asarray(Image.open(p.mask).convert("L"), dtype=np.float32) / 255.0
        mask = (mask >= 0.5).astype(np.float32)
        if flip:
            pixels, mask = pixels[:, ::-1], mask[:, ::-1]
        with torch.no_grad():
            taps = net(backbone_input(pixels))
        h8, w8 = taps[0].shape[-2:]
        target = torch.from_numpy(np.ascontiguousarray(mask))[None, None]
        target = F.adaptive_avg_pool2d(target, (h8, w8))[0, 0]
        out.append((taps, target))
    return out


def dice_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    p = torch.sigmoid(logits)
    return 1 - (2 * (p * target).sum() + 1) / (p.sum() + target.sum() + 1)


def evaluate(head: FeatureHead, examples) -> dict[str, float]:  # type: ignore[no-untyped-def]
    ious, maes, base_ious, base_maes = [], [], [], []
    head.eval()
    with torch.inference_mode():
        for taps, target in examples:
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
    args = ap.parse_args()

    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    photos = subject_photos()
    if not photos:
        print("no shared data found (../shared/data or $PIC_SHARED_DATA)", file=sys.stderr)
        return 2
    train = [p for p in photos if p.split == "train"]
    test = [p for p in photos if p.split == "test"]
    t0 = time.time()
    train_ex = load_examples(train, flip=False) + load_examples(train, flip=True)
    test_ex = load_examples(test, flip=False)
    print(f"features: {len(train_ex)} train / {len(test_ex)} test examples in {time.time() - t0:.0f}s")

    head = FeatureHead()
    opt = torch.optim.AdamW(head.parameters(), lr=3e-3, weight_decay=1e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=args.epochs)
    order = list(range(len(train_ex)))
    for epoch in range(args.epochs):
        head.train()
        random.shuffle(order)
        total = 0.0
        for i in order:
            taps, target = train_ex[i]
            _, logits = head(taps)
            loss = F.binary_cross_entropy_with_logits(logits[0], target) + dice_loss(logits[0], target)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item()
        sched.step()
        if epoch % 10 == 9 or epoch == args.epochs - 1:
            print(f"epoch {epoch + 1}: train loss {total / len(order):.4f}  held-out {evaluate(head, test_ex)}")
    head.eval()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(head.state_dict(), args.out)
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes) in {time.time() - t0:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
