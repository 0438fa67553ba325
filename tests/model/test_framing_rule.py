"""The user's framing habit as an explicit rule: fitting it to crops, applying it, and the scorer's anchor."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from analysis_fixtures import synthetic_analysis

from pic_plugin.analysis import candidate_features as cf
from pic_plugin.analysis.suggest import suggest
from pic_plugin.core.geometry import FREE, Box, iou, parse_ratio
from pic_plugin.imaging.faces import Face
from pic_plugin.model import network as M
from pic_plugin.model.finetune import UserExample, finetune
from pic_plugin.model.framing_rule import GENERIC_RULE, FramingRule, RuleSample, fit_rule, rule_from_attributes
from pic_plugin.research.personas import Persona


def _photos(n: int, seed: int = 0) -> list[tuple[Box, tuple[int, int]]]:
    """Random subjects on landscape and portrait photos."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        size = (4000, 3000) if i % 3 else (3000, 4000)  # 4:3: a 3:2 habit is not the original ratio
        w, h = rng.uniform(0.1, 0.35, 2)
        x, y = rng.uniform(0.1, 0.9 - w), rng.uniform(0.1, 0.9 - h)
        out.append((Box(x, y, x + w, y + h), size))
    return out


def _samples(persona: Persona, n: int = 24, seed: int = 0) -> list[RuleSample]:
    return [RuleSample(tuple(s), size, persona.crop(s, size, f"p{i}")) for i, (s, size) in enumerate(_photos(n, seed))]


def _held_out_iou(rule: FramingRule, persona: Persona) -> float:
    test = _samples(persona, 20, seed=99)
    return float(np.mean([iou(rule.box(s.subject, s.size), s.crop) for s in test]))


def test_a_subject_framer_is_recovered() -> None:
    persona = Persona("p", ratio="4:5", follow_orientation=False, habit=1.0, margin=1.6, ax=1 / 3, ay=0.45, jitter=0.0)
    rule = fit_rule(_samples(persona))
    assert rule is not None
    assert (rule.kind, rule.ratio, rule.follow) == ("subject", "4:5", False)
    assert rule.sx == pytest.approx(1.6, rel=0.08) and rule.sx == rule.sy
    assert rule.ax == pytest.approx(1 / 3, abs=0.04) and rule.ay == pytest.approx(0.45, abs=0.04)
    assert rule.fit > 0.95 and rule.k == 24
    assert _held_out_iou(rule, persona) > 0.95  # new photos, not only the fitted ones
    assert "4:5" in rule.describe() and "left third" in rule.describe()


def test_noisy_crops_that_the_generic_framing_explains_get_the_generic_framing() -> None:
    """Crops that scatter around the generic framing (largest box of the ratio slid onto the subject): a fitted
    margin or placement would only fit the noise, so the rule keeps the generic numbers in the user's ratio."""
    g = GENERIC_RULE
    persona = Persona("p", ratio="16:9", follow_orientation=False, habit=1.0, margin=g.sx, ax=g.ax, ay=g.ay, jitter=0.03)
    rule = fit_rule(_samples(persona, 6))  # without the generic option: margin 1.90, placement (0.45, 0.475)
    assert rule is not None and (rule.kind, rule.ratio) == ("subject", "16:9")
    assert (rule.sx, rule.ax, rule.ay) == (g.sx, g.ax, g.ay)


def test_a_ratio_that_turns_with_the_photo() -> None:
    persona = Persona("p", ratio="3:2", follow_orientation=True, habit=1.0, margin=2.0, jitter=0.01)
    rule = fit_rule(_samples(persona))
    assert rule is not None and (rule.ratio, rule.follow) == ("3:2", True)
    portrait = rule.box((0.4, 0.4, 0.6, 0.6), (4000, 6000))
    assert portrait.pixel_aspect((4000, 6000)) == pytest.approx(2 / 3, rel=0.01)


def test_a_different_habit_for_portrait_photos_gets_its_own_rule() -> None:
    """4:5 with room on portrait photos, 16:9 tight on landscapes (one Persona cannot do that; two can)."""
    tall = Persona("t", ratio="4:5", follow_orientation=False, habit=1.0, margin=1.8, jitter=0.01)
    wide = Persona("w", ratio="16:9", follow_orientation=False, habit=1.0, margin=1.3, ay=0.45, jitter=0.01)
    samples = [
        RuleSample(tuple(s), size, (tall if size[1] > size[0] else wide).crop(s, size, f"p{i}"))
        for i, (s, size) in enumerate(_photos(30))
    ]
    rule = fit_rule(samples)
    assert rule is not None and rule.portrait is not None
    assert (rule.ratio, rule.portrait.ratio) == ("16:9", "4:5") and rule.k == 30
    assert rule.box((0.4, 0.4, 0.6, 0.6), (3000, 4000)).pixel_aspect((3000, 4000)) == pytest.approx(0.8, rel=0.01)
    assert rule.box((0.4, 0.4, 0.6, 0.6), (4000, 3000)).pixel_aspect((4000, 3000)) == pytest.approx(16 / 9, rel=0.01)
    assert "landscapes: 16:9" in rule.describe() and "portraits: 4:5" in rule.describe()
    back = FramingRule.from_dict(rule.to_dict())
    assert back.to_dict() == rule.to_dict() and back.portrait is not None
    # One habit for both (a ratio that turns with the photo): one rule.
    same = fit_rule(_samples(Persona("s", ratio="3:2", habit=1.0, margin=1.6, jitter=0.01), 30))
    assert same is not None and same.portrait is None


def test_a_frame_trimmer_is_recovered() -> None:
    persona = Persona("p", ratio="original", kind="frame", frame_scale=0.85, ax=0.5, ay=0.6, habit=1.0, jitter=0.0)
    rule = fit_rule(_samples(persona))
    assert rule is not None and rule.kind == "frame"
    assert rule.sx == pytest.approx(0.85, abs=0.03)
    assert _held_out_iou(rule, persona) > 0.95
    assert "keeps 85% x 85% of the frame, towards the bottom" in rule.describe()


def test_a_free_form_cropper_gets_a_free_form_rule() -> None:
    """No fixed ratio: the subject with 1.3x room across and 2x room up and down, whatever the photo."""
    samples = []
    for s, size in _photos(24):
        cx, cy = s.center
        bw, bh = min(1.0, s.width * 1.3), min(1.0, s.height * 2.0)
        crop = Box(cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2).clamped()
        samples.append(RuleSample(tuple(s), size, crop))
    rule = fit_rule(samples)
    assert rule is not None and (rule.kind, rule.ratio) == ("subject", "free")
    assert rule.sx == pytest.approx(1.3, rel=0.1) and rule.sy == pytest.approx(2.0, rel=0.1)
    # Asked for a fixed ratio, the free-form habit keeps its area and centre in that ratio.
    box = rule.box((0.4, 0.3, 0.6, 0.5), (6000, 4000), parse_ratio("1:1"))
    assert box.pixel_aspect((6000, 4000)) == pytest.approx(1.0, rel=0.01)


def test_a_requested_ratio_overrides_the_rules_own() -> None:
    rule = FramingRule("subject", "4:5", False, 1.6, 1.6, 0.5, 0.5, fit=0.9, k=10)
    size = (6000, 4000)
    assert rule.box((0.4, 0.4, 0.6, 0.6), size).pixel_aspect(size) == pytest.approx(0.8, rel=0.01)
    assert rule.box((0.4, 0.4, 0.6, 0.6), size, parse_ratio("16:9")).pixel_aspect(size) == pytest.approx(16 / 9, rel=0.01)
    assert rule.box((0.4, 0.4, 0.6, 0.6), size, FREE).pixel_aspect(size) == pytest.approx(0.8, rel=0.01)


def test_weights_and_empty_input() -> None:
    assert fit_rule([]) is None
    persona = Persona("p", ratio="1:1", habit=1.0, margin=1.4, jitter=0.0)
    good = _samples(persona, 12)
    ignored = [RuleSample(s.subject, s.size, Box(0.0, 0.0, 0.2, 0.9), weight=0.0) for s in _samples(persona, 12, 5)]
    rule = fit_rule(good + ignored)
    assert rule is not None and rule.k == 12 and rule.ratio == "1:1"


def test_serialization_and_user_models_without_a_rule() -> None:
    rule = FramingRule("frame", "3:2", True, 0.9, 0.9, 0.5, 0.55, fit=0.91, k=12)
    assert FramingRule.from_dict(rule.to_dict()) == rule
    with pytest.raises(ValueError):
        FramingRule.from_dict({"kind": "nonsense", "ratio": "4:5", "sx": 1, "sy": 1, "ax": 0.5, "ay": 0.5})
    um = M.UserModel(np.zeros(M.Z_DIM, dtype=np.float32), np.zeros(cf.GEOMETRY_DIM, dtype=np.float32), k=12, rule=rule)
    assert M.UserModel.from_bytes(um.to_bytes()).rule == rule
    # A version stored before rules existed loads with no rule.
    old = M.UserModel(np.zeros(M.Z_DIM, dtype=np.float32), np.zeros(cf.GEOMETRY_DIM, dtype=np.float32))
    assert M.UserModel.from_bytes(old.to_bytes().replace(b', "rule": null', b"")).rule is None


def test_the_users_rule_steers_the_suggestion(net: M.PicNet) -> None:
    a = synthetic_analysis(subject_box=(0.25, 0.25, 0.5, 0.75))
    user = M.prior_user(net)
    scorer = M.PicScorer(net, user)
    assert scorer.anchor(a, FREE) is None  # no crops, no profile, no ratio: the prior alone
    generic = scorer.anchor(a, parse_ratio("4:5"))  # a ratio asked by nobody in particular: the generic rule
    assert generic is not None and generic.weight == M.GENERIC_RULE_WEIGHT
    assert generic.box.pixel_aspect(a.size) == pytest.approx(0.8, rel=0.01)
    user.rule = FramingRule("subject", "1:1", True, 1.3, 1.3, 0.5, 0.5, fit=0.95, k=20)
    anchor = scorer.anchor(a, FREE)
    assert anchor is not None and anchor.weight == pytest.approx(M.RULE_WEIGHT * 20 / 22)
    crop = suggest(a, scorer, FREE, top_k=1).crop
    assert iou(crop, anchor.box) > 0.9, (crop, anchor.box)
    # Asked for 16:9, the rule frames the same subject in 16:9.
    wide = suggest(a, scorer, parse_ratio("16:9"), top_k=1).crop
    assert wide.pixel_aspect(a.size) == pytest.approx(16 / 9, rel=0.02)
    assert iou(wide, scorer.anchor(a, parse_ratio("16:9")).box) > 0.9  # type: ignore[union-attr]


def test_a_rule_never_buys_a_cut_face(net: M.PicNet) -> None:
    """The rule's own crop would cut a face at its left edge: the suggestion keeps the face whole instead."""
    rule = FramingRule("subject", "1:1", True, 1.1, 1.1, 0.5, 0.5, fit=0.95, k=50)
    subject = (0.4, 0.3, 0.6, 0.7)
    a = synthetic_analysis(subject_box=subject)
    user = M.prior_user(net)
    user.rule = rule
    scorer = M.PicScorer(net, user)
    rule_box = scorer.anchor(a, FREE).box  # type: ignore[union-attr]
    face = Face(Box(rule_box.left - 0.03, 0.35, rule_box.left + 0.03, 0.45), 0.95)
    a.faces.append(face)
    crop = suggest(a, scorer, FREE, top_k=1).crop
    assert M.face_risk(a, np.asarray([tuple(crop)])).item() == 0, crop


def test_a_profile_describes_a_rule() -> None:
    rule = rule_from_attributes({"ratio": "4:5", "framing": "tight", "placement": "high-left", "genre": "birds"})
    assert rule is not None and rule.source == "profile"
    assert (rule.kind, rule.ratio, rule.follow, rule.sx, rule.ax, rule.ay) == ("subject", "4:5", True, 1.3, 0.36, 0.4)
    assert rule_from_attributes({"ratio": "4:5", "orientation": "fixed"}).follow is False  # type: ignore[union-attr]
    assert rule_from_attributes({"ratio": "7:3"}).ratio == "original"  # type: ignore[union-attr]
    assert rule_from_attributes({"genre": "birds"}) is None and rule_from_attributes(None) is None
    assert "from your profile" in rule.describe()


def test_the_profile_rule_holds_until_there_are_enough_crops(net: M.PicNet) -> None:
    attributes = {"ratio": "1:1", "framing": "loose"}
    assert M.prior_user(net, attributes).rule == rule_from_attributes(attributes)
    a = synthetic_analysis()
    crop = Box(0.1, 0.1, 0.6, 0.9)
    few = finetune(net, [UserExample(a, crop)] * (M.PROFILE_RULE_UNTIL - 1), attributes)
    assert few.rule is not None and few.rule.source == "profile"
    many = finetune(net, [UserExample(a, crop)] * M.PROFILE_RULE_UNTIL, attributes)
    assert many.rule is not None and many.rule.source == "crops" and many.rule.k == M.PROFILE_RULE_UNTIL
    assert iou(many.rule.box(M.PicScorer(net, many).context(a).subject.box, a.size), crop) > 0.8


@pytest.mark.parametrize("n_crops", [M.PROFILE_RULE_UNTIL - 2, M.PROFILE_RULE_UNTIL + 1])
def test_the_same_rule_wins_after_fine_tuning_a_profile_edit_and_a_new_prior(net: M.PicNet, tmp_path, n_crops) -> None:  # type: ignore[no-untyped-def]
    """Profile rule vs crops' rule is decided by ``active_rule`` alone: fitting with a profile, editing the profile
    after fitting, and a model that belongs to other shared weights all give the rule that fitting with the
    current profile gives. A profile's rule that covered a few crops steps aside when the profile drops it."""
    from pic_plugin.library.catalog import Catalog
    from pic_plugin.model.personalize import active_user_model

    a = synthetic_analysis()
    examples = [UserExample(a, Box(0.1, 0.1, 0.6, 0.9))] * n_crops
    told, untold = {"ratio": "1:1", "framing": "loose"}, {"genre": "birds"}
    with Catalog(tmp_path / "c.db") as cat:
        fitted = finetune(net, examples, told, prior="this")
        assert fitted.crops_rule is not None and fitted.crops_rule.k == n_crops
        cat.set_user_attributes("me", told)
        cat.save_model("me", fitted.to_bytes(), {}, note="t")
        cat.set_user_attributes("other", told)
        cat.save_model("other", dataclasses.replace(fitted, prior="older").to_bytes(), {}, note="t")
        for attributes in (told, untold, told):
            expected = finetune(net, examples, attributes, prior="this").rule
            assert expected == M.active_rule(fitted.crops_rule, attributes)
            stored = FramingRule.from_dict(expected.to_dict()) if expected is not None else None  # rounded
            for user in ("me", "other"):
                cat.set_user_attributes(user, attributes)
                model, _ = active_user_model(cat, user, net, "this")
                assert model.rule == stored, (user, attributes)
        few = n_crops < M.PROFILE_RULE_UNTIL
        assert M.active_rule(fitted.crops_rule, told).source == ("profile" if few else "crops")  # type: ignore[union-attr]
        assert M.active_rule(fitted.crops_rule, untold) == fitted.crops_rule


def test_a_model_stored_before_the_crops_rule_was_kept_still_loads() -> None:
    rule = FramingRule("subject", "4:5", True, 1.4, 1.4, 0.5, 0.45, fit=0.9, k=8)
    zeros = np.zeros(M.Z_DIM, dtype=np.float32), np.zeros(cf.GEOMETRY_DIM, dtype=np.float32)
    for active, kept in ((rule, rule), (rule_from_attributes({"ratio": "1:1"}), None)):
        old = M.UserModel(*zeros, k=8, rule=active).to_bytes().replace(b', "crops_rule": null', b"")
        assert b"crops_rule" not in old
        back = M.UserModel.from_bytes(old)
        assert back.rule == active and back.crops_rule == kept


def test_the_rule_scale_counts_for_the_crops_rule_only_and_is_stored(net: M.PicNet) -> None:
    rule = FramingRule("frame", "original", False, 0.85, 0.85, 0.5, 0.6, fit=0.9, k=10)
    user = dataclasses.replace(M.prior_user(net), k=10, rule=rule, crops_rule=rule)
    user.rule_scale = 3.0
    a = synthetic_analysis()
    scorer = M.PicScorer(net, user)
    anchor = scorer.anchor(a, FREE)
    assert anchor is not None and anchor.weight == pytest.approx(3.0 * M.rule_weight(rule))
    user.rule = dataclasses.replace(rule, source="profile")  # a profile's rule: the scale was not chosen for it
    assert scorer.anchor(a, FREE).weight == pytest.approx(M.PROFILE_RULE_WEIGHT)  # type: ignore[union-attr]
    back = M.UserModel.from_bytes(user.to_bytes())
    assert back.rule_scale == 3.0
    old = json.loads(user.to_bytes())
    del old["rule_scale"]  # a model stored before the hedge
    assert M.UserModel.from_bytes(json.dumps(old).encode()).rule_scale == 1.0


def test_fine_tuning_chooses_the_rule_scale_that_reproduces_the_users_crops(net: M.PicNet) -> None:
    from pic_plugin.model import finetune as FT

    persona = Persona("trimmer", ratio="original", kind="frame", frame_scale=0.8, ax=0.5, ay=0.62, habit=1.0, jitter=0.0)
    examples = []
    for i, (s, _) in enumerate(_photos(12, seed=5)):
        a = synthetic_analysis(subject_box=tuple(s))
        examples.append(UserExample(a, persona.crop(s, a.size, f"p{i}")))
    model = finetune(net, examples)
    assert model.rule_scale in FT.RULE_SCALES and model.metrics["rule_scale"] == model.rule_scale

    def mean_iou(scale: float) -> float:
        scorer = M.PicScorer(net, dataclasses.replace(model, rule_scale=scale))
        return float(np.mean([iou(suggest(ex.analysis, scorer, FREE, top_k=1).crop, ex.crop) for ex in examples]))

    chosen, one = mean_iou(model.rule_scale), mean_iou(1.0)
    assert chosen >= one - 1e-9  # never a scale that frames the user's own crops worse than the plain weight
    if model.rule_scale != 1.0:
        assert chosen > one + FT.RULE_SCALE_GAIN
    assert FT.choose_rule_scale(net, model, examples[:FT.RULE_SCALE_MIN_CROPS - 1]) == 1.0  # too few crops to choose from
