"""Real training, fine-tuning and evaluation on the shared photos (slow: minutes on 2 cores).

Features are computed once per session into a temporary cache (or ``$PIC_FEATURE_CACHE`` when set).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from pic_plugin.core.geometry import FREE, iou
from pic_plugin.model import finetune as FT
from pic_plugin.model.network import PicNet, load_prior, prior_user
from pic_plugin.research import evaluation as ev
from pic_plugin.research import prior_training as T
from pic_plugin.research.datasets import subject_photos
from pic_plugin.research.feature_store import FeatureStore
from pic_plugin.research.personas import check_personas, design_family

pytestmark = [pytest.mark.slow, pytest.mark.shared]


@pytest.fixture(scope="session")
def store(tmp_path_factory: pytest.TempPathFactory) -> FeatureStore:
    env = os.environ.get("PIC_FEATURE_CACHE")
    return FeatureStore(Path(env) if env else tmp_path_factory.mktemp("features"))


@pytest.fixture(scope="session")
def test_photos(shared_data: Path, store: FeatureStore) -> list[ev.EvalPhoto]:
    return ev.eval_photos([p for p in subject_photos() if p.split == "test"][:60], store)


def test_personalization_beats_the_prior_on_real_photos(test_photos: list[ev.EvalPhoto]) -> None:
    net, _ = load_prior()
    prior = prior_user(net)
    gains = {}
    for persona in check_personas():
        if persona.name not in ("widescreen", "tight-square", "portrait-high", "very-loose"):
            continue
        crops = [persona.crop(p.photo.subject_box, p.size, p.key) for p in test_photos]
        user = FT.finetune(
            net, [FT.UserExample(p.analysis, c) for p, c in zip(test_photos[:10], crops[:10], strict=True)]
        )
        cache: dict = {}
        mine, base = [], []
        for p, ref in zip(test_photos[20:], crops[20:], strict=True):
            mine.append(iou(ev.suggest_box(net, user, p.analysis, FREE, cache), ref))
            base.append(iou(ev.suggest_box(net, prior, p.analysis, FREE, cache), ref))
        gains[persona.name] = float(np.mean(mine) - np.mean(base))
    assert np.mean(list(gains.values())) > 0.05, gains
    assert min(gains.values()) > -0.02, gains


def test_finetune_on_50_crops(test_photos: list[ev.EvalPhoto]) -> None:
    """k = 50 fits and lowers the support loss. Its time (target < 10 s) is measured by scripts/evaluate.py and
    reported in the README, not asserted here: a loaded CI machine is no stopwatch."""
    net, _ = load_prior()
    persona = design_family(1, seed=31)[0]
    examples = [FT.UserExample(p.analysis, persona.crop(p.photo.subject_box, p.size, p.key)) for p in test_photos[:50]]
    user = FT.finetune(net, examples)
    assert user.k == 50
    assert user.metrics["support_loss"] < user.metrics["support_loss_before"]


def test_protocol_on_a_few_users(test_photos: list[ev.EvalPhoto]) -> None:
    net, _ = load_prior()
    result = ev.run_protocol(
        net, test_photos[:30], design_family(2, seed=77), ks=(0, 5), baselines=("centre", "user-mean")
    )
    for setting in ("ratio", "free"):
        table = result.tables[setting]
        assert set(table) >= {"centre", "user-mean", "prior", "prior+attributes", "pic"}
        assert set(table["pic"]) == {0, 5} and set(table["user-mean"]) == {5}
        for by_k in table.values():
            for m in by_k.values():
                assert 0.0 <= m["iou"] <= 1.0 and m["n"] == 2 * 15
    # The generic prior keeps the subject when it is free to choose the ratio.
    assert result.tables["free"]["prior"][0]["retention"] >= 0.8
    assert 0.3 < result.reference["pairwise_iou"] < 1.0


def test_short_prior_training_on_real_photos(shared_data: Path, store: FeatureStore) -> None:
    photos = [p for p in subject_photos() if p.split == "train"][:16]
    items = [T.photo_item(p, store, flip) for p in photos for flip in (False, True)]
    views = T.view_pairs(T.well_composed_paths()[:6], store, windows=8)
    cfg = T.PriorConfig(
        steps=80, batch=8, top=32, random_candidates=96, design_personas=40, broad_personas=40, log_every=1000
    )
    net, report = T.train_prior(items, views, cfg, log=lambda s: None)
    assert report["history"][-1]["vfn"] < 1.0  # the content head learned to prefer the photographers' frames
    personas = T.training_personas(cfg)
    sampler = T.EpisodeSampler(items, T.persona_crops(personas, items), cfg, np.random.default_rng(7))
    batch = T.make_batch(sampler, personas)
    torch.manual_seed(3)
    fresh = PicNet()
    T.set_standardization(fresh, items)
    with torch.no_grad():
        assert T.episode_loss(net, batch, cfg.top)[0] < T.episode_loss(fresh, batch, cfg.top)[0] - 0.05


def test_out_of_fold_subject_maps(shared_data: Path) -> None:
    photos = [p for p in subject_photos() if p.split == "train"][:8]
    maps = T.out_of_fold_subject_maps(photos, folds=2, epochs=1, log=lambda s: None)
    assert set(maps) == {(str(p.image), f) for p in photos for f in (False, True)}
    for m in maps.values():
        assert m.ndim == 2 and m.min() >= 0.0 and m.max() <= 1.0


def test_gaicd_metrics_of_the_scorers(shared_data: Path, store: FeatureStore) -> None:
    from pic_plugin.research.evaluation.report import gaicd_report

    net, _ = load_prior()
    report = gaicd_report(store, net)
    assert set(report) == {"composition", "pic prior"}
    for m in report.values():
        assert m["images"] == 2
        assert all(0.0 <= m[k] <= 1.0 for k in ("acc1/5", "acc4/5", "acc1/10", "acc4/10"))
        assert -1.0 <= m["srcc"] <= 1.0
