"""Decoding: formats, orientation, RAW previews, and hostile files that must fail with a clear message."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import jpeg_bytes, make_photo
from pic_plugin.core.errors import DecodeError
from pic_plugin.imaging.decode import MAX_PIXELS, decode, open_full
from pic_plugin.imaging.raw_frame import cameras_xml


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("orientation,expected", [(1, (600, 400)), (3, (600, 400)), (6, (400, 600)), (8, (400, 600))])
def test_jpeg_orientation_gives_displayed_frame(tmp_path: Path, orientation: int, expected: tuple[int, int]) -> None:
    upright = make_photo(*expected, subject=(0.25, 0.3))
    inverse = {1: None, 3: Image.Transpose.ROTATE_180, 6: Image.Transpose.ROTATE_90, 8: Image.Transpose.ROTATE_270}
    stored = upright.transpose(inverse[orientation]) if inverse[orientation] else upright
    path = tmp_path / f"o{orientation}.jpg"
    path.write_bytes(jpeg_bytes(stored, orientation))
    before = _sha(path)
    d = decode(path)
    assert d.size == expected
    assert d.orientation == orientation
    # The bright subject sits at the same displayed place whatever the stored orientation.
    h, w = d.pixels.shape[:2]
    red = d.pixels[..., 0].astype(float)
    y, x = np.unravel_index(np.argmax(red), red.shape)
    assert abs(x / w - 0.25) < 0.15 and abs(y / h - 0.3) < 0.15
    assert _sha(path) == before


def test_large_jpeg_uses_reduced_decode(tmp_path: Path) -> None:
    path = tmp_path / "big.jpg"
    path.write_bytes(jpeg_bytes(make_photo(4000, 3000)))
    d = decode(path)
    assert d.size == (4000, 3000)
    assert max(d.pixels.shape[:2]) <= 512
    assert d.method.startswith("jpeg draft 1/")


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L", "P", "I;16"])
def test_png_and_tiff_modes(tmp_path: Path, mode: str) -> None:
    base = make_photo(300, 200)
    img = base.convert("RGBA" if mode == "RGBA" else "L" if mode in ("L", "I;16") else mode if mode != "P" else "P")
    if mode == "I;16":
        img = Image.fromarray((np.asarray(base.convert("L"), dtype=np.uint16) * 200).astype(np.uint16))
    for ext in (".png", ".tif"):
        path = tmp_path / f"x_{mode.replace(';', '')}{ext}"
        img.save(path)
        d = decode(path)
        assert d.size == (300, 200) and d.pixels.dtype == np.uint8 and d.pixels.shape[2] == 3
        assert d.pixels.std() > 5  # 16-bit data was scaled, not clipped to white


def _truncated(tmp: Path) -> Path:
    data = jpeg_bytes(make_photo())
    p = tmp / "truncated.jpg"
    p.write_bytes(data[: len(data) // 3])
    return p


def _corrupt(tmp: Path) -> Path:
    data = bytearray(jpeg_bytes(make_photo()))
    data[200:4000] = bytes(3800)
    p = tmp / "corrupt.jpg"
    p.write_bytes(bytes(data))
    return p


def _empty(tmp: Path) -> Path:
    p = tmp / "empty.jpg"
    p.write_bytes(b"")
    return p


def _text(tmp: Path) -> Path:
    p = tmp / "notes.png"
    p.write_text("this is not an image\n")
    return p


def _bomb(tmp: Path) -> Path:
    # A tiny PNG whose header claims 20000 x 20000 pixels (400 MP).
    p = tmp / "bomb.png"
    Image.new("1", (20000, 20000)).save(p, optimize=True)
    return p


@pytest.mark.parametrize("maker,message", [
    (_truncated, "truncated"),
    (_corrupt, ""),
    (_empty, "empty file"),
    (_text, "not a recognizable image"),
    (_bomb, "megapixels"),
])
def test_hostile_files_fail_clearly(tmp_path: Path, maker, message: str) -> None:  # type: ignore[no-untyped-def]
    path = maker(tmp_path)
    before = _sha(path)
    with pytest.raises(DecodeError) as err:
        decode(path)
    assert message in str(err.value)
    assert _sha(path) == before
    assert MAX_PIXELS < 400_000_000  # the bomb above is really over the limit


def test_open_full_is_upright(tmp_path: Path) -> None:
    path = tmp_path / "r.jpg"
    path.write_bytes(jpeg_bytes(make_photo(300, 200), orientation=6))
    assert open_full(path).size == (200, 300)


def test_raw_samples(shared_data: Path) -> None:
    raw = shared_data / "raw-samples"
    # The portrait Pixel 7 DNG (EXIF orientation 8) decodes upright from its embedded preview.
    d = decode(raw / "google_pixel7_portrait.dng")
    assert d.orientation == 8 and d.size[0] < d.size[1] and d.pixels.shape[0] > d.pixels.shape[1]
    assert d.method.startswith("raw preview")
    # No preview (Nikon D1 has only a tiny thumbnail): half-size demosaic.
    d = decode(raw / "nikon_d1.nef")
    # darktable's crop for the D1 when darktable's camera data is installed, else LibRaw's visible area.
    assert d.method == "raw half-size" and d.size == ((2000, 1312) if cameras_xml() else (2012, 1324))
    assert decode(raw / "canon_eos_d30.crw").method.startswith("raw preview")
    # LibRaw cannot read GoPro GPR: a clear per-file error, not a crash.
    with pytest.raises(DecodeError, match="GoPro GPR: its raw data is VC-5 compressed"):
        decode(raw / "gopro_hero6.gpr")


def test_unreadable_files(tmp_path: Path) -> None:
    import os

    dangling = tmp_path / "gone.jpg"
    dangling.symlink_to(tmp_path / "missing.jpg")
    folder = tmp_path / "folder.jpg"
    folder.mkdir()
    for path in (dangling, folder):
        with pytest.raises(DecodeError, match="cannot read|corrupt|unreadable"):
            decode(path)
    locked = tmp_path / "locked.jpg"
    locked.write_bytes(jpeg_bytes(make_photo()))
    locked.chmod(0)
    try:
        if not os.access(locked, os.R_OK):  # (root reads anything: only checked as a normal user)
            with pytest.raises(DecodeError):
                decode(locked)
    finally:
        locked.chmod(0o644)


def test_odd_file_names(tmp_path: Path) -> None:
    for name in ["with space.jpg", "quote'\"s.jpg", "$(touch pwned).jpg", "new\nline.jpg", "ünïcödé.JPG"]:
        p = tmp_path / name
        p.write_bytes(jpeg_bytes(make_photo(120, 80)))
        assert decode(p).size == (120, 80)
    assert not (tmp_path / "pwned").exists()
    raw_name = tmp_path.joinpath(io.BytesIO(b"x").getvalue().decode() + "\udcff.jpg")
    raw_name.write_bytes(jpeg_bytes(make_photo(120, 80)))
    assert decode(raw_name).size == (120, 80)
