"""digiKam image histories: parsing (hardened) and replaying the geometry against an independent truth.

The truth is computed by actually applying the steps to a small "coordinate image" with numpy (each pixel holds
its own original x, y) and locating what survives; the replay under test uses exact rational affine maps.
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

import numpy as np
import pytest
from digikam_fixtures import apply_numpy, chains, coordinate_image, crop_step, exif_display, rotate_step
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pic_plugin.core.errors import SidecarError
from pic_plugin.core.geometry import Box
from pic_plugin.editors.digikam.history import (
    FileRef,
    FilterStep,
    History,
    HistoryError,
    parse_history,
    replay,
    unique_hash_v2,
)

# --- helpers: steps and the numpy truth -------------------------------------------------------------------------








def resize_step(w: int, h: int) -> FilterStep:
    return FilterStep("transform:resize", "Resize", 1, "reproducible", False, (("height", str(h)), ("width", str(w))))










# --- replay vs numpy truth ----------------------------------------------------------------------------------------


@settings(max_examples=400, deadline=None)
@given(chains())
def test_replay_equals_the_region_numpy_keeps(chain):
    (w, h), steps = chain
    arr = coordinate_image(w, h)
    for s in steps:
        arr = apply_numpy(arr, s)
    xs, ys = arr[..., 0], arr[..., 1]
    truth = Box(xs.min() / w, ys.min() / h, (xs.max() + 1) / w, (ys.max() + 1) / h)
    got = replay(steps, (w, h))
    assert got.box == truth
    assert got.size == (arr.shape[1], arr.shape[0])
    # The version equals the region of the original, turned by the orientation the replay reports.
    region = coordinate_image(w, h)[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
    assert np.array_equal(exif_display(region, got.orientation), arr)


@settings(max_examples=150, deadline=None)
@given(chains(max_steps=4), st.integers(2, 4))
def test_resize_scales_later_pixel_coordinates(chain, s):
    """Upscaling by s and then cropping s-times larger pixels is the same crop."""
    (w, h), steps = chain
    plain = replay(steps, (w, h))
    scaled: list[FilterStep] = [resize_step(w * s, h * s)]
    for st_ in steps:
        if st_.is_crop():
            x, y, cw, ch = (int(st_.param(k)) for k in ("x", "y", "width", "height"))
            scaled.append(crop_step(x * s, y * s, cw * s, ch * s))
        else:
            scaled.append(st_)
    got = replay(scaled, (w, h))
    assert got.box == plain.box
    assert got.orientation == plain.orientation


@settings(max_examples=150, deadline=None)
@given(st.integers(4, 40), st.integers(4, 40), st.integers(2, 60), st.integers(2, 60), st.data())
def test_resize_then_crop_matches_nearest_neighbour_within_a_pixel(w, h, nw, nh, data):
    x = data.draw(st.integers(0, nw - 1))
    y = data.draw(st.integers(0, nh - 1))
    cw = data.draw(st.integers(1, nw - x))
    ch = data.draw(st.integers(1, nh - y))
    steps = [resize_step(nw, nh), crop_step(x, y, cw, ch)]
    arr = coordinate_image(w, h)
    for s in steps:
        arr = apply_numpy(arr, s)
    got = replay(steps, (w, h)).box
    xs, ys = arr[..., 0], arr[..., 1]
    # Nearest neighbour keeps the source pixel under each destination pixel centre: the exact region's edges
    # are within one destination pixel (w/nw source pixels) plus one source pixel of what survives.
    tx, ty = w / nw + 1, h / nh + 1
    assert abs(got.left * w - xs.min()) <= tx and abs(got.right * w - (xs.max() + 1)) <= tx
    assert abs(got.top * h - ys.min()) <= ty and abs(got.bottom * h - (ys.max() + 1)) <= ty


def test_replay_worked_example():
    # 6000x4000 original; rotate right (now 4000x6000), crop 1000,1500 2000x3000.
    chain = replay([rotate_step(90), crop_step(1000, 1500, 2000, 3000)], (6000, 4000))
    # Rotated frame (x', y') comes from original (y', H - x'): x'=1000..3000 -> original y = 1000..3000,
    # y'=1500..4500 -> original x = 1500..4500.
    assert chain.box == Box(1500 / 6000, 1000 / 4000, 4500 / 6000, 3000 / 4000)
    assert chain.orientation == 6 and chain.size == (2000, 3000)


def test_replay_clamps_a_crop_reaching_outside_like_digikam():
    chain = replay([crop_step(50, 50, 100, 100)], (120, 80))
    assert chain.box == Box(50 / 120, 50 / 80, 1.0, 1.0)
    assert any("clamped" in n for n in chain.notes)


@pytest.mark.parametrize("steps, message", [
    ([crop_step(200, 0, 10, 10)], "outside"),
    ([FilterStep("digikam:RatioCrop", params=(("x", "a"), ("y", "0"), ("width", "1"), ("height", "1")))], "number"),
    ([FilterStep("digikam:RatioCrop", params=(("x", "0"),))], "missing"),
    ([FilterStep("digikam:FreeRotationFilter"), crop_step(0, 0, 5, 5)], "unknown size"),
])
def test_replay_refuses_what_it_cannot_follow(steps, message):
    with pytest.raises(HistoryError, match=message):
        replay(steps, (100, 100))


def test_colour_filters_do_not_move_pixels_and_warps_are_approximate():
    steps = [FilterStep("digikam:CurvesFilter", params=(("curveRGB", "0 0 255 255"),)), crop_step(10, 10, 20, 20)]
    exact = replay(steps, (100, 100))
    assert exact.box == Box(0.1, 0.1, 0.3, 0.3) and not exact.approximate
    warped = replay([FilterStep("digikam:LensFunFilter"), *steps], (100, 100))
    assert warped.box == exact.box and warped.approximate


# --- the document ------------------------------------------------------------------------------------------------

ORIGINAL = FileRef("original", "a" * 32 + "0123456789abcdef" * 2, "IMG 0001 \"q\" $x.JPG", "/photos/2024",
                   "0123456789abcdef" * 2, 5123456, "2024-05-01T10:00:00")


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(chains(), st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), max_size=20))
def test_history_xml_round_trip(chain, name):
    _, steps = chain
    ref = FileRef("original", None, name or "x.jpg", "/p", None, None, None)
    history = History([ref, *steps, FileRef("source", None, "v.jpg", "/p")])
    back = parse_history(history.to_xml())
    assert back.items == history.items
    assert back.steps_from_original() == steps


def test_digikam_writer_structure_is_read():
    # The structure DImageHistory::toXml() writes (FORMATS.md §3.2), verbatim.
    xml = """<?xml version="1.0" encoding="UTF-8"?>
<history version="1">
 <file uuid="u1" type="original">
  <fileParams fileName="IMG_0001.JPG" filePath="/photos/2024" fileHash="0123456789abcdef0123456789abcdef" fileSize="5123456" creationDate="2024-05-01T10:00:00"/>
 </file>
 <filter filterName="digikam:RatioCrop" filterDisplayName="Aspect Ratio Crop" filterVersion="1" filterCategory="reproducible">
  <params>
   <param name="height" value="2000"/>
   <param name="width" value="3000"/>
   <param name="x" value="500"/>
   <param name="y" value="300"/>
  </params>
 </filter>
</history>
"""
    h = parse_history(xml)
    assert h.original is not None and h.original.file_size == 5123456
    assert h.original.path() == Path("/photos/2024/IMG_0001.JPG")
    assert h.original.hash_hint() == "0123456789abcdef0123456789abcdef"
    (step,) = h.steps_from_original()
    assert replay([step], (6000, 4000)).box == Box(500 / 6000, 300 / 4000, 3500 / 6000, 2300 / 4000)


def test_uuid_tail_is_the_hash_hint():
    assert ORIGINAL.hash_hint() == "0123456789abcdef" * 2
    assert FileRef("original", "f" * 32 + "0" * 32).hash_hint() == "0" * 32
    assert FileRef("original", "short").hash_hint() is None


def test_unique_hash_v2(tmp_path: Path):
    import hashlib

    small = tmp_path / "small.bin"
    small.write_bytes(b"abc")
    assert unique_hash_v2(small) == hashlib.md5(b"abcabc").hexdigest()
    big = tmp_path / "big.bin"
    data = os.urandom(300 * 1024)
    big.write_bytes(data)
    assert unique_hash_v2(big) == hashlib.md5(data[:102400] + data[-102400:]).hexdigest()
    empty = tmp_path / "empty.bin"
    empty.write_bytes(b"")
    assert unique_hash_v2(empty) == hashlib.md5(b"").hexdigest()


# --- hostile documents -----------------------------------------------------------------------------------------


def hostile_documents(secret: Path) -> dict[str, str]:
    uri = secret.as_uri()
    return {
        "billion laughs": '<?xml version="1.0"?><!DOCTYPE h [<!ENTITY a "aaaaaaaaaa">'
        '<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;"><!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">]>'
        '<history version="1"><filter filterName="&c;"/></history>',
        "external entity": f'<?xml version="1.0"?><!DOCTYPE h [<!ENTITY x SYSTEM "{uri}">]>'
        '<history version="1"><filter filterName="&x;"/></history>',
        "external dtd": f'<?xml version="1.0"?><!DOCTYPE history SYSTEM "{uri}"><history version="1"/>',
        "parameter entity": f'<?xml version="1.0"?><!DOCTYPE h [<!ENTITY % p SYSTEM "{uri}"> %p;]><history/>',
        "deep": "<history>" + "<x>" * 5000 + "</x>" * 5000 + "</history>",
        "huge": '<history version="1">' + "<!-- padding -->" * 300_000 + "</history>",
        "not xml": "<history><filter></history>",
        "wrong root": '<html><filter filterName="digikam:RatioCrop"/></html>',
        "xinclude": '<history xmlns:xi="http://www.w3.org/2001/XInclude">'
        f'<xi:include href="{uri}" parse="text"/></history>',
    }


@pytest.mark.parametrize("kind", list(hostile_documents(Path("/x"))))
def test_hostile_history_documents_are_refused_cleanly(kind, tmp_path: Path):
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET")
    doc = hostile_documents(secret)[kind]
    t = time.perf_counter()
    try:
        h = parse_history(doc)
    except SidecarError as exc:
        assert str(exc) and "TOP-SECRET" not in str(exc)
    else:
        # Only the XInclude one is well-formed and harmless: the include is an unknown element, never followed.
        assert kind == "xinclude" and h.items == []
    assert time.perf_counter() - t < 2.0


@settings(max_examples=300, deadline=None)
@given(st.one_of(
    st.text(max_size=400),
    st.binary(max_size=400),
    st.builds(lambda pre, mid, post: pre + mid + post,
              st.sampled_from(["<history>", '<?xml version="1.0"?><history version="1">', "<!DOCTYPE x []><history>",
                               "<history><filter filterName='transform:crop'><params>"]),
              st.text(alphabet='<>/="&;!-[]% abcxyparamnewidthvalue0123456789', max_size=200),
              st.sampled_from(["</history>", "</params></filter></history>", ""])),
))
def test_fuzzed_documents_never_crash(doc):
    try:
        h = parse_history(doc)
    except SidecarError:
        return
    with contextlib.suppress(HistoryError):
        replay(h.steps_from_original(), (640, 480))


def test_version_keeping_the_original_orientation_was_cropped_in_the_stored_frame(tmp_path: Path):
    """Batch Queue Manager versions are not auto-rotated: a version that keeps the original's EXIF orientation
    (instead of the editor's reset to 1) had its steps applied to the stored raster."""
    from pic_plugin.core.orientation import stored_to_displayed
    from pic_plugin.editors.digikam.history import OriginalLink, VersionInfo, version_crop

    steps = [crop_step(0, 0, 30, 20)]
    info = VersionInfo(tmp_path / "v.jpg", History([ORIGINAL, *steps]), "embedded", None)
    link = OriginalLink(tmp_path / "o.jpg", "hash", True)
    editor = version_crop(info, (40, 60), link, version_orientation=1, original_orientation=6)
    bqm = version_crop(info, (40, 60), link, version_orientation=6, original_orientation=6)
    assert editor.crop == Box(0, 0, 30 / 40, 20 / 60)
    assert bqm.crop == stored_to_displayed(Box(0, 0, 30 / 60, 20 / 40), 6)
    assert any("Batch Queue Manager" in n for n in bqm.detail["notes"])
