"""Cropped copies keep what photographers care about and never touch the original."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from PIL import Image

from conftest import make_photo
from pic_plugin.core.errors import PicError
from pic_plugin.core.geometry import Box, parse_ratio
from pic_plugin.imaging.export import export_crop, export_path

ICC = b"\x00\x00\x02\x0cfake-icc-profile" * 8


def _source(tmp_path: Path, orientation: int = 6) -> Path:
    exif = Image.Exif()
    exif[0x0112] = orientation
    exif[0x010F] = "Nikon"
    exif.get_ifd(0x8769)[0x9003] = "2024:05:01 10:00:00"
    path = tmp_path / "src.jpg"
    make_photo(900, 600).save(path, quality=71, exif=exif.tobytes(), icc_profile=ICC, subsampling=2)
    return path


@pytest.mark.parametrize("ratio", ["4:5", "1:1", "16:9", "free"])
def test_export_is_upright_exact_and_keeps_metadata(tmp_path: Path, ratio: str) -> None:
    src = _source(tmp_path)
    digest = hashlib.sha256(src.read_bytes()).hexdigest()
    out = export_crop(src, Box(0.1, 0.2, 0.9, 0.7), parse_ratio(ratio), tmp_path / "out" / "a.jpg")
    img = Image.open(out)
    w, h = img.size
    if ratio != "free":
        rw, rh = map(int, ratio.split(":"))
        assert w * rh == h * rw
    exif = img.getexif()
    assert exif.get(0x0112) == 1 and exif.get(0x010F) == "Nikon"
    assert exif.get_ifd(0x8769).get(0x9003) == "2024:05:01 10:00:00"
    assert img.info.get("icc_profile") == ICC
    # Same JPEG quantization as the source: quality kept, not re-encoded at some default.
    assert img.quantization == Image.open(src).quantization
    assert hashlib.sha256(src.read_bytes()).hexdigest() == digest
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".pic-")]  # no temp files left


def test_export_refuses_to_overwrite_the_original(tmp_path: Path) -> None:
    src = _source(tmp_path)
    with pytest.raises(PicError):
        export_crop(src, Box(0, 0, 1, 1), parse_ratio("free"), src)


def test_export_paths_mirror_the_tree(tmp_path: Path) -> None:
    root = tmp_path / "photos"
    (root / "2024" / "trip").mkdir(parents=True)
    img = root / "2024" / "trip" / "IMG_1.CR2"
    img.write_bytes(b"")
    assert export_path(img, root, tmp_path / "out") == tmp_path / "out" / "2024" / "trip" / "IMG_1.CR2.jpg"


def test_png_export_keeps_format(tmp_path: Path) -> None:
    src = tmp_path / "a.png"
    make_photo(300, 200).save(src)
    out = export_crop(src, Box(0, 0, 0.5, 1), parse_ratio("free"), tmp_path / "a_out.png")
    assert Image.open(out).format == "PNG" and Image.open(out).size == (150, 200)
