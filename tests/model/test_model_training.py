"""Prior training and fine-tuning on a few generated photos (fast: a handful of steps)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import make_photo
from pic_plugin.core.geometry import Box
from pic_plugin.model import finetune as FT
from pic_plugin.model.network import PicNet
from pic_plugin.research import prior_training as T
from pic_plugin.research.datasets import SubjectPhoto
from pic_plugin.research.feature_store import FeatureStore


def test_soft_listwise_prefers_the_right_order() -> None:
    ious = torch.tensor([[0.9, 0.5, 0.1]])
    good = FT.soft_listwise(torch.tensor([[3.0, 1.0, -1.0]]), ious)
    bad = FT.soft_listwise(torch.tensor([[-1.0, 1.0, 3.0]]), ious)
    assert good.item() < bad.item()
    masked = FT.soft_listwise(torch.tensor([[3.0, 1.0, 100.0]]), ious, torch.tensor([[1.0, 1.0, 0.0]]))
    assert masked.item() < 0.5  # the masked candidate neither competes nor counts


def test_pairwise_loss() -> None:
    ious = torch.tensor([[0.9, 0.8, 0.2, 0.1]])
    assert T.pairwise_loss(torch.tensor([[9.0, 9.0, 0.0, 0.0]]), ious, top=2).item() < 0.01
    assert T.pairwise_loss(torch.tensor([[0.0, 0.0, 9.0, 9.0]]), ious, top=2).item() > 5


def test_box_ious_and_flip() -> None:
    boxes = np.array([[0, 0, 0.5, 0.5], [0.5, 0.5, 1, 1]], dtype=np.float32)
    assert T.box_ious(boxes, np.array([0, 0, 0.5, 0.5])).tolist() == [1.0, 0.0]
    assert T.flip_box(Box(0.1, 0.2, 0.3, 0.4)) == pytest.approx(Box(0.7, 0.2, 0.9, 0.4))


@pytest.fixture(scope="module")
def tiny_items(tmp_path_factory: pytest.TempPathFactory) -> list[T.PhotoItem]:
    d = tmp_path_factory.mktemp("tiny")
    store = FeatureStore(d / "cache")
    items = []
    for i in range(6):
        cx, cy = 0.3 + 0.08 * i, 0.4 + 0.03 * i
        path = d / f"p{i}.jpg"
        make_photo(480, 320, seed=i, subject=(cx, cy)).save(path, quality=90)
        r = 0.15 * 320  # the blob's sigma in pixels
        subject = Box(cx - 2 * r / 480, cy - 2 * r / 320, cx + 2 * r / 480, cy + 2 * r / 320).clamped()
        photo = SubjectPhoto(path, path, (480, 320), subject, 0.2, f"g{i}")
        items += [T.photo_item(photo, store, flip) for flip in (False, True)]
    return items


def tiny_config(**kw) -> T.PriorConfig:  # type: ignore[no-untyped-def]
    base = dict(
        steps=60,
        batch=6,
        queries=2,
        top=16,
        random_candidates=48,
        design_personas=20,
        broad_personas=20,
        log_every=1000,
        lr=5e-3,
    )
    return T.PriorConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def tiny_prior(tiny_items: list[T.PhotoItem]) -> tuple[PicNet, dict]:
    return T.train_prior(tiny_items, None, tiny_config(), log=lambda s: None)


def test_prior_training_lowers_the_episode_loss(tiny_items: list[T.PhotoItem], tiny_prior: tuple[PicNet, dict]) -> None:
    cfg = tiny_config()
    net, report = tiny_prior
    assert report["history"] and report["personas"] == 40
    # The same fixed episodes, scored by an untrained network with the same standardization and by the trained one.
    personas = T.training_personas(cfg)
    sampler = T.EpisodeSampler(tiny_items, T.persona_crops(personas, tiny_items), cfg, np.random.default_rng(123))
    batch = T.make_batch(sampler, personas)
    torch.manual_seed(1)
    fresh = PicNet()
    T.set_standardization(fresh, tiny_items)
    with torch.no_grad():
        before = T.episode_loss(fresh, batch, cfg.top)[0].item()
        after = T.episode_loss(net, batch, cfg.top)[0].item()
    assert after < before - 0.05, (before, after)


def test_finetune_fits_the_users_crops(tiny_items: list[T.PhotoItem], tiny_prior: tuple[PicNet, dict]) -> None:
    net, _ = tiny_prior
    k0 = FT.finetune(net, [], {"ratio": "1:1"})
    assert k0.k == 0 and np.allclose(k0.z, net.attribute_latent([[T.attribute_tokens({"ratio": "1:1"})[0]]])[0])
    assert np.all(k0.adapter == 0)
    # A user who always keeps the top-left quarter of the frame (not what the prior does).
    examples = [FT.UserExample(it.analysis, Box(0.0, 0.0, 0.5, 0.5)) for it in tiny_items]
    user = FT.finetune(net, examples, config=FT.FinetuneConfig(steps=60))
    assert user.k == len(tiny_items)
    assert user.metrics["support_loss"] < user.metrics["support_loss_before"] - 0.1
    assert np.abs(user.adapter).sum() > 0


@pytest.mark.shared
def test_gaicd_scored_crops_train_the_generic_score(shared_data, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from pic_plugin.research.datasets import load_gaicd
    from pic_plugin.research.evaluation import gaic_metrics

    sets = [s for s in load_gaicd(shared_data / "crop-annotations" / "GAICD").values() if s.image is not None]
    items = T.scored_items(sets, FeatureStore(tmp_path / "cache"))
    assert [len(i.scores) for i in items] == [87, 90]
    torch.manual_seed(0)
    net = PicNet()
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    rng = np.random.default_rng(0)

    def srcc() -> float:
        with torch.no_grad():
            out = []
            for it in items:
                c, g = net.standardize(it.content, it.geometry)
                out.append(gaic_metrics(net(c, g, torch.zeros(net.z_dim)).numpy(), it.scores.numpy())["srcc"])
            return float(np.mean(out))

    before = srcc()
    for _ in range(150):
        loss = T.scored_loss(net, items, rng)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert srcc() > max(before, 0.0) + 0.3  # it can fit the raters' ranking of these crops


@pytest.mark.shared
def test_real_users_from_the_per_user_csv_join_prior_training(shared_data, tmp_path, tiny_items) -> None:  # type: ignore[no-untyped-def]
    from pic_plugin.research.datasets import load_pic_user_csv

    csv_file = shared_data / "crop-annotations" / "PIC-per-user" / "test" / "10" / "train" / "A116FDKV1G0QU8_train.csv"
    images = tmp_path / "images"
    images.mkdir()
    for i, row in enumerate(load_pic_user_csv(csv_file)):  # stand-ins for the paper's images (not reachable here)
        w = int(max(b[2] for b in row.boxes))
        h = int(max(b[3] for b in row.boxes))
        make_photo(w, h, seed=i).save(images / row.name, quality=85)
    tasks = T.user_tasks_from_csv([csv_file], images, FeatureStore(tmp_path / "cache"), log=lambda s: None)
    assert len(tasks) == 1 and tasks[0].name == "A116FDKV1G0QU8" and len(tasks[0].items) == 10
    assert np.all((tasks[0].crops >= 0) & (tasks[0].crops <= 1))
    cfg = tiny_config(steps=10, real_user_rate=1.0)
    net, report = T.train_prior(tiny_items, None, cfg, log=lambda s: None, user_tasks=tasks)
    assert np.isfinite(report["history"][-1]["listwise"])
