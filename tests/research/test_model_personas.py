"""The simulated users (DESIGN section 6): their crops follow their stated habits."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from pic_plugin.core.geometry import Box, contains_fraction, iou
from pic_plugin.research.personas import (
    Persona,
    broad_family,
    check_personas,
    design_family,
    pairwise_agreement,
    placement_name,
    tuning_personas,
)

SIZE = (600, 400)
SUBJECT = Box(0.45, 0.4, 0.55, 0.6)  # small, centred: no clamping for moderate margins


def clean(p: Persona) -> Persona:
    return dataclasses.replace(p, jitter=0.0, habit=1.0)


@pytest.mark.parametrize("ratio", ["1:1", "4:5", "3:2", "16:9"])
def test_crop_has_the_favourite_ratio_and_places_the_subject(ratio: str) -> None:
    p = clean(Persona("p", ratio=ratio, follow_orientation=False, margin=1.5, ax=0.4, ay=0.45))
    c = p.crop(SUBJECT, SIZE, "photo")
    w, h = SIZE
    num, den = map(float, ratio.split(":"))
    assert c.width * w / (c.height * h) == pytest.approx(num / den, rel=1e-6)
    # The subject's centre lands at (ax, ay) of the crop and the subject scaled by m fits inside.
    assert (SUBJECT.center[0] - c.left) / c.width == pytest.approx(0.4, abs=1e-6)
    assert (SUBJECT.center[1] - c.top) / c.height == pytest.approx(0.45, abs=1e-6)
    cx, cy = SUBJECT.center
    grown = Box(
        cx - 0.75 * SUBJECT.width, cy - 0.75 * SUBJECT.height, cx + 0.75 * SUBJECT.width, cy + 0.75 * SUBJECT.height
    )
    assert contains_fraction(c, grown) == pytest.approx(1.0, abs=1e-6)
    # ...and tightly: one axis has no spare room.
    assert min(
        c.width * 2 * min(0.4, 0.6) / (1.5 * SUBJECT.width), c.height * 2 * min(0.45, 0.55) / (1.5 * SUBJECT.height)
    ) == pytest.approx(1.0, rel=1e-6)


def test_larger_margin_means_looser_crop() -> None:
    tight = clean(Persona("t", margin=1.2)).crop(SUBJECT, SIZE, "x")
    loose = clean(Persona("l", margin=2.4)).crop(SUBJECT, SIZE, "x")
    assert loose.area > 3 * tight.area


def test_clamped_to_frame_with_largest_box_of_ratio() -> None:
    big = Box(0.05, 0.05, 0.95, 0.95)
    c = clean(Persona("p", ratio="1:1", margin=2.5)).crop(big, SIZE, "x")
    assert c.is_valid()
    assert c.height == pytest.approx(1.0)
    assert c.width * SIZE[0] == pytest.approx(c.height * SIZE[1])


def test_follow_orientation_turns_the_ratio() -> None:
    follow = clean(Persona("f", ratio="3:2", follow_orientation=True))
    fixed = clean(Persona("x", ratio="3:2", follow_orientation=False))
    portrait = (400, 600)
    assert follow.requested_ratio(portrait).name == "2:3"
    assert fixed.requested_ratio(portrait).name == "3:2"
    assert follow.requested_ratio(SIZE).name == "3:2"
    c = follow.crop(SUBJECT, portrait, "x")
    assert c.width * 400 / (c.height * 600) == pytest.approx(2 / 3, rel=1e-6)


def test_crops_are_deterministic_and_jitter_and_habit_act() -> None:
    p = Persona("p", ratio="1:1", habit=0.5, jitter=0.02, margin=1.2, seed=3)
    subject = Box(0.35, 0.3, 0.65, 0.7)
    a = [p.crop(subject, SIZE, f"photo{i}") for i in range(200)]
    b = [p.crop(subject, SIZE, f"photo{i}") for i in range(200)]
    assert a == b
    aspects = np.array([c.width * SIZE[0] / (c.height * SIZE[1]) for c in a])
    # About half square, half the original 3:2 (jitter blurs both a little).
    near_square = np.mean(np.abs(np.log(aspects)) < 0.2)  # log(3:2) = 0.41
    assert 0.35 < near_square < 0.65
    assert len({c.left for c in a}) > 100  # jittered


def test_frame_persona_ignores_the_subject() -> None:
    p = clean(Persona("e", kind="frame", frame_scale=0.8, ax=0.5, ay=0.5))
    a = p.crop(Box(0.0, 0.0, 0.2, 0.2), SIZE, "x")
    b = p.crop(Box(0.7, 0.7, 0.9, 0.9), SIZE, "x")
    assert iou(a, b) == pytest.approx(1.0)
    assert a.width == pytest.approx(0.8)


def test_design_family_ranges_and_attributes() -> None:
    fam = design_family(200, seed=5)
    assert all(1.15 <= p.margin <= 2.5 and 0.3 <= p.ax <= 0.7 and 0.35 <= p.ay <= 0.6 for p in fam)
    assert all(p.habit == 0.9 and p.jitter == 0.02 for p in fam)
    assert len({p.ratio for p in fam}) >= 5
    attrs = fam[0].attributes()
    assert set(attrs) == {"ratio", "orientation", "framing", "placement"}
    assert design_family(3, seed=5) == fam[:3]


def test_broad_family_is_wider_than_the_design_family() -> None:
    fam = broad_family(400)
    margins = [p.margin for p in fam]
    assert min(margins) < 1.15 and max(margins) > 2.5
    assert any(p.kind == "frame" for p in fam)
    assert {"2:1", "9:16"} <= {p.ratio for p in fam}


def test_check_personas_are_outside_the_design_family() -> None:
    outside = 0
    for p in check_personas():
        if p.kind == "frame" or not (1.15 <= p.margin <= 2.5) or not (0.35 <= p.ay <= 0.6):
            outside += 1
    assert outside >= 3


def test_the_tuning_users_are_not_the_reported_outside_users() -> None:
    """The rule weights are tuned with tuning_personas; the README reports check_personas as unseen users."""
    checks, tuning = check_personas(), tuning_personas()
    assert not {p.name for p in checks} & {p.name for p in tuning}
    habit = lambda p: (p.ratio, p.kind, round(p.margin, 2), round(p.frame_scale, 2), round(p.ax, 2), round(p.ay, 2))  # noqa: E731
    assert not {habit(p) for p in checks} & {habit(p) for p in tuning}
    crops = [[clean(p).crop(SUBJECT, SIZE, "k") for p in group] for group in (checks, tuning)]
    assert all(max(iou(t, c) for c in crops[0]) < 0.97 for t in crops[1])  # no tuning user crops like a checked one


def test_placement_names() -> None:
    assert placement_name(0.5, 0.5) == "centred"
    assert placement_name(0.33, 0.5) == "left"
    assert placement_name(0.67, 0.36) == "high-right"


def test_pairwise_agreement() -> None:
    photos = [(f"p{i}", Box(0.3 + 0.01 * i, 0.3, 0.5 + 0.01 * i, 0.6), SIZE) for i in range(10)]
    same = [Persona("a", seed=1, jitter=0.0, habit=1.0)] * 3
    assert pairwise_agreement(same, photos) == pytest.approx(1.0)
    diverse = design_family(12, seed=0)
    value = pairwise_agreement(diverse, photos)
    assert 0.2 < value < 0.9 and not math.isnan(value)
