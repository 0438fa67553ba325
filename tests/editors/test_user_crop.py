"""``editors.user_crop``: a crop the user accepted or adjusted is written as theirs, never as pic's own."""

from __future__ import annotations

import hashlib
from pathlib import Path

from conftest import jpeg_bytes, make_photo
from pic_plugin.core.geometry import Box
from pic_plugin.core.suggestion import Suggestion
from pic_plugin.editors import picns
from pic_plugin.editors.sidecars import find_crops, write_suggestion
from pic_plugin.editors.user_crop import write_user_crop
from pic_plugin.editors.xmp import parse_xmp

CROP = Box(0.1, 0.2, 0.7, 0.9)


def _photo(tmp_path: Path, name: str = "a photo's \"name\" $x.jpg") -> Path:
    path = tmp_path / name
    path.write_bytes(jpeg_bytes(make_photo()))
    return path


def _suggestion(path: Path, crop: Box) -> Suggestion:
    return Suggestion(path=str(path), crop=crop, score=0.5, ratio="free", size=(600, 400), model="test-1")


def _near(a: Box, b: Box) -> bool:
    return all(abs(x - y) < 0.01 for x, y in zip(a, b, strict=True))


def test_user_crop_is_not_pics_own_in_any_format(tmp_path: Path) -> None:
    image = _photo(tmp_path)
    before = hashlib.sha256(image.read_bytes()).hexdigest()
    report = write_user_crop(image, CROP, 1, targets=("pic", "darktable"), size=(600, 400))
    assert report.ok and report.status("darktable") == "written"
    other = _photo(tmp_path, "other.jpg")
    report = write_user_crop(other, CROP, 1, targets=("pic", "darktable", "crs"), size=(600, 400))
    # darktable imports the crs crop on the first darkroom load: an entry as well would crop twice
    assert report.ok and report.status("crs") == "written" and report.status("darktable") == "skipped"
    found = {f.source: f for f in find_crops(image, 1) + find_crops(other, 1)}
    assert set(found) == {"darktable", "crs"}  # no pic record is invented for the user's crop
    assert all(not f.is_pic_suggestion and _near(f.crop, CROP) for f in found.values())
    assert hashlib.sha256(image.read_bytes()).hexdigest() == before


def test_accepting_pics_applied_crop_unchanged_takes_it_over(tmp_path: Path) -> None:
    image = _photo(tmp_path)
    write_suggestion(image, _suggestion(image, CROP), 1)
    (mine,) = [f for f in find_crops(image, 1) if f.source == "darktable"]
    assert mine.is_pic_suggestion
    report = write_user_crop(image, CROP, 1, size=(600, 400))
    assert report.ok and report.files
    (mine,) = [f for f in find_crops(image, 1) if f.source == "darktable"]
    assert not mine.is_pic_suggestion and _near(mine.crop, CROP)
    rec = picns.read_record(parse_xmp(report.files[0].read_bytes()))
    assert rec is not None and rec.state == "accepted" and rec.darktable is None
    # A later suggestion (a new model, say) keeps the user's crop.
    later = write_suggestion(image, _suggestion(image, Box(0.0, 0.0, 0.5, 0.5)), 1)
    assert later.status("darktable") == "kept-user-crop"
    (mine,) = [f for f in find_crops(image, 1) if f.source == "darktable"]
    assert _near(mine.crop, CROP)


def test_a_crop_made_elsewhere_is_replaced_only_with_force(tmp_path: Path) -> None:
    image = _photo(tmp_path)
    write_user_crop(image, CROP, 1)
    other = Box(0.3, 0.3, 0.9, 0.9)
    assert write_user_crop(image, other, 1).status("darktable") == "kept-user-crop"
    assert _near([f for f in find_crops(image, 1) if f.source == "darktable"][0].crop, CROP)
    assert write_user_crop(image, other, 1, force=True).status("darktable") == "written"
    assert _near([f for f in find_crops(image, 1) if f.source == "darktable"][0].crop, other)


def test_rotated_photo_round_trips_in_the_displayed_frame(tmp_path: Path) -> None:
    image = tmp_path / "rot.jpg"
    image.write_bytes(jpeg_bytes(make_photo(600, 400), orientation=6))
    write_user_crop(image, CROP, 6, targets=("darktable",), size=(400, 600))
    write_user_crop(image, CROP, 6, targets=("crs",), size=(400, 600))  # (after darktable's: no import issue)
    found = {f.source: f.crop for f in find_crops(image, 6)}
    assert _near(found["darktable"], CROP) and _near(found["crs"], CROP)
