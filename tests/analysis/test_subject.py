"""The subject pic frames: the map's box joined with the detector's main object, faces, no subject at all; and
the ``subject`` / ``subject_kind`` fields of the command-line contract."""

from __future__ import annotations

import json

import numpy as np
from analysis_fixtures import synthetic_analysis
from click.testing import CliRunner

from conftest import jpeg_bytes, make_photo
from pic_cli.main import cli
from pic_plugin.analysis.features import Detection, ImageAnalysis
from pic_plugin.analysis.subject import OBJECT_MIN_SCORE, find_subject, join, main_object, summarize_subject
from pic_plugin.core.geometry import Box, iou
from pic_plugin.imaging.faces import Face


def test_the_main_object_is_the_most_confident_large_one() -> None:
    small_sure = Detection(Box(0.1, 0.1, 0.2, 0.2), 0.9, "cup")  # 0.9 * 0.1 = 0.09
    large = Detection(Box(0.3, 0.2, 0.8, 0.9), 0.5, "person")  # 0.5 * sqrt(0.35) = 0.30
    unsure = Detection(Box(0.0, 0.0, 1.0, 1.0), OBJECT_MIN_SCORE - 0.01, "dining table")
    assert main_object([small_sure, large, unsure]) == large
    assert main_object([unsure]) is None
    assert join(Box(0.2, 0.2, 0.5, 0.5), large) == Box(0.2, 0.2, 0.8, 0.9)
    assert join(Box(0.2, 0.2, 0.5, 0.5), None) == Box(0.2, 0.2, 0.5, 0.5)


def test_a_detected_object_the_map_missed_joins_the_subject() -> None:
    analysis = synthetic_analysis(subject_box=(0.1, 0.3, 0.3, 0.7))
    before = Box(*summarize_subject(analysis).box)
    dog = Detection(Box(0.6, 0.4, 0.9, 0.9), 0.8, "dog")
    analysis.objects = [dog]
    summary = summarize_subject(analysis)
    after = Box(*summary.box)
    assert after.right >= 0.9 - 1e-6 and after.bottom >= 0.9 - 1e-6 and after.left <= before.left + 1e-6
    assert summary.kind == "dog"
    # the dog's box now carries subject mass: the composition features keep it too
    h, w = summary.weights.shape
    assert summary.weights[int(0.6 * h), int(0.75 * w)] > 0
    subject = find_subject(analysis)
    assert subject is not None and subject.kind == "dog" and iou(subject.box, after) > 0.99


def test_no_subject_without_map_mass_or_objects_and_faces_name_the_kind() -> None:
    flat = ImageAnalysis((640, 480), np.zeros((16, 15, 20), np.float16), np.zeros((30, 40), np.float32))
    assert find_subject(flat) is None  # a landscape or a texture: nothing to frame
    flat.faces = [Face(Box(0.4, 0.2, 0.5, 0.35), 0.9)]
    face = find_subject(flat)
    assert face is not None and face.kind == "face" and iou(face.box, Box(0.4, 0.2, 0.5, 0.35)) > 0.5


def test_objects_survive_the_feature_cache() -> None:
    analysis = synthetic_analysis()
    analysis.objects = [Detection(Box(0.1, 0.2, 0.3, 0.4), 0.75, "person"), Detection(Box(0.5, 0.5, 0.9, 0.9), 0.5, "dog")]
    back = ImageAnalysis.from_bytes(analysis.to_bytes())
    assert [o.label for o in back.objects] == ["person", "dog"]
    assert all(iou(a.box, b.box) > 0.999 and abs(a.score - b.score) < 1e-6 for a, b in zip(back.objects, analysis.objects, strict=True))


def test_suggest_json_says_what_pic_framed(tmp_path) -> None:  # type: ignore[no-untyped-def]
    photo = tmp_path / "p.jpg"
    photo.write_bytes(jpeg_bytes(make_photo(480, 320, seed=3, subject=(0.3, 0.5))))
    r = CliRunner().invoke(cli, ["suggest", str(photo), "--json", "--catalog", str(tmp_path / "c.db")])
    assert r.exit_code == 0, r.output
    row = json.loads(r.output.splitlines()[0])
    assert "subject" in row and "subject_kind" in row
    if row["subject"] is not None:
        left, top, right, bottom = row["subject"]
        assert 0 <= left < right <= 1 and 0 <= top < bottom <= 1


def test_the_rule_blends_from_the_joined_box_to_the_object_alone() -> None:
    from pic_plugin.analysis.subject import SubjectRule

    analysis = synthetic_analysis(subject_box=(0.1, 0.3, 0.3, 0.7))
    dog = Detection(Box(0.6, 0.4, 0.9, 0.9), 0.8, "dog")
    analysis.objects = [dog]
    joined = Box(*summarize_subject(analysis, SubjectRule(blend=0.0)).box)
    alone = Box(*summarize_subject(analysis, SubjectRule(blend=1.0)).box)
    half = Box(*summarize_subject(analysis, SubjectRule(blend=0.5)).box)
    assert iou(alone, dog.box) > 0.999
    assert joined.left < 0.35 and iou(joined, dog.box) < 0.7
    assert abs(half.left - (joined.left + alone.left) / 2) < 1e-6
    # an object the map has no mass for (fill 0, a dark map) still is the subject
    analysis.subject = np.zeros_like(analysis.subject)
    assert iou(Box(*summarize_subject(analysis, SubjectRule(fill=0.0)).box), dog.box) > 0.999
