"""RAW frames (issue 14 point 6): crops are normalized to the frame the editors render, not the embedded preview's.

The first tests are hermetic (synthetic metadata); the ``shared_data`` ones read the real files of
``raw-samples/`` (their README lists what each holds); the darktable test renders with the real darktable-cli.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pic_plugin.core.errors import DecodeError
from pic_plugin.core.geometry import Box
from pic_plugin.imaging.decode import decode, raw_frame
from pic_plugin.imaging.raw_frame import (
    Rect,
    camera_id,
    cameras_xml,
    fit_to_frame,
    frame_from_metadata,
    preview_extent,
    rawspeed_crop,
)

# --- hermetic: synthetic metadata ------------------------------------------------------------------------------

# The Pixel 7 DNG's metadata: raw 510x382, DefaultCrop 494x366 at (8, 8), LibRaw flip 5 (EXIF 8).
PIXEL = dict(raw_size=(510, 382), visible=Rect(0, 0, 510, 382), orientation=8)


def test_dng_frame_is_the_default_crop_turned_upright() -> None:
    f = frame_from_metadata(**PIXEL, dng=True, inset_crop=Rect(8, 8, 494, 366))  # type: ignore[arg-type]
    assert f.frame == Rect(8, 8, 494, 366) and f.source == "DNG DefaultCrop"
    assert f.stored_size == (494, 366) and f.size == (366, 494)  # what darktable renders, not 382x510
    # Without a DefaultCrop (LibRaw reports 0x0) the active area is the frame.
    f = frame_from_metadata(**PIXEL, dng=True, inset_crop=Rect(0, 0, 0, 0))  # type: ignore[arg-type]
    assert f.frame == Rect(0, 0, 510, 382) and f.source == "DNG active area"


def test_a_dng_ignores_darktables_camera_crop_and_other_raws_use_it() -> None:
    common = dict(raw_size=(2224, 1456), visible=Rect(48, 6, 2176, 1448), orientation=1,
                  inset_crop=Rect(56, 12, 2160, 1440))
    # rawspeed's <Crop x="52" y="10" width="0" height="-6"/> (Canon EOS D30): sizes <= 0 count from the far edge.
    f = frame_from_metadata(**common, dng=False, rawspeed_crop=(52, 10, 0, -6))  # type: ignore[arg-type]
    assert f.frame == Rect(52, 10, 2172, 1440) and f.size == (2172, 1440)
    assert "cameras.xml" in f.source
    assert [n for n, _ in f.extents] == ["frame", "maker crop", "visible area", "whole raw"]
    f = frame_from_metadata(**common, dng=False, rawspeed_crop=(0, 0, 2000, 1312))  # type: ignore[arg-type]
    assert f.frame == Rect(0, 0, 2000, 1312)
    # No camera data, or a crop outside the raw: LibRaw's visible area.
    for crop in (None, (0, 0, 9000, 100), (-4, 0, 100, 100)):
        f = frame_from_metadata(**common, dng=False, rawspeed_crop=crop)  # type: ignore[arg-type]
        assert f.frame == Rect(48, 6, 2176, 1448) and f.source == "LibRaw's visible area"


def test_preview_extent_is_recognized_by_aspect() -> None:
    pixel = frame_from_metadata(**PIXEL, dng=True, inset_crop=Rect(8, 8, 494, 366))  # type: ignore[arg-type]
    assert preview_extent(pixel, (510, 382)) == ("visible area", Rect(0, 0, 510, 382))  # the whole raw, not the crop
    assert preview_extent(pixel, (494, 366))[0] == "frame"
    assert preview_extent(pixel, (988, 732))[0] == "frame"  # scale does not matter
    assert preview_extent(pixel, (500, 500)) == ("frame (assumed)", Rect(8, 8, 494, 366))  # nothing fits
    d30 = frame_from_metadata((2224, 1456), Rect(48, 6, 2176, 1448), 1, dng=False,
                              inset_crop=Rect(56, 12, 2160, 1440), rawspeed_crop=(52, 10, 0, -6))
    assert preview_extent(d30, (1440, 960)) == ("maker crop", Rect(56, 12, 2160, 1440))  # Canon's 3:2 JPEG


def test_fit_to_frame_cuts_and_extends_the_preview() -> None:
    # A 100x50 picture of the extent (0, 0, 200, 100): the frame (20, 10, 160, 80) is its pixels 10..90 x 5..45.
    arr = np.zeros((50, 100, 3), np.uint8)
    arr[5, 10] = (255, 0, 0)  # the frame's top-left pixel
    arr[44, 89] = (0, 255, 0)  # its bottom-right pixel
    out = np.asarray(fit_to_frame(Image.fromarray(arr), Rect(0, 0, 200, 100), Rect(20, 10, 160, 80)))
    assert out.shape == (40, 80, 3)
    assert tuple(out[0, 0]) == (255, 0, 0) and tuple(out[-1, -1]) == (0, 255, 0)
    # The frame reaches past the picture's extent (a camera JPEG smaller than darktable's frame): edges repeat.
    small = Image.fromarray(np.full((10, 20, 3), 7, np.uint8))
    out = np.asarray(fit_to_frame(small, Rect(4, 2, 20, 10), Rect(0, 0, 28, 14)))
    assert out.shape == (14, 28, 3) and (out == 7).all()
    same = Image.new("RGB", (5, 5))
    assert fit_to_frame(same, Rect(0, 0, 5, 5), Rect(0, 0, 5, 5)) is same


def test_a_fixed_ratio_crop_is_exact_only_in_the_editors_frame() -> None:
    """Why the frame matters: the same normalized 4:5 box is 0.791 in darktable's frame if made in the preview's."""
    def box_45(size: tuple[int, int]) -> Box:
        w, h = size
        ch = 1.0
        cw = 0.8 * h / w
        return Box(0.0, 0.0, cw, ch)

    def ratio_in(box: Box, size: tuple[int, int]) -> float:
        return box.width * size[0] / (box.height * size[1])

    dt_frame = frame_from_metadata(**PIXEL, dng=True, inset_crop=Rect(8, 8, 494, 366)).size  # type: ignore[arg-type]
    assert round(ratio_in(box_45((382, 510)), dt_frame), 3) == 0.791  # pic before: the preview's 382x510
    assert round(ratio_in(box_45(dt_frame), dt_frame), 6) == 0.8


def _cameras_xml(tmp_path: Path) -> Path:
    path = tmp_path / "cameras.xml"
    path.write_text("""<?xml version="1.0"?><Cameras>
      <Camera make="Canon" model="Canon EOS D30"><Crop x="52" y="10" width="0" height="-6"/></Camera>
      <Camera make="NIKON CORPORATION" model="NIKON D1" mode="12bit-uncompressed">
        <Aliases><Alias id="D1">NIKON D1 ALIAS</Alias></Aliases><Crop x="0" y="0" width="2000" height="1312"/></Camera>
      <Camera make="NIKON CORPORATION" model="NIKON D1" mode="12bit-compressed">
        <Crop x="0" y="0" width="2000" height="1312"/></Camera>
      <Camera make="X" model="Two modes" mode="a"><Crop x="0" y="0" width="10" height="10"/></Camera>
      <Camera make="X" model="Two modes" mode="b"><Crop x="2" y="0" width="8" height="10"/></Camera>
      <Camera make="X" model="Unsupported" supported="no"><Crop x="1" y="1" width="1" height="1"/></Camera>
    </Cameras>""")
    return path


def test_rawspeed_crop_lookup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    xml = _cameras_xml(tmp_path)
    assert rawspeed_crop("Canon", "Canon EOS D30", xml) == (52, 10, 0, -6)
    assert rawspeed_crop("NIKON CORPORATION ", "NIKON D1", xml) == (0, 0, 2000, 1312)  # modes agree
    assert rawspeed_crop("nikon corporation", "NIKON D1 ALIAS", xml) == (0, 0, 2000, 1312)
    assert rawspeed_crop("X", "Two modes", xml) is None  # ambiguous: LibRaw's frame is used
    assert rawspeed_crop("X", "Unsupported", xml) is None
    assert rawspeed_crop("Canon", "Canon EOS D30", None) is None
    assert rawspeed_crop("Canon", "Canon EOS D30", tmp_path / "missing.xml") is None
    monkeypatch.setenv("PIC_RAWSPEED_CAMERAS", str(xml))
    assert cameras_xml() == xml
    monkeypatch.setenv("PIC_RAWSPEED_CAMERAS", "")
    assert cameras_xml() is None


def test_make_and_model_of_a_canon_ciff_file(tmp_path: Path) -> None:
    """CRW has no EXIF: the make and model are tag 0x080a of its CIFF heap, in a subdirectory here."""
    text = b"Canon\0Canon EOS D30\0"
    sub = text + struct.pack("<H", 1) + struct.pack("<HII", 0x080A, len(text), 0) + struct.pack("<I", len(text))
    root = sub + struct.pack("<H", 1) + struct.pack("<HII", 0x300A, len(sub), 0) + struct.pack("<I", len(sub))
    path = tmp_path / "x.crw"
    path.write_bytes(b"II" + struct.pack("<I", 26) + b"HEAPCCDR" + b"\0" * 12 + root)
    assert camera_id(path) == ("Canon", "Canon EOS D30", False)
    (tmp_path / "junk.crw").write_bytes(b"II" + struct.pack("<I", 26) + b"HEAPCCDR" + b"\xff" * 40)
    assert camera_id(tmp_path / "junk.crw") == ("", "", False)


# --- the real files in shared data ------------------------------------------------------------------------------

#: name -> (displayed frame with darktable's camera data, without it, EXIF orientation); darktable-cli 4.2.1
#: renders the first (GPR: 3999x2999 for its 4000x3000, darktable's export rounding).
REAL_FRAMES = {
    "google_pixel7_portrait.dng": ((366, 494), (366, 494), 8),
    "gopro_hero6.gpr": ((4000, 3000), (4000, 3000), 2),
    "canon_eos_d30.crw": ((2172, 1440), (2176, 1448), 1),
    "canon_powershot_g1.crw": ((2088, 1550), (2088, 1550), 1),
    "nikon_d1.nef": ((2000, 1312), (2012, 1324), 1),
    "blackmagic_pocket4k_nopreview.dng": ((4096, 2160), (4096, 2160), 1),
}


@pytest.mark.shared
@pytest.mark.parametrize("name", sorted(REAL_FRAMES))
def test_real_raw_frames(shared_data: Path, name: str) -> None:
    with_dt, without, orientation = REAL_FRAMES[name]
    frame = raw_frame(shared_data / "raw-samples" / name)
    assert frame is not None
    assert frame.orientation == orientation
    assert frame.size == (with_dt if cameras_xml() else without), frame


@pytest.mark.shared
def test_real_crw_names_its_camera(shared_data: Path) -> None:
    assert camera_id(shared_data / "raw-samples/canon_eos_d30.crw") == ("Canon", "Canon EOS D30", False)
    assert camera_id(shared_data / "raw-samples/canon_powershot_g1.crw")[1] == "Canon PowerShot G1"


@pytest.mark.shared
def test_pixel7_preview_is_cut_to_the_default_crop(shared_data: Path) -> None:
    d = decode(shared_data / "raw-samples/google_pixel7_portrait.dng")
    assert d.size == (366, 494)  # was the preview's 382x510
    assert d.method == "raw preview (visible area cut to the frame)"
    w, h = d.analysis_size
    assert abs(w / h - 366 / 494) < 0.01  # the pixels have the frame's shape too


@pytest.mark.shared
def test_gpr_fails_with_a_reason_and_a_batch_goes_on(shared_data: Path, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from pic_cli.main import cli

    with pytest.raises(DecodeError) as err:
        decode(shared_data / "raw-samples/gopro_hero6.gpr")
    assert "VC-5" in str(err.value) and "no embedded preview" in str(err.value) and "darktable" in str(err.value)
    for name in ("gopro_hero6.gpr", "google_pixel7_portrait.dng"):
        shutil.copy(shared_data / "raw-samples" / name, tmp_path / name)
    result = CliRunner().invoke(cli, ["batch", str(tmp_path), "--ratio", "4:5", "-j", "1",
                                      "--catalog", str(tmp_path / "catalog.db")])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    assert "gopro_hero6.gpr: GoPro GPR: its raw data is VC-5 compressed" in result.stderr
    assert "2 photos: 1 done, 1 error" in result.stderr
    sidecar = (tmp_path / "google_pixel7_portrait.dng.xmp").read_text()
    assert 'pic:ImageSize="366 494"' in sidecar
    assert not (tmp_path / "gopro_hero6.gpr.xmp").exists()


# --- real darktable ----------------------------------------------------------------------------------------------

#: RAWs darktable-cli 4.2 renders (the Blackmagic DNG and the KDC it cannot; pic cannot decode the GPR).
RENDERED = ["google_pixel7_portrait.dng", "canon_eos_d30.crw", "canon_powershot_g1.crw", "nikon_d1.nef"]


@pytest.mark.slow
@pytest.mark.darktable
@pytest.mark.shared
@pytest.mark.parametrize("ratio", ["4:5", "3:2"])
def test_darktable_renders_fixed_ratio_suggestions_at_the_exact_ratio(
    darktable_cli: str, shared_data: Path, tmp_path: Path, ratio: str
) -> None:
    from click.testing import CliRunner

    from pic_cli.main import cli

    if cameras_xml() is None:
        pytest.skip("darktable's rawspeed cameras.xml is not installed: pic cannot know darktable's frame")
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    for name in RENDERED:
        shutil.copy(shared_data / "raw-samples" / name, src / name)
    result = CliRunner().invoke(cli, ["batch", str(src), "--ratio", ratio, "-j", "1",
                                      "--catalog", str(tmp_path / "catalog.db")])
    assert result.exit_code == 0, result.output
    cfg = tmp_path / "config"
    cfg.mkdir()
    proc = subprocess.run(
        [darktable_cli, str(src), str(out / "$(FILE_NAME)"), "--out-ext", "jpg",
         "--core", "--configdir", str(cfg), "--cachedir", str(tmp_path / "cache")],
        capture_output=True, timeout=600, check=False,
    )
    a, b = (int(v) for v in ratio.split(":"))
    for name in RENDERED:
        render = out / f"{Path(name).stem}.jpg"
        assert render.exists(), (name, proc.returncode, proc.stderr.decode(errors="replace")[-2000:])
        with Image.open(render) as im:
            w, h = im.size
        # Within one pixel of the exact ratio, whichever side darktable rounded.
        assert abs(w - h * a / b) <= 1.0 or abs(h - w * b / a) <= 1.0, (name, ratio, w, h)


@pytest.mark.shared
def test_features_cached_in_the_previews_frame_are_recomputed(shared_data: Path) -> None:
    """A catalog filled before this rule holds RAW features with the preview's size: they are not reused."""
    import dataclasses

    from pic_plugin.analysis.features import ImageAnalysis
    from pic_plugin.library.analyze import analyze_file

    dng = shared_data / "raw-samples/google_pixel7_portrait.dng"
    fresh = analyze_file(dng, fast=True)
    assert not fresh.cached and fresh.analysis.size == (366, 494) and fresh.new_features is not None
    assert analyze_file(dng, cached=fresh.new_features, fast=True).cached
    old = dataclasses.replace(ImageAnalysis.from_bytes(fresh.new_features), size=(382, 510))
    again = analyze_file(dng, cached=old.to_bytes(), fast=True)
    assert not again.cached and again.analysis.size == (366, 494)
