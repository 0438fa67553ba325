"""Lightroom / Camera Raw crops (crs:): stored frame, HasCrop / AlreadyApplied, angle bounds, the opt-in writer."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from conftest import missing_requirement
from pic_plugin.core.errors import SidecarError
from pic_plugin.core.geometry import Box, is_full_frame
from pic_plugin.core.orientation import stored_to_displayed
from pic_plugin.editors import crs
from pic_plugin.editors.crs import NS_CRS, NS_TIFF, read_crs, write_crs
from pic_plugin.editors.xmp import XmpDocument, parse_xmp

LADYBUG = Box(0.190999, 0.266726, 0.779695, 0.929009)


def crs_doc(left: float, top: float, right: float, bottom: float, *, angle: float = 0.0, orientation: int = 1,
            has_crop: str = "True", applied: str = "False", size: tuple[int, int] | None = (6000, 4000)) -> XmpDocument:
    dims = f"<tiff:ImageWidth>{size[0]}</tiff:ImageWidth><tiff:ImageLength>{size[1]}</tiff:ImageLength>" if size else ""
    return parse_xmp(f"""<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
 <rdf:Description rdf:about="" xmlns:crs="{NS_CRS}">
  <crs:AlreadyApplied>{applied}</crs:AlreadyApplied>
  <crs:HasCrop>{has_crop}</crs:HasCrop>
  <crs:CropLeft>{left}</crs:CropLeft><crs:CropTop>{top}</crs:CropTop>
  <crs:CropRight>{right}</crs:CropRight><crs:CropBottom>{bottom}</crs:CropBottom>
  <crs:CropAngle>{angle}</crs:CropAngle>
 </rdf:Description>
 <rdf:Description rdf:about="" xmlns:tiff="{NS_TIFF}">{dims}<tiff:Orientation>{orientation}</tiff:Orientation></rdf:Description>
</rdf:RDF></x:xmpmeta>""".encode())


def close(a: Box, b: Box, tol: float = 1e-9) -> bool:
    return all(abs(x - y) <= tol for x, y in zip(a, b, strict=True))


@pytest.mark.shared
def test_ladybug_crop_is_already_applied(shared_data: Path) -> None:
    c = read_crs(parse_xmp((shared_data / "xmp-samples/photoprism/ladybug.xmp").read_bytes()), 1)
    assert c is not None and c.has_crop and c.already_applied and not c.is_crop_to_apply
    assert c.corners == LADYBUG and c.size == (720, 540) and c.orientation == 1 and c.angle == 0.0
    assert any("baked into the pixels" in n for n in c.notes)


@pytest.mark.shared
def test_has_crop_false_means_no_crop(shared_data: Path) -> None:
    c = read_crs(parse_xmp((shared_data / "xmp-samples/photoprism/canon_eos_6d.xmp").read_bytes()), 1)
    assert c is not None and not c.has_crop and not c.is_crop_to_apply
    assert read_crs(parse_xmp((shared_data / "xmp-samples/darktable-tests/0094-highlight-segmentation_"
                                                "highlight-segmentation.xmp").read_bytes()), 1) is None


def test_stored_frame_is_mapped_with_the_final_orientation() -> None:
    """FORMATS 4.2 worked example: the ladybug crop with orientation 6 -> cx .07099 cy .191 cw .73327 ch .7797."""
    c = read_crs(crs_doc(*LADYBUG, orientation=6), orientation=1)
    assert c is not None and c.is_crop_to_apply and c.orientation == 6
    assert close(c.displayed, Box(1 - 0.929009, 0.190999, 1 - 0.266726, 0.779695))
    assert close(c.in_frame(6), c.displayed)
    assert close(c.in_frame(1), LADYBUG)  # the same content in an unrotated frame


def test_angle_gives_an_approximate_axis_aligned_bound() -> None:
    c = read_crs(crs_doc(0.05, 0.10, 0.95, 0.90, angle=2.5), 1)
    assert c is not None and c.approximate and c.angle == 2.5
    b = c.bound
    # the two stored corners lie inside the bound, and the bound is larger than the corner box
    assert b.left <= 0.05 and b.top <= 0.10 and b.right >= 0.95 and b.bottom >= 0.90
    assert b.area > Box(0.05, 0.10, 0.95, 0.90).area
    no_size = read_crs(crs_doc(0.05, 0.10, 0.95, 0.90, angle=2.5, size=None), 1)
    assert no_size is not None and any("assumed" in n for n in no_size.notes)


def test_bad_values_are_sidecar_errors() -> None:
    with pytest.raises(SidecarError, match="CropLeft"):
        read_crs(crs_doc("abc", 0.1, 0.9, 0.9), 1)  # type: ignore[arg-type]
    with pytest.raises(SidecarError, match="boolean"):
        read_crs(crs_doc(0.1, 0.1, 0.9, 0.9, has_crop="maybe"), 1)


@settings(max_examples=300, deadline=None)
@given(
    x=st.tuples(st.floats(0, 1), st.floats(0, 1)), y=st.tuples(st.floats(0, 1), st.floats(0, 1)),
    orientation=st.integers(1, 8), w=st.integers(1, 9000), h=st.integers(1, 9000),
)
@example(x=(0.0, 1.0), y=(0.0, 1.0), orientation=6, w=40, h=30)  # the whole frame
def test_written_crops_read_back_exactly(x, y, orientation: int, w: int, h: int) -> None:
    box = Box(min(x), min(y), max(x), max(y))
    if not box.is_valid() or box.right - box.left < 2e-6 or box.bottom - box.top < 2e-6:
        return
    doc = XmpDocument.new()
    res = write_crs(doc, box, orientation, size=(w, h))
    if is_full_frame(box, 1e-6):
        # The whole frame and no crop to undo: nothing written (a crop setting would only mark it as edited).
        assert res.status == "unchanged" and res.stored is None
        c = read_crs(parse_xmp(doc.to_bytes()), orientation)
        assert c is None or not c.has_crop
        return
    assert res.status == "written"
    c = read_crs(parse_xmp(doc.to_bytes()), orientation)
    assert c is not None and c.has_crop and not c.already_applied and not c.approximate
    # Lightroom's 6 decimals (issue 14.7): within half a millionth
    assert close(c.in_frame(orientation), box, 5e-7) and close(c.displayed, box, 5e-7)
    stored = (h, w) if orientation >= 5 else (w, h)
    assert c.size == stored and c.orientation == orientation


def test_writer_keeps_a_users_crop_and_replaces_its_own() -> None:
    doc = crs_doc(*LADYBUG)
    assert write_crs(doc, Box(0.1, 0.1, 0.9, 0.9), 1).status == "kept-user-crop"
    assert read_crs(doc, 1).corners == LADYBUG  # type: ignore[union-attr]
    forced = write_crs(doc, Box(0.1, 0.1, 0.9, 0.9), 1, force=True)
    assert forced.status == "written"
    out = doc.to_bytes().decode()
    assert "<crs:CropLeft>0.1</crs:CropLeft>" in out and out.count("CropLeft") == 2  # in place, element style
    assert write_crs(doc, Box(0.2, 0.1, 0.9, 0.9), 1).status == "written"  # pic's own crop: replaced
    assert write_crs(doc, Box(0.2, 0.1, 0.9, 0.9), 1).status == "unchanged"
    assert doc.get(NS_TIFF, "ImageWidth") == "6000"  # existing size and orientation are left alone


def test_writer_refuses_already_applied_and_fills_in_size_and_orientation() -> None:
    with pytest.raises(SidecarError, match="AlreadyApplied"):
        write_crs(crs_doc(*LADYBUG, applied="True"), Box(0.1, 0.1, 0.9, 0.9), 1, force=True)
    doc = XmpDocument.new()
    write_crs(doc, Box(0.1, 0.2, 0.6, 0.9), 6, size=(400, 600))
    assert (doc.get(NS_TIFF, "ImageWidth"), doc.get(NS_TIFF, "ImageLength"), doc.get(NS_TIFF, "Orientation")) == (
        "600", "400", "6")
    assert doc.get(NS_CRS, "HasCrop") == "True" and doc.get(NS_CRS, "CropAngle") == "0"
    c = read_crs(doc, 6)
    assert c is not None and close(c.corners, Box(0.2, 1 - 0.6, 0.9, 1 - 0.1))  # stored frame (FORMATS 5.1, EXIF 6)
    assert close(stored_to_displayed(c.corners, 6), Box(0.1, 0.2, 0.6, 0.9))
    unknown = XmpDocument.new()
    assert any("size unknown" in n for n in write_crs(unknown, Box(0.1, 0.2, 0.6, 0.9), 1).notes)


def test_sidecar_path_replaces_the_extension(tmp_path: Path) -> None:
    assert crs.sidecar_path(tmp_path / "IMG_1.CR2") == tmp_path / "IMG_1.xmp"
    assert crs.sidecar_path(tmp_path / "my.photo.jpg") == tmp_path / "my.photo.xmp"
    (tmp_path / "B.XMP").write_text("x")
    assert crs.sidecar_path(tmp_path / "B.NEF") == tmp_path / "B.XMP"


@pytest.mark.shared
def test_exiv2_reads_the_written_crop_and_every_foreign_property(shared_data: Path, tmp_path: Path) -> None:
    exe = shutil.which("exiv2")
    if exe is None:
        missing_requirement("exiv2 is not installed (apt-get install exiv2)")
    assert exe is not None
    src = (shared_data / "xmp-samples/photoprism/ladybug.xmp").read_bytes().replace(
        b"<crs:AlreadyApplied>True", b"<crs:AlreadyApplied>False")
    before_path, after_path = tmp_path / "before.xmp", tmp_path / "after.xmp"
    before_path.write_bytes(src)
    doc = parse_xmp(src)
    write_crs(doc, Box(0.1, 0.2, 0.6, 0.9), 1, force=True)
    after_path.write_bytes(doc.to_bytes())

    def lines(p: Path) -> dict[str, str]:
        out = subprocess.run([exe, "-pa", str(p)], capture_output=True, check=False, timeout=60).stdout.decode()
        return {ln.split()[0]: ln for ln in out.splitlines() if ln.strip()}

    before, after = lines(before_path), lines(after_path)
    changed = {k for k in before if before[k] != after.get(k)}
    assert changed == {f"Xmp.crs.Crop{k}" for k in ("Left", "Top", "Right", "Bottom")}
    assert after["Xmp.crs.CropLeft"].split()[-1] == "0.1"
    assert "Xmp.pic.CrsCrop" in after


def test_written_fields_are_complete_and_rounded_as_lightroom_writes_them(tmp_path: Path) -> None:
    """Issue 14.7: a new settings packet names its Camera Raw and process version and CropConstrainToWarp (as the
    real Lightroom sidecars do), and edges have Lightroom's 6 decimals; exiftool reads every field."""
    exe = shutil.which("exiftool")
    if exe is None:
        missing_requirement("exiftool is not installed (apt-get install libimage-exiftool-perl)")
    assert exe is not None
    doc = XmpDocument.new()
    write_crs(doc, Box(0.24739599999999995, 0.1, 0.7526040000000001, 0.9), 1, size=(6000, 4000))
    path = tmp_path / "IMG.xmp"
    path.write_bytes(doc.to_bytes())
    out = subprocess.run([exe, "-j", "-XMP-crs:all", str(path)], capture_output=True, check=True, timeout=60).stdout
    tags = json.loads(out)[0]
    assert tags["Version"] == 11.0 or str(tags["Version"]) == "11.0"
    assert str(tags["ProcessVersion"]) in ("11.0", "11")
    assert tags["CropConstrainToWarp"] == 0 and tags["HasSettings"] is True and tags["HasCrop"] is True
    assert (tags["CropLeft"], tags["CropTop"], tags["CropRight"], tags["CropBottom"]) == (0.247396, 0.1, 0.752604, 0.9)
    text = path.read_text()
    assert 'crs:CropLeft="0.247396"' in text and 'crs:CropRight="0.752604"' in text and "0.2473959" not in text
    # an existing packet keeps its own versions
    doc = crs_doc(0.1, 0.1, 0.9, 0.9, has_crop="False")
    doc.set(NS_CRS, "HasSettings", "True", "crs")
    doc.set(NS_CRS, "ProcessVersion", "15.4", "crs")
    write_crs(doc, Box(0.2, 0.1, 0.9, 0.9), 1)
    assert doc.get(NS_CRS, "ProcessVersion") == "15.4" and doc.get(NS_CRS, "Version") is None
