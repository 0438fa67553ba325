"""Real digiKam output: histories written by showfoto 7.9 (digiKam's editor) and the database digiKam 7.9 built.

The crop pic reads must be the region of the original whose pixels the version holds: checked by cutting that
region out of the original (displayed frame), turning it as the history says, scaling it to the version's size
and comparing pixels with the real version file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from digikam_fixtures import exif_display
from editor_fixtures import REAL
from PIL import Image, ImageOps

from pic_plugin.core.orientation import read_exif_orientation
from pic_plugin.editors.digikam.database import DigikamDatabase
from pic_plugin.editors.digikam.history import parse_history, replay

ORIGINAL = REAL / "IMG_0001.JPG"


def displayed_original() -> np.ndarray:
    with Image.open(ORIGINAL) as im:
        return np.asarray(ImageOps.exif_transpose(im).convert("RGB"), dtype=np.float32)


def predicted_version(pixel_box, orientation: int, size: tuple[int, int]) -> np.ndarray:
    disp = displayed_original()
    x0, y0, x1, y1 = (round(v) for v in pixel_box)
    region = exif_display(disp[y0:y1, x0:x1], orientation)
    if region.shape[1::-1] != size:
        region = np.asarray(Image.fromarray(region.astype(np.uint8)).resize(size, Image.BILINEAR), np.float32)
    return region


def version_pixels(name: str) -> np.ndarray:
    with Image.open(REAL / name) as im:
        return np.asarray(im.convert("RGB"), dtype=np.float32)


def histories() -> dict[str, str]:
    with DigikamDatabase(REAL / "digikam4.db") as db:
        return {v.image.name: v.history for v in db.versions()}


@pytest.mark.parametrize("name, tolerance", [("IMG_0001_v1.png", 4.0), ("IMG_0001_v2.JPG", 14.0)])
def test_real_versions_show_the_region_pic_reads(name: str, tolerance: float):
    assert read_exif_orientation(ORIGINAL) == 6  # stored 900x600, shown 600x900: the editor auto-rotated it
    steps = parse_history(histories()[name]).steps_from_original()
    chain = replay(steps, (600, 900))
    actual = version_pixels(name)
    assert chain.size == actual.shape[1::-1]
    err = np.abs(predicted_version(chain.pixel_box, chain.orientation, chain.size) - actual).mean()
    assert err < tolerance
    # The check discriminates: the same region one block (30 px) off, or not turned, is far worse.
    x0, y0, x1, y1 = chain.pixel_box
    shifted = predicted_version((x0 + 30, y0, x1 + 30, y1), chain.orientation, chain.size)
    assert np.abs(shifted - actual).mean() > 3 * tolerance
    other = 1 if chain.orientation != 1 else 3
    wrong = predicted_version(chain.pixel_box, other, chain.size)
    if wrong.shape == actual.shape:
        assert np.abs(wrong - actual).mean() > 3 * tolerance


def test_real_v1_numbers():
    chain = replay(parse_history(histories()["IMG_0001_v1.png"]).steps_from_original(), (600, 900))
    # crop 80,117 440x627 -> rotate right (627x440; x' <- 627 - y, y' <- x) -> ratio crop x' 50..570, y' 50..440
    # = original x 80+50..80+440, y 117+627-570..117+627-50 -> flip horizontally (turns, does not move).
    assert chain.pixel_box == (130.0, 174.0, 520.0, 694.0)
    assert chain.orientation == 5 and chain.size == (520, 390) and not chain.approximate  # CW + mirror = transpose
    assert chain.box.as_list() == [round(130 / 600, 6), round(174 / 900, 6), round(520 / 600, 6), round(694 / 900, 6)]


def test_real_v2_crosses_an_intermediate_version_and_a_resize():
    h = parse_history(histories()["IMG_0001_v2.JPG"])
    assert [f.kind for f in h.files] == ["original", "intermediate"]
    assert h.files[1].file_name == "IMG_0001_v1.png"
    chain = replay(h.steps_from_original(), (600, 900))
    assert "resize 260x195" in chain.steps and chain.size == (138, 196)


def test_embedded_history_equals_the_database_copy():
    from pic_plugin.editors.digikam.history import read_version

    db = histories()
    # ImageUniqueID = 32 random hex digits + the uniqueHashV2 of the file the editor had loaded: the original
    # for v1; for v2 (saved after v1 in the same session) v1's hash, as digiKam's database records it.
    tails = {"IMG_0001_v1.png": "48e49b7888f3576dc311b1fb102c28b9", "IMG_0001_v2.JPG": "6fdd2112ccfed609966c4335ade592f0"}
    for name, tail in tails.items():
        info, problems = read_version(REAL / name)
        assert info is not None and not problems and info.where == "embedded"
        assert info.history == parse_history(db[name])
        assert info.unique_id is not None and info.unique_id.endswith(tail)


def test_fixture_files_are_what_digikam_recorded():
    from pic_plugin.editors.digikam.history import unique_hash_v2

    assert unique_hash_v2(ORIGINAL) == "48e49b7888f3576dc311b1fb102c28b9"
    assert Path(ORIGINAL).stat().st_size == 115801
