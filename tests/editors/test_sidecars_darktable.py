"""darktable sidecars: params codec, the effective-history reader on real files, and the append recipe (FORMATS 2.2)."""

from __future__ import annotations

import math
import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from pic_plugin.core.errors import SidecarError
from pic_plugin.core.geometry import FULL_FRAME, Box, is_full_frame
from pic_plugin.core.orientation import displayed_to_stored, stored_to_displayed
from pic_plugin.editors import darktable as dt
from pic_plugin.editors.darktable import (
    NS_DT,
    ClippingParams,
    CropParams,
    OwnEntry,
    decode_params,
    encode_params,
    read_crop,
    read_history,
    write_crop,
)
from pic_plugin.editors.xmp import Struct, XmpDocument, parse_xmp

SAMPLES = "xmp-samples/darktable-tests"


def sample(root: Path, name: str) -> XmpDocument:
    matches = sorted((root / "xmp-samples").glob(f"*/{name}*.xmp"))
    assert matches, name
    return parse_xmp(matches[0].read_bytes())


def crop_hex(l: float, t: float, r: float, b: float, n: int = 0, d: int = 0) -> str:  # noqa: E741
    return struct.pack("<4f2i", l, t, r, b, n, d).hex()


def dt_doc(entries: list[tuple], history_end: int | None = None, xmp_version: int = 5, extra: str = "",
           masks: list[int] | None = None) -> XmpDocument:
    """A darktable sidecar with (operation, enabled, modversion, params[, num]) entries."""
    lis = []
    for i, e in enumerate(entries):
        op, en, mv, params = e[:4]
        num = e[4] if len(e) > 4 else i
        lis.append(f'''
     <rdf:li
      darktable:num="{num}"
      darktable:operation="{op}"
      darktable:enabled="{en}"
      darktable:modversion="{mv}"
      darktable:params="{params}"
      darktable:multi_name=""
      darktable:multi_priority="0"
      darktable:blendop_version="11"
      darktable:blendop_params="gz14eJxjYIAACQYYOOHEgAZY0QVwggZ7CB6pfNoAAE8gGQg="/>''')
    mask_lis = "".join(f'''
     <rdf:li darktable:mask_num="{m}" darktable:mask_id="1" darktable:mask_type="1" darktable:mask_name="m"
      darktable:mask_version="6" darktable:mask_points="00" darktable:mask_nb="1" darktable:mask_src="00"/>'''
                       for m in masks or [])
    text = f'''<?xml version="1.0" encoding="UTF-8"?>
<x:xmpmeta xmlns:x="adobe:ns:meta/" x:xmptk="XMP Core 4.4.0-Exiv2">
 <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
  <rdf:Description rdf:about=""
    xmlns:darktable="http://darktable.sf.net/"
   darktable:xmp_version="{xmp_version}"
   darktable:raw_params="0"
   darktable:auto_presets_applied="1"
   darktable:history_end="{len(entries) if history_end is None else history_end}"
   darktable:history_current_hash="261bf19164e6de002b2042b08ed8ed9f"{extra}>
   <darktable:masks_history>
    <rdf:Seq>{mask_lis}
    </rdf:Seq>
   </darktable:masks_history>
   <darktable:history>
    <rdf:Seq>{"".join(lis)}
    </rdf:Seq>
   </darktable:history>
  </rdf:Description>
 </rdf:RDF>
</x:xmpmeta>
'''
    return parse_xmp(text.encode())


def entries(doc: XmpDocument) -> list[dict[str, str | None]]:
    keys = ("num", "operation", "enabled", "modversion", "params", "multi_priority", "blendop_version")
    return [{k: Struct(li).get(NS_DT, k) for k in keys} for li in doc.array_items(NS_DT, "history") or []]


F32 = 2e-7  # float32 precision of normalized edges


def assert_box(a: Box, b: Box, tol: float = F32) -> None:
    assert all(abs(x - y) <= tol for x, y in zip(a, b, strict=True)), (a, b)


# --- params encoding (FORMATS 1.4, 1.6.4) ----------------------------------------------------------------------


def test_params_encoding_examples_from_formats() -> None:
    p = CropParams(0.1, 0.05, 0.9, 0.95)
    assert encode_params(p.encode(1)) == "cdcccc3dcdcc4c3d6666663f3333733f0000000000000000"
    assert encode_params(p.encode(2)) == "cdcccc3dcdcc4c3d6666663f3333733f000000000000000000000000"
    assert encode_params(p.encode(1), "always") == "gz01eJw7e+aM7dkzPrZpaWn2xsbF9gxQAACFJQdO"
    assert decode_params("gz01eJw7e+aM7dkzPrZpaWn2xsbF9gxQAACFJQdO") == p.encode(1)
    blend = decode_params("gz14eJxjYIAACQYYOOHEgAZY0QVwggZ7CB6pfNoAAE8gGQg=")
    assert len(blend) == 420 and encode_params(blend).startswith("gz14")  # 420 // 32 + 1 = 14
    assert encode_params(bytes(100)) == "00" * 100 and encode_params(bytes(101)).startswith("gz")


@pytest.mark.parametrize("bad", ["CDCC", "abc", "zz", "gz", "gzxx1234", "gz01!!!", "gz01" + "eJw7e+aM"])
def test_params_decoding_refuses_what_darktable_refuses(bad: str) -> None:
    with pytest.raises(SidecarError):
        decode_params(bad)


def test_params_decoding_caps_zip_bombs() -> None:
    import base64
    import zlib

    bomb = "gz99" + base64.b64encode(zlib.compress(bytes(dt.MAX_PARAMS_BYTES + 10))).decode()
    with pytest.raises(SidecarError, match="more than"):
        decode_params(bomb)


@settings(max_examples=200, deadline=None)
@given(blob=st.binary(max_size=400), mode=st.sampled_from(["never", "always", "only large entries"]))
def test_params_codec_round_trip(blob: bytes, mode: str) -> None:
    assert decode_params(encode_params(blob, mode)) == blob  # type: ignore[arg-type]


def test_crop_and_clipping_layouts() -> None:
    assert len(CropParams(0, 0, 1, 1).encode(1)) == 24
    assert len(CropParams(0, 0, 1, 1).encode(3)) == 24
    assert CropParams.decode(2, CropParams(0.1, 0.2, 0.3, 0.4, 3, 2, True).encode(2)).aligned is True
    with pytest.raises(SidecarError):
        CropParams.decode(2, bytes(24))  # v2 must be 28 bytes: darktable would drop it ("version mismatch")
    cp = ClippingParams(-1.5, 0.1, 0.2, -0.8, 0.9)
    assert ClippingParams.decode(5, cp.encode()).encode() == cp.encode()
    v4 = cp.encode()[:76]
    assert ClippingParams.decode(4, v4).ratio_d == -2  # migration sets "compute later"
    v3 = struct.pack("<7f", 2.0, 0.1, 0.2, 0.8, 0.9, 0.0, 0.0)
    assert ClippingParams.decode(3, v3).box == Box(*struct.unpack("<4f", v3[4:20]))


# --- reading real sidecars -------------------------------------------------------------------------------------


@pytest.mark.shared
@pytest.mark.parametrize("name", ["0094-", "0095-"])
def test_crop_v1_sample(shared_data: Path, name: str) -> None:
    c = read_crop(sample(shared_data, name), 1)
    assert c is not None and c.module == "crop" and c.num == 11 and c.version == 1 and c.enabled
    # FORMATS 1.6.1: 00000000 b1588f34 f50bdc3e 438e243f 01000000 01000000
    assert_box(c.crop, Box(0.0, 2.67e-7, 0.429779, 0.642796), 1e-6)
    assert c.ratio == (1, 1) and c.params_text == "00000000b1588f34f50bdc3e438e243f0100000001000000"
    assert not c.approximate and c.flip_bits == -1
    # on a 3:2 frame that box is a square: cw/ch are right/bottom edges
    assert (c.crop.width * 3) / (c.crop.height * 2) == pytest.approx(1.0, abs=5e-3)


@pytest.mark.shared
def test_later_crop_entry_wins_and_lens_ashift_make_it_approximate(shared_data: Path) -> None:
    doc = sample(shared_data, "0103-")
    hist = read_history(doc)
    assert hist is not None and [e.num for e in hist.entries if e.operation == "crop"] == [62, 70]
    c = read_crop(doc, 1)
    assert c is not None and c.num == 70 and c.module == "crop"
    assert c.params_text == "1932773b1518a635c3ce7f3fb3087f3f0000000001000000"
    assert_box(c.crop, Box(*struct.unpack("<4f", bytes.fromhex(c.params_text)[:16])))
    assert c.ratio == (1, 0)  # "original image" aspect
    assert c.approximate and any("lens" in n for n in c.notes) and any("ashift" in n for n in c.notes)
    # the clipping entry num 67 is disabled, so it does not compose with the crop
    assert all("clipping" not in n for n in c.notes)


@pytest.mark.shared
def test_clipping_keystone_sample(shared_data: Path) -> None:
    c = read_crop(sample(shared_data, "0077-"), 1)
    assert c is not None and c.module == "clipping" and c.version == 5 and c.num == 8
    # FORMATS 1.7: angle 0, cx .0439 cy .1830 cw .8083 ch .9474, k_type 3, k_apply 1, ratio_d 1 ratio_n 0
    assert_box(c.crop, Box(0.0439, 0.1830, 0.8083, 0.9474), 1e-4)
    assert c.keystone and c.angle == 0.0 and c.approximate and c.ratio == (1, 0)
    assert any("keystone" in n for n in c.notes)


@pytest.mark.shared
@pytest.mark.parametrize(("name", "num", "mirror"), [("0008-", 7, (True, False)), ("0009-", 8, (False, True)),
                                                     ("0010-", 9, (True, True))])
def test_clipping_used_as_mirror(shared_data: Path, name: str, num: int, mirror: tuple[bool, bool]) -> None:
    c = read_crop(sample(shared_data, name), 1)
    assert c is not None and c.module == "clipping" and c.num == num and c.mirror == mirror
    assert c.crop == FULL_FRAME and c.is_full_frame and not c.approximate


@pytest.mark.shared
@pytest.mark.parametrize(("name", "bits", "exif"), [("0005-", 6, 8), ("0006-", 5, 6), ("0007-", 3, 3)])
def test_explicit_flip_entries(shared_data: Path, name: str, bits: int, exif: int) -> None:
    doc = sample(shared_data, name)
    hist = read_history(doc)
    assert hist is not None
    flip = hist.effective()[("flip", 0)]
    assert dt.frame_orientation(flip, 1) == (exif, bits)  # the last flip entry wins; params are bits
    assert read_crop(doc, 1) is None
    # a crop written into it is mapped into darktable's rotated frame and reads back unchanged
    box = Box(0.1, 0.2, 0.5, 0.9)
    w = write_crop(doc, box, 1)
    assert w.status == "written"
    stored_frame = CropParams.decode(1, decode_params(w.params_text or "")).box
    assert_box(stored_frame, stored_to_displayed(displayed_to_stored(box, 1), exif))
    if exif == 6:  # FORMATS 5.1: rotate CW maps (L, T, R, B) to (1-B, L, 1-T, R)
        assert_box(stored_frame, Box(1 - 0.9, 0.1, 1 - 0.2, 0.5))
    back = read_crop(doc, 1)
    assert back is not None and back.frame_orientation == exif
    assert_box(back.crop, box)


@pytest.mark.shared
def test_rotating_clipping_is_an_approximate_bound(shared_data: Path) -> None:
    doc = sample(shared_data, "0035-")
    c = read_crop(doc, 1, size=(3000, 2000))
    assert c is not None and c.module == "clipping" and c.num == 13
    assert c.angle == pytest.approx(-1.0, abs=1e-4) and c.approximate
    assert any("axis-aligned bound" in n for n in c.notes)
    # closed form: crop_auto=1 scales the box into the largest upright 3:2 rectangle inside the rotated image
    a = math.radians(c.angle)
    scale = 1 / (math.cos(abs(a)) + 1.5 * math.sin(abs(a)))
    cp = ClippingParams.decode(5, c.params)
    rot = np.array([[math.cos(a), math.sin(a)], [-math.sin(a), math.cos(a)]])
    corners = np.array([[(x - 0.5) * scale * 3000, (y - 0.5) * scale * 2000]
                        for x in (cp.cx, cp.cw) for y in (cp.cy, cp.ch)])
    back = corners @ rot.T / [3000, 2000] + 0.5
    expected = Box(*back.min(axis=0), *back.max(axis=0)).clamped()
    assert_box(c.crop, expected, 1e-6)
    assert c.crop.width > 0.98 and c.crop.height > 0.98  # almost the full frame, as the sample intends
    # without the image size a 3:2 frame is assumed, and said so
    assert any("assumed" in n for n in (read_crop(doc, 1).notes))  # type: ignore[union-attr]


def _lightroom_to_clipping(l: float, t: float, r: float, b: float, angle: float, w: float, h: float) -> ClippingParams:  # noqa: E741
    """darktable's lightroom.c import (FORMATS 4.2 steps 1-4), written out independently for the cross-check."""
    rangle = math.radians(-angle)

    def rot(x: float, y: float, ra: float) -> tuple[float, float]:
        return (x * math.cos(ra) + y * math.sin(ra), -x * math.sin(ra) + y * math.cos(ra))

    cx, cy = rot((l - 0.5) * w, (t - 0.5) * h, -rangle)
    cw, ch = rot((r - 0.5) * w, (b - 0.5) * h, -rangle)
    nw = w * math.cos(abs(rangle)) + h * math.sin(abs(rangle))
    nh = w * math.sin(abs(rangle)) + h * math.cos(abs(rangle))
    return ClippingParams(-angle, cx / nw + 0.5, cy / nh + 0.5, cw / nw + 0.5, ch / nh + 0.5, crop_auto=0)


def test_lightroom_worked_example_from_formats() -> None:
    cp = _lightroom_to_clipping(0.05, 0.10, 0.95, 0.90, 2.5, 6000, 4000)
    assert cp.angle == -2.5
    assert_box(Box(cp.cx, cp.cy, cp.cw, cp.ch), Box(0.05141, 0.15225, 0.94859, 0.84775), 1e-5)


@settings(max_examples=150, deadline=None)
@given(
    l=st.floats(0.0, 0.4), t=st.floats(0.0, 0.4), r=st.floats(0.6, 1.0), b=st.floats(0.6, 1.0),
    angle=st.floats(-20, 20), aspect=st.floats(0.5, 2.0),
)
def test_rotated_clipping_reader_agrees_with_the_crs_reader(l, t, r, b, angle, aspect) -> None:  # noqa: E741
    """Clipping angles, property-tested: a Lightroom crop imported the way darktable does it reads back (through
    pic's clipping reader) as the same axis-aligned bound as pic's crs reader gives for the crs original."""
    from pic_plugin.editors.crs import _rotated_bound

    w, h = 1000 * aspect, 1000.0
    cp = _lightroom_to_clipping(l, t, r, b, angle, w, h)
    region, exact = dt.clipping_content(cp, FULL_FRAME, (w, h))
    assert exact == (cp.angle == 0.0)
    assert_box(region, _rotated_bound(Box(l, t, r, b), angle, (w, h)), 1e-9)


# --- the append recipe -----------------------------------------------------------------------------------------


@pytest.mark.shared
def test_append_to_a_full_history_follows_the_recipe(shared_data: Path) -> None:
    doc = sample(shared_data, "darktable_default")  # xmp_version 4, 11 entries, flip auto, no crop
    before = dict(doc.properties())
    w = write_crop(doc, Box(0.1, 0.05, 0.9, 0.95), 1)
    assert w.status == "written" and w.num == 11 and w.enabled
    assert w.params_text == "cdcccc3dcdcc4c3d6666663f3333733f0000000000000000"
    rows = entries(doc)
    assert len(rows) == 12 and rows[-1] == {
        "num": "11", "operation": "crop", "enabled": "1", "modversion": "1",
        "params": w.params_text, "multi_priority": "0", "blendop_version": rows[10]["blendop_version"]}
    after = dict(doc.properties())
    assert after[f"{{{NS_DT}}}history_end"] == "12"
    changed = {k for k in before if before[k] != after.get(k)}
    hashes = {f"{{{NS_DT}}}{k}" for k in ("history_basic_hash", "history_auto_hash", "history_current_hash")}
    assert changed == {f"{{{NS_DT}}}history_end", f"{{{NS_DT}}}history"} | (hashes & set(before))
    assert not hashes & set(after)  # stale hashes deleted: darktable recomputes them
    # nothing else moved: xmp_version, timestamps, auto_presets_applied and the old entries stay as they were
    assert all(after[k] == v for k, v in before.items() if k not in changed)


def test_redo_entries_and_their_masks_are_dropped() -> None:
    doc = dt_doc([("flip", 1, 2, "ffffffff"), ("exposure", 1, 6, "00" * 24), ("exposure", 1, 6, "11" * 24)],
                 history_end=1, masks=[0, 1, 2])
    w = write_crop(doc, Box(0.2, 0.2, 0.8, 0.8), 1)
    assert w.num == 1 and [r["operation"] for r in entries(doc)] == ["flip", "crop"]
    assert doc.get(NS_DT, "history_end") == "2"
    masks = doc.array_items(NS_DT, "masks_history") or []
    assert [Struct(li).get(NS_DT, "mask_num") for li in masks] == ["0"]
    assert any("undone" in n for n in w.notes)


def test_history_end_beyond_the_entries_is_clamped() -> None:
    doc = dt_doc([("flip", 1, 2, "ffffffff")], history_end=7)
    assert write_crop(doc, Box(0.2, 0.2, 0.8, 0.8), 1).num == 1


@pytest.mark.parametrize(("version", "size"), [(2, 28), (3, 24), (1, 24)])
def test_existing_crop_entry_version_and_size_are_copied(version: int, size: int) -> None:
    params = CropParams(0, 0, 1, 1).encode(version)
    doc = dt_doc([("crop", 0, version, params.hex())])
    w = write_crop(doc, Box(0.2, 0.2, 0.8, 0.8), 1)
    row = entries(doc)[-1]
    assert row["modversion"] == str(version) and len(decode_params(row["params"] or "")) == size
    assert w.status == "written"


def test_custom_iop_order_gets_crop() -> None:
    order = "rawprepare,0,flip,0,exposure,0,toneequal,0,graduatednd,0,colorout,0"
    doc = dt_doc([("flip", 1, 2, "ffffffff")],
                 extra=f'\n   darktable:iop_order_version="0"\n   darktable:iop_order_list="{order}"')
    write_crop(doc, Box(0.2, 0.2, 0.8, 0.8), 1)
    assert doc.get(NS_DT, "iop_order_list") == order.replace("toneequal,0,", "toneequal,0,crop,0,")
    write_crop(doc, Box(0.1, 0.2, 0.8, 0.8), 1, own=None, force=True)
    assert (doc.get(NS_DT, "iop_order_list") or "").count("crop,0") == 1


@pytest.mark.shared
def test_custom_order_that_lists_crop_is_left_alone(shared_data: Path) -> None:
    doc = sample(shared_data, "0103-")
    order = doc.get(NS_DT, "iop_order_list")
    assert order and "crop,0" in order
    w = write_crop(doc, Box(0.2, 0.2, 0.8, 0.8), 1, force=True)
    assert w.status == "written" and w.num == 71 and w.approximate  # lens + ashift precede the crop
    assert doc.get(NS_DT, "iop_order_list") == order


@pytest.mark.parametrize(("version", "match"), [(3, "not supported"), (1, "not supported"), (7, "not supported")])
def test_unsupported_xmp_versions_are_refused(version: int, match: str) -> None:
    doc = dt_doc([("flip", 1, 2, "ffffffff")], xmp_version=version)
    before = doc.to_bytes()
    with pytest.raises(SidecarError, match=match):
        write_crop(doc, Box(0.2, 0.2, 0.8, 0.8), 1)
    assert doc.to_bytes() == before


def test_broken_history_is_refused_not_made_worse() -> None:
    doc = dt_doc([("flip", 1, 2, "ffffffff")])
    Struct((doc.array_items(NS_DT, "history") or [])[0]).body.remove_attr(NS_DT, "params")
    with pytest.raises(SidecarError, match="broken"):
        write_crop(doc, Box(0.2, 0.2, 0.8, 0.8), 1)
    missing = parse_xmp(dt_doc([("flip", 1, 2, "ffffffff")]).to_bytes().replace(b'darktable:xmp_version="5"', b""))
    with pytest.raises(SidecarError, match="xmp_version"):
        write_crop(missing, Box(0.2, 0.2, 0.8, 0.8), 1)


@pytest.mark.parametrize("name", ["IMG_1.JPG", "IMG_1.NEF"])
def test_new_sidecar_is_the_minimal_document(name: str) -> None:
    doc = XmpDocument.new()
    w = write_crop(doc, Box(0.25, 0.1, 0.75, 0.9), 1, mode="suggest", image_name=name)
    assert w.status == "written" and w.num == 0 and not w.enabled
    assert doc.get(NS_DT, "xmp_version") == "5" and doc.get(NS_DT, "auto_presets_applied") == "0"
    assert doc.get(NS_DT, "history_end") == "1" and doc.get(NS_DT, "iop_order_version") == "2"
    assert doc.get("http://ns.adobe.com/xap/1.0/mm/", "DerivedFrom") == name
    assert b'xmlns:darktable="http://darktable.sf.net/"' in doc.to_bytes()  # the literal darktable looks for
    assert entries(doc)[0]["enabled"] == "0"


def test_a_foreign_sidecar_gets_darktable_data_added() -> None:
    doc = parse_xmp(b"""<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
<rdf:Description rdf:about="" xmlns:digiKam="http://www.digikam.org/ns/1.0/" digiKam:ColorLabel="3"/></rdf:RDF></x:xmpmeta>""")
    write_crop(doc, Box(0.25, 0.1, 0.75, 0.9), 1, image_name="a.jpg")
    assert doc.get("http://www.digikam.org/ns/1.0/", "ColorLabel") == "3"
    assert read_crop(doc, 1) is not None


def test_pixel_exact_edges() -> None:
    """0.1/0.7 on 600 px: darktable's float32 arithmetic would give 59/359 px; the written edges give 60/360."""
    doc = XmpDocument.new()
    w = write_crop(doc, Box(0.1, 0.1, 0.7, 0.5), 1, size=(600, 400))
    p = CropParams.decode(1, decode_params(w.params_text or ""))
    f = np.float32
    assert int(f(600) * f(p.cx)) == 60 and int(f(600) * (f(p.cw) - f(p.cx))) == 360
    assert int(f(400) * f(p.cy)) == 40 and int(f(400) * (f(p.ch) - f(p.cy))) == 160
    assert_box(p.box, Box(0.1, 0.1, 0.7, 0.5))


# --- pic's own entry vs the user's crop ------------------------------------------------------------------------


def test_rerun_replaces_our_last_entry() -> None:
    doc = dt_doc([("flip", 1, 2, "ffffffff")])
    first = write_crop(doc, Box(0.1, 0.1, 0.9, 0.9), 1)
    second = write_crop(doc, Box(0.2, 0.2, 0.8, 0.8), 1, own=first.own)
    assert second.status == "written" and second.replaced_own and second.num == first.num == 1
    assert [r["operation"] for r in entries(doc)] == ["flip", "crop"]
    assert write_crop(doc, Box(0.2, 0.2, 0.8, 0.8), 1, own=second.own).status == "unchanged"


def test_rerun_after_later_user_edits_appends() -> None:
    doc = dt_doc([("flip", 1, 2, "ffffffff")])
    first = write_crop(doc, Box(0.1, 0.1, 0.9, 0.9), 1)
    # the user adds an exposure edit in darktable after pic's crop
    doc2 = dt_doc([("flip", 1, 2, "ffffffff"), ("crop", 1, 1, first.params_text), ("exposure", 1, 6, "00" * 24)])
    second = write_crop(doc2, Box(0.2, 0.2, 0.8, 0.8), 1, own=first.own)
    assert second.status == "written" and second.num == 3 and not second.replaced_own
    assert [r["operation"] for r in entries(doc2)] == ["flip", "crop", "exposure", "crop"]


def test_user_crop_is_kept_unless_forced() -> None:
    user = crop_hex(0.3, 0.3, 0.7, 0.7)
    doc = dt_doc([("flip", 1, 2, "ffffffff"), ("crop", 1, 1, user)])
    before = doc.to_bytes()
    w = write_crop(doc, Box(0.1, 0.1, 0.9, 0.9), 1, own=OwnEntry(1, crop_hex(0.1, 0.1, 0.9, 0.9), True))
    assert w.status == "kept-user-crop" and w.num == 1 and w.params_text == user
    assert doc.to_bytes() == before  # not even the redo area or the hashes were touched
    forced = write_crop(doc, Box(0.1, 0.1, 0.9, 0.9), 1, force=True)
    assert forced.status == "written" and forced.num == 2
    assert entries(doc)[1]["params"] == user  # the user's entry stays in the history (undo-able)


def test_user_clipping_counts_as_the_users_crop_but_a_mirror_does_not() -> None:
    clip = ClippingParams(0.0, 0.1, 0.1, 0.9, 0.9).encode().hex()
    doc = dt_doc([("flip", 1, 2, "ffffffff"), ("clipping", 1, 5, clip)])
    assert write_crop(doc, Box(0.2, 0.2, 0.8, 0.8), 1).status == "kept-user-crop"
    mirror = ClippingParams(0.0, 0.0, 0.0, -1.0, 1.0).encode().hex()
    doc = dt_doc([("flip", 1, 2, "ffffffff"), ("clipping", 1, 5, mirror)])
    w = write_crop(doc, Box(0.1, 0.2, 0.5, 0.9), 1)
    assert w.status == "written"
    # the crop frame is mirrored by clipping; the content region read back is what was asked for
    assert_box(CropParams.decode(1, decode_params(w.params_text or "")).box, Box(0.5, 0.2, 0.9, 0.9))
    back = read_crop(doc, 1)
    assert back is not None and back.module == "crop+clipping"
    assert_box(back.crop, Box(0.1, 0.2, 0.5, 0.9))


def test_disabled_or_full_frame_crops_are_not_the_users() -> None:
    for entry in (("crop", 0, 1, crop_hex(0.3, 0.3, 0.7, 0.7)), ("crop", 1, 1, crop_hex(0, 0, 1, 1))):
        doc = dt_doc([("flip", 1, 2, "ffffffff"), entry])
        assert write_crop(doc, Box(0.1, 0.1, 0.9, 0.9), 1, mode="suggest").status == "written"


def test_suggestion_the_user_enabled_becomes_theirs() -> None:
    doc = dt_doc([("flip", 1, 2, "ffffffff")])
    ours = write_crop(doc, Box(0.1, 0.1, 0.9, 0.9), 1, mode="suggest")
    assert not ours.enabled
    # in darktable the user switches the crop module on without moving the box: a new enabled entry
    doc2 = dt_doc([("flip", 1, 2, "ffffffff"), ("crop", 0, 1, ours.params_text), ("crop", 1, 1, ours.params_text)])
    assert write_crop(doc2, Box(0.2, 0.2, 0.8, 0.8), 1, mode="suggest", own=ours.own).status == "kept-user-crop"


def test_own_entry_is_recognised_after_darktable_renumbers() -> None:
    """auto_presets_applied=0 makes darktable prepend its defaults and shift every num on first load."""
    doc = XmpDocument.new()
    ours = write_crop(doc, Box(0.1, 0.1, 0.9, 0.9), 1, image_name="a.jpg")
    shifted = dt_doc([("rawprepare", 1, 1, "00" * 8), ("flip", 1, 2, "ffffffff"), ("crop", 1, 1, ours.params_text)])
    w = write_crop(shifted, Box(0.2, 0.2, 0.8, 0.8), 1, own=ours.own)
    assert w.status == "written" and w.replaced_own and w.num == 2


def test_write_refuses_invalid_crops() -> None:
    with pytest.raises(SidecarError, match="invalid crop"):
        write_crop(XmpDocument.new(), Box(0.5, 0.5, 0.4, 0.9), 1)
    with pytest.raises(SidecarError, match="invalid crop"):
        write_crop(XmpDocument.new(), Box(float("nan"), 0, 1, 1), 1)


# --- property tests --------------------------------------------------------------------------------------------

unit = st.floats(0.0, 1.0, allow_nan=False)


@st.composite
def crops(draw) -> Box:  # type: ignore[no-untyped-def]
    x0, x1 = sorted((draw(unit), draw(unit)))
    y0, y1 = sorted((draw(unit), draw(unit)))
    return Box(x0, y0, max(x1, x0 + 1e-3), max(y1, y0 + 1e-3)).clamped()


FLIPS = [None, ("flip", 1, 2, "ffffffff"), ("flip", 0, 2, "ffffffff")] + [
    ("flip", 1, 2, struct.pack("<i", b).hex()) for b in range(8)] + [("flip", 1, 1, struct.pack("<i", 5).hex())]


@settings(max_examples=300, deadline=None)
@given(box=crops(), orientation=st.integers(1, 8), flip=st.sampled_from(FLIPS), mode=st.sampled_from(["apply", "suggest"]),
       w=st.integers(16, 6000), h=st.integers(16, 6000))
@example(box=Box(0.0, 1e-05, 0.001, 0.5), orientation=1, flip=None, mode="apply", w=16, h=16)  # edge 1e-5 px off
@example(box=Box(0.0, 0.0, 1.0, 1.0), orientation=6, flip=None, mode="apply", w=16, h=16)  # the whole frame
def test_written_crops_read_back_exactly(box: Box, orientation: int, flip, mode: str, w: int, h: int) -> None:
    if box.right > 1.0 or box.bottom > 1.0 or not box.is_valid():
        return
    doc = dt_doc([flip] if flip else [])
    written = write_crop(doc, box, orientation, mode=mode, size=(w, h))  # type: ignore[arg-type]
    again = parse_xmp(doc.to_bytes())
    c = read_crop(again, orientation, (w, h))
    if is_full_frame(box, dt.FULL_FRAME_EPS):
        # The whole frame on a history without a crop: nothing to write (an entry would only mark it as edited).
        assert written.status == "unchanged" and written.num is None and c is None
        return
    assert c is not None and c.enabled == (mode == "apply") and c.num == written.num
    # float32 edges, snapped to whole pixels when within 1/1000 px of them, plus a nudge of a few ulps
    assert_box(c.crop, box, max(2e-6, 1e-3 / min(w, h)))


def test_sidecar_names_and_duplicates(tmp_path: Path) -> None:
    img = tmp_path / "IMG_0001.CR2"
    assert dt.sidecar_path(img) == tmp_path / "IMG_0001.CR2.xmp"
    assert dt.sidecar_path(img, 1) == tmp_path / "IMG_0001_01.CR2.xmp"
    assert dt.sidecar_path(img, 123) == tmp_path / "IMG_0001_123.CR2.xmp"
    for n in (0, 1, 12, 123):
        dt.sidecar_path(img, n).write_text("x")
    (tmp_path / "IMG_0001_5.CR2.xmp").write_text("x")  # one digit: not darktable's naming
    (tmp_path / "IMG_0001_02.CR2").write_text("x")  # a real photo of that name owns its sidecar
    (tmp_path / "IMG_0001_02.CR2.xmp").write_text("x")
    assert [v for v, _ in dt.duplicate_sidecars(img)] == [0, 1, 12, 123]


def test_an_empty_clipping_box_cannot_anchor_a_forced_crop() -> None:
    clip = ClippingParams(0.0, 0.5, 0.5, 0.5, 0.9).encode().hex()
    doc = dt_doc([("clipping", 1, 5, clip)])
    assert write_crop(doc, Box(0.2, 0.2, 0.8, 0.8), 1).status == "kept-user-crop"
    with pytest.raises(SidecarError, match="empty box"):
        write_crop(doc, Box(0.2, 0.2, 0.8, 0.8), 1, force=True)


# --- the ratio lock (issue 14.3: the crop module showed "freehand" for a 4:5 crop) ------------------------------


@pytest.mark.parametrize(
    ("ratio", "box", "frame", "expected"),
    [
        ("4:5", Box(0.25, 0.0, 0.75, 0.9375), (1200, 800), (4, -5)),  # portrait crop of a landscape frame: toggled
        ("4:5", Box(0.0, 0.1, 1.0, 0.1 + 1000 / 1200), (800, 1200), (4, 5)),  # portrait crop of a portrait frame
        ("3:2", Box(0.0, 0.0, 1.0, 1.0), (1200, 800), (2, 3)),  # long:short, d >= n
        ("16:9", Box(0.0, 0.0, 1.0, 0.5625), (1000, 1000), (9, 16)),  # a square frame counts as landscape
        ("1:1", Box(0.2, 0.0, 0.8, 0.9), (600, 400), (1, 1)),
        ("original", Box(0.1, 0.1, 0.9, 0.9), (1200, 800), (0, 1)),  # n = 0, |d| = 1: "original image"
        ("free", Box(0.1, 0.1, 0.9, 0.9), (1200, 800), (0, 0)),
        ("4:5", Box(0.1, 0.1, 0.9, 0.9), None, (0, 0)),  # no frame size: freehand, never a wrong sign
    ],
)
def test_crop_ratio_lock_follows_crop_c(ratio: str, box: Box, frame: tuple[int, int] | None,
                                        expected: tuple[int, int]) -> None:
    assert dt.crop_ratio_lock(ratio, box, frame) == expected


def test_write_crop_stores_the_ratio_the_crop_module_shows() -> None:
    """A 4:5 crop of a 1200x800 photo: params end with ratio_n=4, ratio_d=-5 (crop.c: the lock is relative to the
    frame, turned), so darktable's crop module opens locked to 4:5 instead of freehand."""
    doc = XmpDocument.new()
    w = write_crop(doc, Box(0.25, 0.0, 0.75, 0.9375), 1, size=(1200, 800), ratio="4:5")
    p = CropParams.decode(1, decode_params(w.params_text))
    assert (p.ratio_n, p.ratio_d) == (4, -5)
    # displayed portrait photo stored landscape (EXIF 6): the frame is upright too, so the lock is not turned
    doc = XmpDocument.new()
    w = write_crop(doc, Box(0.0, 0.1, 1.0, 0.1 + 1000 / 1200), 6, size=(800, 1200), ratio="4:5")
    p = CropParams.decode(1, decode_params(w.params_text))
    assert (p.ratio_n, p.ratio_d) == (4, 5)
    doc = XmpDocument.new()
    w = write_crop(doc, Box(0.1, 0.1, 0.8, 0.9), 1, size=(1200, 800), ratio="free")
    assert CropParams.decode(1, decode_params(w.params_text)).ratio_d == 0
