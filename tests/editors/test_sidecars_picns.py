"""pic's own namespace: the record round-trips exactly, replaces itself, and Exiv2 lists it."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import missing_requirement
from pic_plugin.core.errors import SidecarError
from pic_plugin.core.geometry import Box
from pic_plugin.core.suggestion import Alternative, Suggestion
from pic_plugin.editors import picns
from pic_plugin.editors.darktable import OwnEntry
from pic_plugin.editors.picns import NS_PIC, PicRecord, read_record, write_record
from pic_plugin.editors.xmp import XmpDocument, clean_text, parse_xmp

unit = st.floats(0.0, 1.0, allow_nan=False)


@st.composite
def boxes(draw) -> Box:  # type: ignore[no-untyped-def]
    x0, x1 = sorted((draw(unit), draw(unit)))
    y0, y1 = sorted((draw(unit), draw(unit)))
    return Box(x0, y0, x1, y1)


@settings(max_examples=200, deadline=None)
@given(
    crop=boxes(), score=st.floats(0, 1), alts=st.lists(st.tuples(boxes(), st.floats(0, 1)), max_size=4),
    user=st.none() | st.text(min_size=1, max_size=30).filter(lambda s: s == s.strip() and s.strip()),
    ratio=st.sampled_from(["free", "original", "4:5", "16:9"]), orientation=st.integers(1, 8),
    dt=st.none() | st.builds(OwnEntry, st.integers(0, 500), st.just("cdcccc3d" * 3), st.booleans()),
    crs=st.none() | boxes(),
)
def test_record_round_trips_exactly(crop, score, alts, user, ratio, orientation, dt, crs) -> None:
    rec = PicRecord(crop=crop, score=score, ratio=ratio, model="m-1", user=user, created="2026-05-06T10:11:12Z",
                    size=(4000, 3000), orientation=orientation, state="applied", alternatives=alts, darktable=dt,
                    crs=crs)
    doc = XmpDocument.new()
    write_record(doc, rec)
    back = read_record(parse_xmp(doc.to_bytes()))
    assert back is not None
    if user is not None:  # characters XML cannot carry at all are replaced by U+FFFD, as everywhere
        assert back.user == clean_text(user)
        back.user = user
    assert back == rec


def test_from_suggestion_and_rewrite_replaces_the_old_record() -> None:
    s = Suggestion(path="x", crop=Box(0.1, 0.2, 0.8, 0.9), score=0.42, ratio="4:5", size=(400, 500), model="m2",
                   user="anna", alternatives=[Alternative(Box(0, 0, 0.5, 0.5), 0.1), Alternative(Box(0, 0, 1, 0.5), 0.05)],
                   created=1778061072.0)
    doc = XmpDocument.new()
    write_record(doc, PicRecord.from_suggestion(s, 6))
    rec = read_record(doc)
    assert rec is not None and rec.created == "2026-05-06T09:51:12Z" and rec.orientation == 6 and rec.size == (400, 500)
    assert len(rec.alternatives) == 2 and rec.user == "anna" and rec.state == "suggested"
    write_record(doc, PicRecord(crop=Box(0, 0, 1, 1)))
    again = read_record(doc)
    assert again is not None and again.alternatives == [] and again.user is None
    assert doc.to_bytes().count(b"pic:Crop=") == 1


def test_damaged_record_is_a_sidecar_error() -> None:
    doc = XmpDocument.new()
    doc.set(NS_PIC, "Crop", "0.1 zero 0.5 0.5", "pic")
    with pytest.raises(SidecarError, match="four numbers"):
        read_record(doc)
    doc.set(NS_PIC, "Crop", "0.1 0.1 0.5 nan")
    with pytest.raises(SidecarError, match="finite"):
        read_record(doc)
    assert read_record(XmpDocument.new()) is None


def test_exiv2_lists_the_record_without_registration(tmp_path: Path) -> None:
    exe = shutil.which("exiv2")
    if exe is None:
        missing_requirement("exiv2 is not installed (apt-get install exiv2)")
    assert exe is not None
    doc = XmpDocument.new()
    write_record(doc, PicRecord(crop=Box(0.1, 0.2, 0.8, 0.9), score=0.5, model="m", alternatives=[(Box(0, 0, 1, 1), 0.1)],
                                darktable=OwnEntry(3, "00", False), crs=Box(0.2, 0.1, 0.9, 0.8)))
    path = tmp_path / "a.jpg.xmp"
    path.write_bytes(doc.to_bytes())
    out = subprocess.run([exe, "-pa", str(path)], capture_output=True, check=True, timeout=60).stdout.decode()
    keys = {line.split()[0]: line.split(None, 3)[-1] for line in out.splitlines() if line.strip()}
    assert keys["Xmp.pic.Crop"] == "0.1 0.2 0.8 0.9"
    assert keys["Xmp.pic.DarktableEnabled"] == "False"
    assert keys["Xmp.pic.Alternatives[1]/pic:Crop"] == "0.0 0.0 1.0 1.0"
    assert keys["Xmp.pic.Alternatives[1]/pic:Score"] == "0.1"
    assert picns.format_box(picns.parse_box(keys["Xmp.pic.CrsCrop"])) == "0.2 0.1 0.9 0.8"
