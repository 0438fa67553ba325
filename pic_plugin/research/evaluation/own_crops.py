"""``pic eval --user``: the protocol's comparison on a real user's own crops from the catalog (a held-out split)."""


from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pic_plugin.analysis.features import ImageAnalysis
from pic_plugin.core.geometry import (
    FREE,
    ORIGINAL,
    Box,
    parse_ratio,
)
from pic_plugin.model.finetune import UserExample, finetune
from pic_plugin.model.network import PicNet, prior_user
from pic_plugin.research.datasets import stable_fold
from pic_plugin.research.evaluation.baselines import centre_crop, nearest_ratio, user_mean_geometry
from pic_plugin.research.evaluation.metrics import Tally
from pic_plugin.research.evaluation.protocol import suggest_box

# --- a real user's own crops ----------------------------------------------------------------------------------


@dataclass
class UserCrop:
    """One of a user's crops with the photo's features (e.g. from the catalog)."""

    key: str  # content key: the held-out split is fixed per photo
    analysis: ImageAnalysis
    crop: Box
    weight: float = 1.0


def heldout_split(crops: Sequence[UserCrop], heldout_share: float = 0.3) -> tuple[list[UserCrop], list[UserCrop]]:
    """A fixed split of a user's crops by photo content: (training crops, held-out crops)."""
    folds = 10
    cut = max(1, round(heldout_share * folds))
    train = [c for c in crops if stable_fold("heldout:" + c.key, folds) >= cut]
    held = [c for c in crops if stable_fold("heldout:" + c.key, folds) < cut]
    return train, held


def evaluate_user(
    net: PicNet, crops: Sequence[UserCrop], attributes: dict[str, Any] | None = None, heldout_share: float = 0.3
) -> dict[str, Any]:
    """Fine-tune on the user's training crops, measure on their held-out crops (free setting).

    Only crops the user made or edited (weight >= 1) are held out: weaker ones (pic's own suggestions left in
    place, approximate crops, suggestions accepted on the review page) would measure pic against itself, so they
    only ever train."""
    own = [c for c in crops if c.weight >= 1.0]
    weak = [c for c in crops if 0 < c.weight < 1.0]
    train, held = heldout_split(own, heldout_share)
    train = [*train, *weak]
    if not held or not train:
        raise ValueError(
            f"need crops you made on both sides of the held-out split (have {len(train)} + {len(held)}; "
            f"{len(weak)} of pic's own or approximate crops only train)"
        )
    t0 = time.perf_counter()
    user = finetune(net, [UserExample(c.analysis, c.crop, c.weight) for c in train], attributes)
    seconds = time.perf_counter() - t0
    prior = prior_user(net, attributes)
    cache: dict = {}
    support = [(c.crop, c.analysis.size) for c in train]
    names = Counter(nearest_ratio(b, s) for b, s in support)
    fav = names.most_common(1)[0][0]
    fav_ratio = ORIGINAL if fav == "free" else parse_ratio(fav)
    tallies = {m: Tally() for m in ("centre", "user-mean", "prior", "pic")}
    for c in held:
        size = c.analysis.size
        faces = c.analysis.faces
        tallies["centre"].add(centre_crop(size, fav_ratio), c.crop, None, faces)
        tallies["user-mean"].add(user_mean_geometry(support, size, None), c.crop, None, faces)
        tallies["prior"].add(suggest_box(net, prior, c.analysis, FREE, cache), c.crop, None, faces)
        tallies["pic"].add(suggest_box(net, user, c.analysis, FREE, cache), c.crop, None, faces)
    return {
        "train_crops": len(train),
        "heldout_crops": len(held),
        "finetune_s": round(seconds, 3),
        "favourite_ratio": fav,
        "methods": {m: t.summary() for m, t in tallies.items()},
    }


