"""The PIC network, user models and the ``pic`` scorer (random weights: independent of the shipped file)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from analysis_fixtures import synthetic_analysis

from pic_plugin.analysis import candidate_features as cf
from pic_plugin.analysis.candidates import generate
from pic_plugin.analysis.suggest import suggest
from pic_plugin.core.geometry import FREE, Box, parse_ratio
from pic_plugin.imaging.faces import Face
from pic_plugin.library.catalog import Catalog
from pic_plugin.model import network as M


def test_attribute_tokens() -> None:
    ids = M.attribute_tokens({"ratio": "4:5", "framing": "Tight", "placement": "centered", "genre": "birds"})
    assert [M.VOCAB[i] for i in ids] == ["ratio=4:5", "framing=tight", "placement=centred"]
    assert M.unknown_attributes({"ratio": "4:5", "genre": "birds"}) == ["genre=birds"]
    assert M.attribute_tokens(None) == []


def test_latents(net: M.PicNet) -> None:
    z = net.attribute_latent([[], [0, 3]])
    assert z.shape == (2, M.Z_DIM)
    assert torch.all(z[0] == 0)
    support = torch.randn(3, 5, cf.GEOMETRY_DIM)
    mask = torch.tensor([[0.0] * 5, [1, 1, 0, 0, 0], [1.0] * 5])
    enc = net.crops_latent(support, mask)
    assert torch.all(enc[0] == 0)  # no crops: no move away from the prior
    # Padding does not count.
    again = net.crops_latent(torch.cat([support[1:2, :2], torch.randn(1, 3, cf.GEOMETRY_DIM)], 1), mask[1:2])
    assert torch.allclose(again, enc[1:2], atol=1e-6)


def test_user_model_round_trip() -> None:
    um = M.UserModel(
        np.arange(M.Z_DIM, dtype=np.float32),
        np.ones(cf.GEOMETRY_DIM, dtype=np.float32),
        {"ratio": "1:1"},
        k=7,
        prior="pic-x",
        metrics={"seconds": 0.5},
    )
    back = M.UserModel.from_bytes(um.to_bytes())
    assert np.allclose(back.z, um.z) and np.allclose(back.adapter, um.adapter)
    assert (back.attributes, back.k, back.prior) == ({"ratio": "1:1"}, 7, "pic-x")
    with pytest.raises(ValueError):
        M.UserModel.from_bytes(b'{"format": "other"}')


def test_scorer_scores_any_boxes_and_penalizes_face_cuts(net: M.PicNet) -> None:
    face = Face(Box(0.3, 0.3, 0.4, 0.45), 0.95)
    a = synthetic_analysis(faces=[face])
    scorer = M.PicScorer(net, M.prior_user(net))
    boxes = generate(a.size, FREE).boxes
    s = scorer.score(a, boxes)
    assert s.shape == (len(boxes),) and np.isfinite(s).all()
    pair = np.array([[0.2, 0.2, 0.8, 0.8], [0.35, 0.2, 0.95, 0.8]], dtype=np.float32)  # same size; 2nd cuts the face
    feats = cf.compute(cf.photo_context(a), pair)
    raw = M.score_features(net, cf.CandidateFeatures(feats.content, feats.geometry, feats.stats * 0), scorer.user)
    penalized = scorer.score(a, pair)
    # the generic prior also keeps the subject (the face counts as subject): the box that cuts it pays for both
    shortfall = np.maximum(0.0, M.SUBJECT_KEEP - feats.stats[:, cf.STAT_NAMES.index("keep")])
    assert shortfall[0] == 0 and shortfall[1] > 0
    assert penalized[0] == pytest.approx(raw[0], abs=1e-4)
    assert penalized[1] == pytest.approx(
        raw[1] - M.FACE_CUT_PENALTY * feats.stats[1, cf.STAT_NAMES.index("face_cut")]
        - M.SUBJECT_KEEP_PENALTY_FREE * shortfall[1], abs=1e-3
    )


def test_only_the_generic_prior_keeps_the_subject_by_rule(net: M.PicNet) -> None:
    """Somebody pic knows nothing about gets the whole subject; a user whose crops or profile say otherwise does not
    pay for cutting into it."""
    a = synthetic_analysis()  # subject: x 0.25-0.5
    boxes = np.array([[0.0, 0.0, 1.0, 1.0], [0.375, 0.0, 1.0, 1.0]], dtype=np.float32)
    feats = cf.compute(cf.photo_context(a), boxes)
    keep = feats.stats[:, cf.STAT_NAMES.index("keep")]
    assert keep[0] > 0.99 and keep[1] < 0.9  # the second box leaves out part of the subject
    nobody = M.prior_user(net)
    fitted = dataclasses.replace(nobody, k=10)
    told = M.prior_user(net, {"framing": "tight"})
    assert told.rule is not None
    raw = M.score_features(net, feats, nobody)
    shortfall = M.SUBJECT_KEEP - keep[1]
    for user, ratio, penalty in (
        (nobody, None, M.SUBJECT_KEEP_PENALTY_FREE * shortfall),  # not told: scored as free-form
        (nobody, FREE, M.SUBJECT_KEEP_PENALTY_FREE * shortfall),
        (nobody, parse_ratio("4:5"), M.SUBJECT_KEEP_PENALTY * shortfall),  # the shape may not hold the subject
        (fitted, FREE, 0.0),
        (told, FREE, 0.0),
    ):
        scores = M.PicScorer(net, user).score(a, boxes, ratio=ratio)
        base = M.score_features(net, feats, user)
        assert scores[1] - scores[0] == pytest.approx(base[1] - base[0] - penalty, abs=1e-3)
    assert M.SUBJECT_KEEP_PENALTY_FREE > M.SUBJECT_KEEP_PENALTY
    assert M.PicScorer(net, nobody).score(a, boxes)[1] < raw[1] - 1.0


def test_suggest_tells_the_scorer_the_ratio_asked(net: M.PicNet) -> None:
    """Every scoring pass of ``suggest`` (grid, coarse-to-fine, refinement, anchored) carries the request's ratio."""

    seen: list[object] = []

    class Spy(M.PicScorer):
        def score(self, analysis, boxes, user=None, ratio=None):  # type: ignore[no-untyped-def]
            seen.append(ratio)
            return super().score(analysis, boxes, user, ratio)

    a = synthetic_analysis()
    for asked in (FREE, parse_ratio("4:5")):
        seen.clear()
        suggest(a, Spy(net, M.prior_user(net)), asked)
        assert len(seen) >= 2 and all(r == asked for r in seen), seen


def test_user_latent_changes_the_suggestion(net: M.PicNet) -> None:
    a = synthetic_analysis()  # 640 x 480: the largest 1:1 crop keeps 75% of the frame
    area = cf.geometry_names().index("area")
    # A user who wants the largest / the smallest crop; the smallest is floored at MIN_CROP_AREA of the frame
    # unless the user's own crops go smaller (a birder cropping hard).
    for sign, smallest_own, check in (
        (50.0, 1.0, lambda x: x >= 0.7),
        (-50.0, 1.0, lambda x: M.MIN_CROP_AREA <= x < 0.15),
        (-50.0, 0.05, lambda x: x < M.MIN_CROP_AREA),
    ):
        user = M.prior_user(net)
        user.adapter = np.zeros(cf.GEOMETRY_DIM, dtype=np.float32)
        user.adapter[area] = sign
        user.metrics["min_crop_area"] = smallest_own
        crop = suggest(a, M.PicScorer(net, user), parse_ratio("1:1"), top_k=1).crop
        assert check(crop.area), (sign, smallest_own, crop)


def test_prior_file_round_trip(net: M.PicNet, tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "prior.pt"
    M.save_prior(net, path, {"version": "pic-test"})
    loaded, meta = M.load_prior_file(path)
    assert meta["version"] == "pic-test"
    a = synthetic_analysis()
    boxes = generate(a.size, parse_ratio("4:5")).boxes[:50]
    assert np.allclose(M.PicScorer(net).score(a, boxes), M.PicScorer(loaded).score(a, boxes), atol=1e-5)


def test_registry_loads_pic_for_a_user(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from pic_plugin.model import scorers

    assert scorers.DEFAULT == "pic" and "composition" in scorers.names()
    with Catalog(tmp_path / "c.db") as cat:
        cat.set_user_attributes("me", {"ratio": "1:1", "framing": "tight"})
        prior = scorers.load("pic")
        mine = scorers.load("pic", catalog=cat, user="me")
        assert prior.name == mine.name == "pic"
        assert not np.allclose(mine.user.z, prior.user.z)  # type: ignore[attr-defined]  # attributes moved z
        assert mine.version.startswith(prior.version + "+p")  # no fine-tuned version; the profile counts


class _TargetScorer:
    """Scores boxes by closeness to a target box (smooth over neighbouring boxes, like the model); counts boxes."""

    name = "target"
    version = "target-1"
    temperature = 0.05

    def __init__(self, target: Box, coarse_stride: int) -> None:
        self.target = np.asarray(list(target))
        self.coarse_stride = coarse_stride
        self.scored = 0

    def score(self, analysis, boxes: np.ndarray, user=None, ratio=None) -> np.ndarray:  # type: ignore[no-untyped-def]
        self.scored += len(boxes)
        return -10 * ((np.asarray(boxes, dtype=np.float64) - self.target) ** 2).sum(axis=1)  # one best box


@pytest.mark.parametrize("ratio", ["free", "4:5", "16:9"])
def test_coarse_to_fine_finds_what_the_full_search_finds(ratio: str) -> None:
    from pic_plugin.analysis.features import ImageAnalysis
    from pic_plugin.core.geometry import iou, parse_ratio

    analysis = ImageAnalysis((3000, 2000), np.zeros((16, 8, 12), np.float16), np.zeros((8, 12), np.float32), [])
    for target in (Box(0.13, 0.21, 0.71, 0.88), Box(0.4, 0.05, 0.97, 0.6), Box(0.0, 0.1, 0.5, 0.9)):
        full, coarse = _TargetScorer(target, 1), _TargetScorer(target, 3)
        a = suggest(analysis, full, parse_ratio(ratio))
        b = suggest(analysis, coarse, parse_ratio(ratio))
        # Crops as good as the full search's (within 0.01 in score), the suggestion
        # and each alternative; the suggestion itself in the same place.
        def value(box: Box, scorer: _TargetScorer = full) -> float:
            return float(scorer.score(analysis, np.array([list(box)]))[0])

        assert iou(a.crop, b.crop) > 0.95 and value(b.crop) >= value(a.crop) - 0.01
        assert len(a.alternatives) == len(b.alternatives) == 2
        assert all(value(y.crop) >= value(x.crop) - 0.01 for x, y in zip(a.alternatives, b.alternatives, strict=True))
        assert abs(a.score - b.score) < 0.1
        assert coarse.scored < 0.6 * full.scored


@pytest.mark.parametrize("size", [(3000, 100), (100, 3000)])
def test_a_ratio_that_barely_fits_still_gets_a_sizeable_crop(size: tuple[int, int], tmp_path) -> None:  # type: ignore[no-untyped-def]
    """On a 30:1 panorama no 4:5 crop reaches the usual size floor; pic (the shipped prior) still keeps at least
    half of the largest one, where it used to pick a sliver (24 x 30 pixels of a 3000 x 100 noise panorama)."""
    from PIL import Image

    from pic_plugin.core.geometry import largest_box, parse_ratio
    from pic_plugin.library.analyze import analyze_file

    path = tmp_path / "pano.jpg"
    pixels = (np.random.default_rng(0).random((size[1], size[0], 3)) * 255).astype(np.uint8)
    Image.fromarray(pixels).save(path)
    analysis = analyze_file(path).analysis
    scorer = M.PicScorer(M.load_prior()[0])
    for ratio in ("4:5", "1:1", "16:9"):
        wanted = parse_ratio(ratio)
        crop = suggest(analysis, scorer, wanted, top_k=1).crop
        bw, bh = largest_box(wanted.value_for(size), size)  # type: ignore[arg-type]
        assert crop.area >= 0.5 * bw * bh - 1e-3, (ratio, crop, bw * bh)


def test_the_version_without_loading_the_model_is_the_scorers_version(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """scorers.version (torch-free, for pic batch's unchanged check) == scorers.load(...).version, in every case."""
    import json

    from pic_plugin.model import scorers
    from pic_plugin.model.version import prior_version, write_info

    with Catalog(tmp_path / "c.db") as cat:
        cases = []
        cases.append(("nobody", None))
        cat.ensure_user("me")
        cases.append(("no model yet", "me"))
        net, meta = M.load_prior()
        fitted = M.prior_user(net, None, str(meta["version"]))
        cat.save_model("me", fitted.to_bytes(), {}, note="t")
        cases.append(("fitted to this prior", "me"))
        other = M.prior_user(net, None, "pic-older")
        cat.ensure_user("old")
        cat.save_model("old", other.to_bytes(), {}, note="t")
        cases.append(("fitted to another prior", "old"))
        cat.ensure_user("broken")
        cat.save_model("broken", b"not json", {}, note="t")
        cases.append(("unreadable model", "broken"))
        cat.set_user_attributes("told", {"ratio": "4:5", "framing": "tight"})
        cases.append(("a profile, no model", "told"))
        cat.save_model("told", M.prior_user(net, None, str(meta["version"])).to_bytes(), {}, note="t")
        cases.append(("a profile and a model", "told"))
        for label, user in cases:
            assert scorers.version("pic", catalog=cat, user=user) == scorers.load("pic", catalog=cat, user=user).version, label
        assert scorers.version("pic", catalog=cat, user="me").endswith("+u1")
        # Editing the profile changes the suggestions (latent, framing rule): the version says so.
        told = scorers.version("pic", catalog=cat, user="told")
        assert "+u1+p" in told
        cat.set_user_attributes("told", {"ratio": "1:1", "framing": "tight"})
        assert scorers.version("pic", catalog=cat, user="told") != told
        assert scorers.version("composition") == scorers.load("composition").version
        # How the scorer uses the weights is part of the version (an upgrade of pic redoes the suggestions), but a
        # user's model still belongs to the prior's weights alone: it stays in use.
        from pic_plugin.model import version as model_version

        base = scorers.version("pic")
        assert base == f"{meta['version']}.{model_version.SCORING_REVISION}"
        assert scorers.version("pic", catalog=cat, user="me") == base + "+u1"
        saved, model_version.SCORING_REVISION = model_version.SCORING_REVISION, "s-next"
        try:
            assert scorers.version("pic", catalog=cat, user="me") == f"{meta['version']}.s-next+u1"
        finally:
            model_version.SCORING_REVISION = saved
    # A weights file replaced without its info file is noticed: the version comes from the weights then.
    weights = tmp_path / "prior.pt"
    M.save_prior(net, weights, {"version": "pic-new"})
    assert json.loads((tmp_path / "prior.json").read_text())["version"] == "pic-new"
    assert prior_version(weights) == "pic-new"
    write_info(weights, "pic-stale")
    M.save_prior(net, tmp_path / "other.pt", {"version": "pic-newer"})
    (tmp_path / "other.pt").replace(weights)  # new weights, old info file
    assert prior_version(weights) == "pic-newer"


def test_an_unchanged_batch_does_not_load_the_model(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import subprocess
    import sys

    from conftest import jpeg_bytes, make_photo

    (tmp_path / "a.jpg").write_bytes(jpeg_bytes(make_photo(320, 240)))
    code = (
        "import sys; from pathlib import Path; from pic_plugin.library.batch import run_batch; from pic_plugin.library.options import BatchOptions;"
        "from pic_plugin.library.catalog import Catalog;"
        f"c = Catalog(Path({str(tmp_path / 'c.db')!r}));"
        f"s = run_batch([Path({str(tmp_path)!r})], BatchOptions(jobs=1, write=False), c);"
        "print(dict(s.counts), 'torch' in sys.modules)"
    )
    first = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    again = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert first.strip() == "{'done': 1} True" and again.strip() == "{'unchanged': 1} False"


def test_the_folded_scoring_path_equals_the_network() -> None:
    """score_features folds one user's first layers into one matrix; it must give the network's own scores."""
    net, _ = M.load_prior()
    a = synthetic_analysis()
    feats = cf.compute(cf.photo_context(a), generate(a.size, parse_ratio("free")).boxes)
    user = M.prior_user(net, {"ratio": "4:5", "framing": "tight"})
    user.adapter = np.random.default_rng(0).normal(size=user.adapter.shape).astype(np.float32) * 0.1
    with torch.no_grad():
        content, geometry = net.standardize(torch.from_numpy(feats.content), torch.from_numpy(feats.geometry))
        reference = net(content, geometry, torch.from_numpy(user.z), torch.from_numpy(user.adapter)).numpy()
    assert np.allclose(M.score_features(net, feats, user), reference, atol=1e-4)
