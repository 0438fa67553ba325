#!/usr/bin/env python3
"""Train the PIC prior and write ``pic_plugin/data/pic_prior.pt`` (the recipe: ``pic_plugin/research/prior_recipe.py``).

Seeded, fixed splits (``SubjectPhoto.split``; only ``train`` photos are used). Needs ``../shared/data``. Features
are cached in ``$PIC_FEATURE_CACHE`` (default ``~/.cache/pic/features``), so a second run skips the backbone.

    python scripts/train_prior.py [--out PATH] [--steps N] [--gaicd DIR] [--per-user CSV... --images DIR]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pic_plugin.research.prior_recipe import train_shipped_prior


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--gaicd", type=Path, default=None, help="a GAICD copy with images")
    ap.add_argument("--per-user", type=Path, nargs="*", default=[], help="per-user CSV files or folders")
    ap.add_argument("--images", type=Path, default=None, help="images named by the per-user CSV files")
    ap.add_argument("--cache", type=Path, default=None, help="feature cache folder")
    args = ap.parse_args()
    try:
        train_shipped_prior(
            args.out, args.steps, args.gaicd, args.per_user, args.images, args.cache, log=lambda s: print(s, flush=True)
        )
    except FileNotFoundError as exc:
        print(exc, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
