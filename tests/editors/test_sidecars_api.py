"""The API the batch pipeline and the watcher call: write_suggestion / find_crops, end to end on real files."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import jpeg_bytes, make_photo, missing_requirement
from pic_plugin.core.geometry import Box
from pic_plugin.core.orientation import displayed_size
from pic_plugin.core.suggestion import Alternative, Suggestion
from pic_plugin.editors.darktable import NS_DT, read_crop
from pic_plugin.editors.picns import read_record
from pic_plugin.editors.sidecars import WRITE_TARGETS, find_crops, write_suggestion
from pic_plugin.editors.xmp import parse_xmp

CROP = Box(0.1, 0.2, 0.6, 0.9)
DT_SAMPLES = "xmp-samples/darktable-tests"


def photo(directory: Path, name: str = "IMG_0001.JPG", orientation: int = 1) -> Path:
    path = directory / name
    path.write_bytes(jpeg_bytes(make_photo(120, 80), orientation))
    return path


def suggestion(image: Path, crop: Box = CROP, orientation: int = 1) -> Suggestion:
    return Suggestion(path=os.fsdecode(image), crop=crop, score=0.6, ratio="free",
                      size=displayed_size((120, 80), orientation), model="test-1", user="anna",
                      alternatives=[Alternative(Box(0.0, 0.0, 0.5, 0.5), 0.2)])


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def leftovers(directory: Path) -> list[str]:
    return [p.name for p in directory.iterdir() if p.name.startswith(".pic-")]


def test_targets_constant() -> None:
    assert WRITE_TARGETS == ("pic", "darktable", "crs")


def test_apply_writes_pic_and_darktable_and_never_touches_the_image(tmp_path: Path) -> None:
    img = photo(tmp_path, orientation=6)
    before = sha(img)
    report = write_suggestion(img, suggestion(img, orientation=6), 6)
    assert report.ok and report.status("pic") == "written" and report.status("darktable") == "written"
    sidecar = tmp_path / "IMG_0001.JPG.xmp"
    assert report.files == [sidecar] and report.darktable_entry is not None and report.darktable_entry[0] == 0
    assert sha(img) == before
    crops = find_crops(img, 6)
    assert [c.source for c in crops] == ["darktable", "pic"]
    assert all(c.is_pic_suggestion for c in crops)
    assert all(abs(a - b) < 2e-6 for a, b in zip(crops[0].crop, CROP, strict=True))
    assert crops[1].crop == CROP and crops[1].detail["state"] == "applied" and crops[1].detail["user"] == "anna"
    # a re-run with the same suggestion changes nothing on disk
    mtime = sidecar.stat().st_mtime_ns
    again = write_suggestion(img, suggestion(img, orientation=6), 6)
    assert again.status("darktable") == "unchanged" and again.files == [] and sidecar.stat().st_mtime_ns == mtime


def test_suggest_only_writes_a_disabled_entry_and_skips_crs(tmp_path: Path) -> None:
    img = photo(tmp_path)
    report = write_suggestion(img, suggestion(img), 1, targets=WRITE_TARGETS, mode="suggest")
    assert report.status("darktable") == "written" and report.status("crs") == "skipped"
    doc = parse_xmp((tmp_path / "IMG_0001.JPG.xmp").read_bytes())
    c = read_crop(doc, 1)
    assert c is not None and not c.enabled
    rec = read_record(doc)
    assert rec is not None and rec.state == "suggested" and rec.darktable is not None and not rec.darktable.enabled
    assert [c.source for c in find_crops(img, 1)] == ["pic"]  # a disabled crop is no crop
    assert not (tmp_path / "IMG_0001.xmp").exists()


def test_the_whole_frame_adds_no_crop_unless_pics_own_crop_needs_undoing(tmp_path: Path) -> None:
    """pic leaves most photos of a user it does not know whole: an entry for that would only mark each photo as
    edited in darktable (and Lightroom). A crop pic applied before is still undone."""
    full = Box(0.0, 0.0, 1.0, 1.0)
    for mode in ("apply", "suggest"):
        img = photo(tmp_path, f"IMG_{mode}.JPG")
        report = write_suggestion(img, suggestion(img, full), 1, targets=WRITE_TARGETS, mode=mode)  # type: ignore[arg-type]
        assert report.ok and report.status("pic") == "written" and report.status("darktable") == "unchanged"
        assert report.darktable_entry is None
        doc = parse_xmp((tmp_path / f"IMG_{mode}.JPG.xmp").read_bytes())
        assert not list(doc.array_items(NS_DT, "history") or [])
        rec = read_record(doc)
        assert rec is not None and rec.crop == full and rec.darktable is None
        assert rec.state == ("applied" if mode == "apply" else "suggested")
        assert not (tmp_path / f"IMG_{mode}.xmp").exists()  # no Lightroom sidecar either
        assert [c.source for c in find_crops(img, 1)] == ["pic"]
    img = photo(tmp_path)
    write_suggestion(img, suggestion(img), 1)
    assert sorted(c.source for c in find_crops(img, 1)) == ["darktable", "pic"]
    undo = write_suggestion(img, suggestion(img, full), 1)
    assert undo.status("darktable") == "written"
    c = read_crop(parse_xmp((tmp_path / "IMG_0001.JPG.xmp").read_bytes()), 1)
    assert c is not None and c.enabled and c.is_full_frame  # pic's crop replaced: darktable shows the whole frame
    assert [c.source for c in find_crops(img, 1)] == ["pic"]
    img = photo(tmp_path, "IMG_crs.JPG")
    write_suggestion(img, suggestion(img), 1, targets=WRITE_TARGETS)
    # darktable imports pic's crs crop on the first darkroom load: no darktable entry beside it (issue 15.7)
    assert sorted(c.source for c in find_crops(img, 1)) == ["crs", "pic"]
    undo = write_suggestion(img, suggestion(img, full), 1, targets=WRITE_TARGETS)
    assert undo.status("crs") == "written" and undo.status("darktable") == "unchanged"
    assert [c.source for c in find_crops(img, 1)] == ["pic"]


def test_rerun_replaces_only_pics_own_entry(tmp_path: Path) -> None:
    img = photo(tmp_path)
    write_suggestion(img, suggestion(img), 1)
    second = write_suggestion(img, suggestion(img, Box(0.2, 0.1, 0.9, 0.8)), 1)
    assert second.status("darktable") == "written" and second.darktable_entry is not None
    doc = parse_xmp((tmp_path / "IMG_0001.JPG.xmp").read_bytes())
    assert [li for li in doc.array_items(NS_DT, "history") or []].__len__() == 1
    assert doc.get(NS_DT, "history_end") == "1"


@pytest.mark.shared
def test_users_crop_is_kept_and_still_found(shared_data: Path, tmp_path: Path) -> None:
    img = photo(tmp_path)
    sidecar = tmp_path / "IMG_0001.JPG.xmp"
    shutil.copyfile(next((shared_data / DT_SAMPLES).glob("0094-*.xmp")), sidecar)
    sidecar.chmod(0o644)
    report = write_suggestion(img, suggestion(img), 1)
    assert report.ok and report.status("darktable") == "kept-user-crop" and report.status("pic") == "written"
    assert report.darktable_entry is None
    crops = find_crops(img, 1)
    dt = [c for c in crops if c.source == "darktable"]
    assert len(dt) == 1 and not dt[0].is_pic_suggestion and dt[0].detail["num"] == 11
    rec = read_record(parse_xmp(sidecar.read_bytes()))
    assert rec is not None and rec.state == "suggested" and rec.darktable is None
    forced = write_suggestion(img, suggestion(img), 1, force=True)
    assert forced.status("darktable") == "written" and forced.darktable_entry is not None
    assert forced.darktable_entry[0] == 13  # history_end of the sample
    found = [c for c in find_crops(img, 1) if c.source == "darktable"]
    assert found[0].is_pic_suggestion


@pytest.mark.shared
def test_foreign_properties_survive_according_to_exiv2(shared_data: Path, tmp_path: Path) -> None:
    exe = shutil.which("exiv2")
    if exe is None:
        missing_requirement("exiv2 is not installed (apt-get install exiv2)")
    assert exe is not None
    img = photo(tmp_path, "aurora.jpg")
    sidecar = tmp_path / "aurora.jpg.xmp"
    shutil.copyfile(shared_data / "xmp-samples/photoprism/darktable-5x_aurora.jpg.xmp", sidecar)
    sidecar.chmod(0o644)

    def lines() -> dict[str, str]:
        out = subprocess.run([exe, "-pa", str(sidecar)], capture_output=True, check=False, timeout=60).stdout
        return {ln.split()[0]: ln for ln in out.decode("utf-8", "replace").splitlines() if ln.strip()}

    before = lines()
    report = write_suggestion(tmp_path / "aurora.jpg", suggestion(img), 1)
    assert report.status("darktable") == "written"
    after = lines()
    allowed = {"Xmp.darktable.history_end", "Xmp.darktable.history_basic_hash", "Xmp.darktable.history_current_hash"}
    assert {k for k in before if k not in after} <= allowed - {"Xmp.darktable.history_end"}
    assert {k for k in before if k in after and before[k] != after[k]} == {"Xmp.darktable.history_end"}
    assert "Xmp.acdsee.notes" in after and "Xmp.darktable.history[5]/darktable:operation" in after
    assert after["Xmp.pic.Crop"].endswith("0.1 0.2 0.6 0.9")


@pytest.mark.shared
def test_one_bad_target_does_not_block_the_others(shared_data: Path, tmp_path: Path) -> None:
    img = photo(tmp_path, "_27A1417.CR2")  # the bytes do not matter: the image is never opened for writing
    shutil.copyfile(shared_data / "xmp-samples/digikam/_27A1417.CR2.xmp", tmp_path / "_27A1417.CR2.xmp")  # copyfile: shared data is read-only (444), a user's sidecar is not
    report = write_suggestion(img, suggestion(img), 1, targets=WRITE_TARGETS)
    # digiKam's Bibble sample carries darktable:xmp_version="1": no darktable entry, but pic and crs are written
    assert report.status("darktable") == "error" and "xmp_version 1" in report.errors["darktable"]
    assert report.status("pic") == "written" and report.status("crs") == "written" and not report.ok
    doc = parse_xmp((tmp_path / "_27A1417.CR2.xmp").read_bytes())
    assert read_record(doc) is not None and doc.get("http://www.bibblelabs.com/DigitalMasterFile/1.0/", "versionCount") == "1"


def test_hostile_or_odd_sidecars_become_report_errors(tmp_path: Path) -> None:
    img = photo(tmp_path)
    (tmp_path / "IMG_0001.JPG.xmp").write_bytes(b'<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><x>&e;</x>')
    report = write_suggestion(img, suggestion(img), 1, targets=WRITE_TARGETS)
    assert report.status("pic") == "error" and "hostile" in report.errors["pic"]
    assert report.status("crs") == "written"
    (tmp_path / "IMG_0001.JPG.xmp").unlink()
    (tmp_path / "IMG_0001.JPG.xmp").mkdir()
    report = write_suggestion(img, suggestion(img), 1)
    assert report.status("darktable") == "error" and "regular file" in report.errors["darktable"]
    bad = suggestion(img, Box(0.5, 0.5, 0.2, 0.9))
    other = photo(tmp_path, "b.jpg")
    assert "invalid crop" in write_suggestion(other, bad, 1).errors["darktable"]
    with pytest.raises(ValueError):
        write_suggestion(other, suggestion(other), 1, targets=("lightroom",))


def test_concurrent_change_is_retried_then_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    img = photo(tmp_path)
    sidecar = tmp_path / "IMG_0001.JPG.xmp"
    write_suggestion(img, suggestion(img), 1, mode="suggest")
    real_fsync = os.fsync
    writes = {"n": 0}

    def editor_writes_during_fsync(fd: int, limit: int) -> None:
        real_fsync(fd)
        if writes["n"] < limit:  # darktable rewrites the sidecar while pic is about to replace it
            writes["n"] += 1
            data = sidecar.read_bytes()
            sidecar.write_bytes(data.replace(b'xmp_version="5"', b'xmp_version="5" ' * 1).replace(b"</x:xmpmeta>", b"</x:xmpmeta>\n"))

    monkeypatch.setattr(os, "fsync", lambda fd: editor_writes_during_fsync(fd, 1))
    report = write_suggestion(img, suggestion(img, Box(0.2, 0.2, 0.8, 0.8)), 1)
    assert report.ok and report.status("darktable") == "written" and writes["n"] == 1
    assert read_crop(parse_xmp(sidecar.read_bytes()), 1).enabled  # type: ignore[union-attr]

    writes["n"] = 0
    monkeypatch.setattr(os, "fsync", lambda fd: editor_writes_during_fsync(fd, 100))
    report = write_suggestion(img, suggestion(img, Box(0.3, 0.2, 0.8, 0.8)), 1, retries=2)
    assert report.status("darktable") == "error" and "changed on disk" in report.errors["darktable"]
    assert writes["n"] == 3 and leftovers(tmp_path) == []


ODD = ["with space.jpg", "quo'te\"s.jpg", "$(touch pwned).jpg", "new\nline.jpg", "`x`;&|.jpg", "ünï.jpg"]


@pytest.mark.parametrize("name", [*ODD, os.fsdecode(b"bytes-\xe9\xff.jpg")])
def test_odd_image_names(tmp_path: Path, name: str) -> None:
    img = photo(tmp_path, name)
    report = write_suggestion(img, suggestion(img), 1, targets=WRITE_TARGETS)
    assert report.ok, report.errors
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([name, name + ".xmp", name.rsplit(".", 1)[0] + ".xmp"])
    assert [c.source for c in find_crops(img, 1)] == ["crs", "pic"]  # darktable imports the crs crop (issue 15.7)
    assert report.status("darktable") == "skipped"
    assert not (tmp_path / "pwned").exists() and not (Path.cwd() / "pwned").exists()


@pytest.mark.shared
def test_find_crops_reads_duplicates_crs_and_skips_baked_in_crops(shared_data: Path, tmp_path: Path) -> None:
    img = photo(tmp_path, "IMG_0002.JPG")
    dup = tmp_path / "IMG_0002_01.JPG.xmp"
    shutil.copyfile(next((shared_data / DT_SAMPLES).glob("0094-*.xmp")), dup)
    lr = (shared_data / "xmp-samples/photoprism/ladybug.xmp").read_bytes()
    (tmp_path / "IMG_0002.xmp").write_bytes(lr)
    crops = find_crops(img, 1)
    assert [(c.source, c.detail.get("duplicate")) for c in crops] == [("darktable", 1)]  # ladybug: AlreadyApplied
    (tmp_path / "IMG_0002.xmp").write_bytes(lr.replace(b"<crs:AlreadyApplied>True", b"<crs:AlreadyApplied>False"))
    crops = find_crops(img, 6)
    assert [c.source for c in crops] == ["darktable", "crs"]
    c = crops[1]
    assert not c.is_pic_suggestion and c.detail["tiff_orientation"] == 1
    assert any("differs" in n for n in c.detail["notes"])
    # a user's Lightroom crop is kept by the crs writer
    report = write_suggestion(img, suggestion(img), 1, targets=("crs",))
    assert report.status("crs") == "kept-user-crop" and report.files == []


def test_crop_after_a_users_mirror_is_found_as_pics(tmp_path: Path) -> None:
    """A clipping used only as a mirror is not a crop: pic's crop goes after it, mapped through the mirror."""
    from pic_plugin.editors.darktable import ClippingParams

    img = photo(tmp_path)
    mirror = ClippingParams(0.0, 0.0, 0.0, -1.0, 1.0).encode().hex()
    (tmp_path / "IMG_0001.JPG.xmp").write_text(f"""<x:xmpmeta xmlns:x="adobe:ns:meta/">
 <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
  <rdf:Description rdf:about="" xmlns:darktable="http://darktable.sf.net/" darktable:xmp_version="5"
   darktable:auto_presets_applied="1" darktable:history_end="1">
   <darktable:history><rdf:Seq>
    <rdf:li darktable:num="0" darktable:operation="clipping" darktable:enabled="1" darktable:modversion="5"
     darktable:params="{mirror}" darktable:multi_priority="0"/>
   </rdf:Seq></darktable:history>
  </rdf:Description>
 </rdf:RDF>
</x:xmpmeta>""")
    assert write_suggestion(img, suggestion(img), 1).status("darktable") == "written"
    found = [c for c in find_crops(img, 1) if c.source == "darktable"]
    assert len(found) == 1 and found[0].is_pic_suggestion and found[0].detail["module"] == "crop+clipping"
    assert all(abs(a - b) < 2e-6 for a, b in zip(found[0].crop, CROP, strict=True))
