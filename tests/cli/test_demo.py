"""``pic demo``: the example library (Ada's darktable crops) and the loop make demo runs over it."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image, ImageOps

from pic_cli.main import cli
from pic_plugin.core.geometry import pixel_words
from pic_plugin.core.orientation import read_exif_orientation
from pic_plugin.editors.sidecars import find_crops


def _run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def test_demo_copies_photos_and_adas_darktable_sidecars(tmp_path: Path) -> None:
    folder = tmp_path / "demo"
    code, out, err = _run("demo", str(folder))
    assert code == 0
    assert "14 sample photos and 7 darktable sidecars" in out and "pic learn --user ada --from-library" in err
    photos = sorted(folder.glob("*.jpg"))
    assert len(photos) == 14
    own = {}
    for photo in photos:
        crops = [c for c in find_crops(photo, read_exif_orientation(photo)) if not c.is_pic_suggestion]
        if crops:
            sidecar = (folder / f"{photo.name}.xmp").read_text()
            # Written by darktable itself (its XMP toolkit, its default modules before the crop), not by pic.
            assert 'x:xmptk="XMP Core 4.4.0-Exiv2"' in sidecar and 'darktable:operation="colorin"' in sidecar
            assert "pic:" not in sidecar
            with Image.open(photo) as im:
                size = ImageOps.exif_transpose(im).size
            own[photo.name] = pixel_words(crops[0].crop, size)
    assert len(own) == 7
    assert all(words.endswith(", 4:5") for words in own.values()), own
    # A second run leaves what is there alone (the folder may hold the user's edits by now).
    (folder / "coffee.jpg.xmp").write_text("edited")
    code, out, _ = _run("demo", str(folder))
    assert code == 0 and "21 already there" in out
    assert (folder / "coffee.jpg.xmp").read_text() == "edited"


def test_recap_needs_the_folder(tmp_path: Path) -> None:
    code, _, _ = CliRunner().invoke(cli, ["demo", str(tmp_path / "nope"), "--recap"]).exit_code, "", ""
    assert code == 2


@pytest.mark.slow
def test_demo_loop_learns_adas_style(tmp_path: Path) -> None:
    """What make demo shows: after pic learn on Ada's 7 crops, most of her other photos are cropped 4:5, where
    pic for nobody in particular leaves them whole."""
    folder, catalog = tmp_path / "demo", str(tmp_path / "catalog.db")
    assert _run("demo", str(folder))[0] == 0
    code, out, err = _run("learn", "--user", "ada", "--from-library", str(folder), "--catalog", catalog)
    assert code == 0, err
    assert "4:5 (as written)" in out
    code, out, err = _run("batch", str(folder), "--user", "ada", "-j", "1", "--catalog", catalog)
    assert code == 0 and "7 with your own crop kept" in out + err
    for photo in folder.glob("*.jpg"):  # Ada's own crops are never replaced
        kept = [c for c in find_crops(photo, read_exif_orientation(photo)) if not c.is_pic_suggestion]
        assert len(kept) <= 1

    from pic_plugin.library.catalog import Catalog
    from pic_plugin.library.demo import recap

    with Catalog(catalog) as cat:
        r = recap(cat, folder)
    assert r.own_crops == 7 and len(r.photos) == 7
    assert r.user_cropped() >= 5 and r.user_ratios()["4:5"] >= 5
    assert r.generic_cropped() <= 2

    code, out, _ = _run("demo", str(folder), "--recap", "--report", str(tmp_path / "report"), "--catalog", catalog)
    assert code == 0
    assert "What pic learned from Ada's 7 crops: 4:5 (as written)" in out
    assert "report/index.html" in out
