"""Harvesting a library: every source, idempotence, weights, read-only guarantees, hostile and odd inputs."""

from __future__ import annotations

import gzip
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from digikam_fixtures import crop_step, rotate_step
from editor_fixtures import REAL, darktable_cases, digikam_library, snapshot
from PIL import Image

from conftest import TEST_DATA, jpeg_bytes, make_photo
from pic_cli.main import cli
from pic_plugin.core.geometry import Box
from pic_plugin.core.orientation import displayed_to_stored, stored_to_displayed
from pic_plugin.core.suggestion import Suggestion
from pic_plugin.editors.digikam.history import NS_DIGIKAM, FileRef, FilterStep, History, unique_hash_v2
from pic_plugin.editors.xmp import XmpDocument
from pic_plugin.library.catalog import Catalog
from pic_plugin.library.harvest import APPROXIMATE_FACTOR, WEIGHT_ACCEPTED_SUGGESTION, collect_crops, harvest

DT_REAL = TEST_DATA / "darktable-real" / "library.db.gz"




def version_sidecar(history: History, unique_id: str | None = None) -> bytes:
    doc = XmpDocument.new()
    doc.set(NS_DIGIKAM, "ImageHistory", history.to_xml(), prefix_hint="digiKam")
    if unique_id:
        doc.set(NS_DIGIKAM, "ImageUniqueID", unique_id, prefix_hint="digiKam")
    return doc.to_bytes()


# --- digiKam ----------------------------------------------------------------------------------------------------


def test_digikam_versions_become_crops_of_the_original(tmp_path: Path):
    lib = digikam_library(tmp_path)
    found = collect_crops([lib])
    assert [(c.image.name, c.key, c.source) for c in found] == [
        ("IMG_0001.JPG", "digikam#IMG_0001_v1.png", "digikam"),
        ("IMG_0001.JPG", "digikam#IMG_0001_v2.JPG", "digikam"),
    ]
    v1 = found[0]
    assert v1.crop == Box(130 / 600, 174 / 900, 520 / 600, 694 / 900)  # test_digikam_real checks the pixels
    assert v1.detail["original_link"] == "folder+name" and v1.detail["original_verified"]
    assert v1.detail["history"] == "embedded" and v1.weight == 1.0 and not v1.approximate


def test_harvest_is_idempotent_and_reads_only(tmp_path: Path):
    lib = digikam_library(tmp_path)
    before = snapshot(lib)
    with Catalog(tmp_path / "catalog.db") as cat:
        first = harvest([lib], cat, "anna")
        second = harvest([lib], cat, "anna")
        rows = cat.user_crops("anna")
    assert snapshot(lib) == before
    assert (first.crops, first.added, first.unchanged, first.errors) == (2, 2, 0, [])
    assert (second.crops, second.added, second.unchanged) == (2, 0, 2)
    assert len(rows) == 2 and {r["source"] for r in rows} == {"digikam#IMG_0001_v1.png", "digikam#IMG_0001_v2.JPG"}
    assert all(r["weight"] == 1.0 and r["detail"]["editor"] == "digikam" for r in rows)
    assert len({r["content_key"] for r in rows}) == 1  # both belong to the original's content


def test_digikam_database_when_the_versions_are_not_in_the_library(tmp_path: Path):
    lib = tmp_path / "moved library"
    lib.mkdir()
    shutil.copy(REAL / "IMG_0001.JPG", lib / "IMG_0001.JPG")  # only the original; the versions live elsewhere
    db = tmp_path / "db" / "digikam4.db"
    db.parent.mkdir()
    shutil.copy(REAL / "digikam4.db", db)
    assert collect_crops([lib]) == []
    before = snapshot(db.parent)
    found = collect_crops([lib], digikam_db=db)
    assert snapshot(db.parent) == before
    assert [c.key for c in found] == ["digikam#IMG_0001_v1.png", "digikam#IMG_0001_v2.JPG"]
    assert found[0].image == lib / "IMG_0001.JPG" and found[0].detail["original_link"] == "hash"
    assert found[0].crop == Box(130 / 600, 174 / 900, 520 / 600, 694 / 900)
    # Both routes give the same crop; with both, the file-based one is kept and the database noted.
    both = collect_crops([digikam_library(tmp_path / "x")], digikam_db=db)
    assert [c.crop for c in both] == [c.crop for c in found]


def test_odd_names_and_a_hostile_history_do_not_stop_the_harvest(tmp_path: Path):
    lib = tmp_path / "lib"
    lib.mkdir()
    odd = Path(os.fsdecode(bytes(lib) + b"/IMG 'q' \"$x\"\n\xff.jpg"))
    pixels = make_photo(60, 40, seed=5)
    odd.write_bytes(jpeg_bytes(pixels, orientation=6))  # shown 40x60
    # A version made by rotating right and cropping, named after a file that does not exist: found by hash.
    ref = FileRef("original", None, "renamed.jpg", "/elsewhere/", unique_hash_v2(odd), odd.stat().st_size)
    version = lib / "version.jpg"
    shown = pixels.rotate(-90, expand=True)  # what EXIF 6 shows (Pillow's positive angles turn anticlockwise)
    version.write_bytes(jpeg_bytes(shown.rotate(-90, expand=True).crop((5, 4, 25, 34))))
    (lib / "version.jpg.xmp").write_bytes(version_sidecar(History([ref, rotate_step(90), crop_step(5, 4, 20, 30)])))
    # A second version whose sidecar is hostile.
    (lib / "evil.jpg").write_bytes(jpeg_bytes(make_photo(30, 20)))
    (lib / "evil.jpg.xmp").write_text(
        '<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
        '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        '<rdf:Description xmlns:digiKam="http://www.digikam.org/ns/1.0/" digiKam:ImageHistory="&e;"/>'
        "</rdf:RDF></x:xmpmeta>")
    errors: list[tuple[str, str]] = []
    found = collect_crops([lib], on_error=lambda p, m: errors.append((p, m)))
    assert [c.image for c in found] == [odd]
    assert found[0].detail["original_link"] == "hash"
    # rotate right on a 40x60 displayed frame (-> 60x40), crop x 5..25, y 4..34: original x = y, y = 60 - x
    assert found[0].crop == Box(4 / 40, 35 / 60, 34 / 40, 55 / 60)
    assert len(errors) == 1 and errors[0][0].endswith("evil.jpg") and "refused" in errors[0][1]
    assert "root:" not in errors[0][1]
    with Catalog(tmp_path / "c.db") as cat:
        report = harvest([lib], cat, "me")
        assert report.added == 1 and len(report.errors) == 1
        assert cat.user_crops("me")[0]["path"].startswith(os.fsdecode(lib))


# --- darktable: sidecars, duplicates, pic's own suggestion, the library -------------------------------------------


def dt_photo(folder: Path, name: str, orientation: int = 1) -> Path:
    p = folder / name
    p.write_bytes(jpeg_bytes(make_photo(120, 80), orientation))
    return p


def test_pic_suggestion_accepted_is_weak_and_edited_is_strong(tmp_path: Path):
    from pic_plugin.editors.sidecars import write_suggestion

    img = dt_photo(tmp_path, "a.jpg")
    box = Box(0.1, 0.2, 0.6, 0.9)
    report = write_suggestion(img, Suggestion(path=str(img), crop=box, score=0.5, ratio="free", size=(120, 80),
                                              model="m"), 1, targets=("darktable",))
    assert report.ok
    (c,) = collect_crops([img])
    assert c.source == "darktable" and c.pic_suggestion and c.weight == WEIGHT_ACCEPTED_SUGGESTION
    # The user moves the crop in darktable: darktable appends a new crop entry.
    from editor_fixtures import append_user_crop

    append_user_crop(tmp_path / "a.jpg.xmp", (0.2, 0.2, 0.7, 0.9))
    (c,) = collect_crops([img])
    assert not c.pic_suggestion and c.weight == 1.0
    assert c.crop.as_list(5) == [0.2, 0.2, 0.7, 0.9]


def real_darktable_library(tmp_path: Path) -> Path:
    db = tmp_path / "library.db"
    db.write_bytes(gzip.decompress(DT_REAL.read_bytes()))
    return db


def expected_darktable() -> dict[tuple[str, str], Box]:
    out = {}
    for case in darktable_cases():
        for dup, box in case.expect.items():
            key = "darktable" if dup == 0 else f"darktable#{dup}"
            if case.name == "turned.jpg":  # flip bits 6 (rotate CCW) on an upright photo: crop in the turned frame
                box = tuple(stored_to_displayed(displayed_to_stored(Box(0.1, 0.2, 0.6, 0.9), 8), 1))
            if box is not None:
                out[(case.name, key)] = Box(*box)
    return out


def assert_darktable_crops(found, folder: str | None = None) -> None:
    got = {(c.image.name, c.key): c for c in found if c.source == "darktable"}
    want = expected_darktable()
    assert set(got) == set(want)
    for k, box in want.items():
        assert np.allclose(got[k].crop, box, atol=1e-6), k
        if folder is not None:
            assert os.fsdecode(got[k].image.parent) == folder


def test_real_darktable_library_without_the_photos(tmp_path: Path):
    db = real_darktable_library(tmp_path)
    before = snapshot(tmp_path)
    found = collect_crops([], darktable_library=db)
    assert snapshot(tmp_path) == before
    # The photos are not on this machine: orientation comes from darktable's own record (images.orientation).
    assert_darktable_crops(found, "/tmp/pic-darktable-fixture/photos")
    assert all(c.detail["library"] == os.fsdecode(db) for c in found)


def test_darktable_library_scope_and_bad_libraries(tmp_path: Path):
    db = real_darktable_library(tmp_path)
    assert collect_crops([tmp_path], darktable_library=db) == []  # its photos are not under tmp_path
    errors: list[tuple[str, str]] = []
    (tmp_path / "bad.db").write_text("not sqlite")
    assert collect_crops([], darktable_library=tmp_path / "bad.db", on_error=lambda p, m: errors.append((p, m))) == []
    assert errors and "not an SQLite database" in errors[0][1]


@pytest.mark.slow
@pytest.mark.darktable
def test_darktable_library_real_import(tmp_path: Path, darktable_cli: str):
    """Import with the installed darktable, then: database == sidecars == expected; the database wins when a
    sidecar goes stale; nothing darktable owns is modified by reading it."""
    from editor_fixtures import build_darktable_library

    exe = shutil.which("darktable")
    assert exe is not None
    db = build_darktable_library(tmp_path, exe)
    photos = tmp_path / "photos"
    from_db = collect_crops([photos], darktable_library=db)
    from_sidecars = collect_crops([photos])
    assert_darktable_crops(from_db, os.fsdecode(photos))
    assert_darktable_crops(from_sidecars, os.fsdecode(photos))
    assert all(c.detail["sidecar_agrees"] for c in from_db)
    # The user edits in darktable with sidecar writing off: the sidecar on disk is now stale.
    from editor_fixtures import crop_params, darktable_sidecar

    (photos / "plain.jpg.xmp").write_text(darktable_sidecar([("crop", 1, crop_params(0.0, 0.0, 0.5, 0.5), True)]))
    before = snapshot(tmp_path)
    again = {(c.image.name, c.key): c for c in collect_crops([photos], darktable_library=db)}
    assert snapshot(tmp_path) == before
    plain = again[("plain.jpg", "darktable")]
    assert np.allclose(plain.crop, (0.1, 0.05, 0.9, 0.95), atol=1e-6) and plain.detail["sidecar_agrees"] is False


def test_approximate_crops_weigh_less(tmp_path: Path, shared_data: Path):
    # darktable-tests 0103: ashift before the crop -> approximate.
    img = dt_photo(tmp_path, "almost.jpg")
    shutil.copyfile(shared_data / "xmp-samples/darktable-tests/0103-almost-all_almost-all.xmp", tmp_path / "almost.jpg.xmp")
    (c,) = [c for c in collect_crops([img]) if c.source == "darktable"]
    assert c.approximate and c.weight == APPROXIMATE_FACTOR


# --- the command ------------------------------------------------------------------------------------------------


def test_pic_crops_json_and_text(tmp_path: Path):
    lib = digikam_library(tmp_path)
    img = dt_photo(lib, "dt.jpg", orientation=6)
    from editor_fixtures import crop_params, darktable_sidecar

    (lib / "dt.jpg.xmp").write_text(darktable_sidecar([("crop", 1, crop_params(0.25, 0.1, 0.75, 0.6), True)]))
    runner = CliRunner()
    res = runner.invoke(cli, ["crops", str(lib), "--json"])
    assert res.exit_code == 0, res.output
    lines = [json.loads(line) for line in res.stdout.splitlines()]
    assert [(Path(d["path"]).name, d["source"]) for d in lines] == [
        ("IMG_0001.JPG", "digikam"), ("IMG_0001.JPG", "digikam"), ("dt.jpg", "darktable")]
    for d in lines:
        assert set(d) >= {"path", "crop", "source", "detail", "approximate"} and len(d["crop"]) == 4
    assert lines[2]["crop"] == pytest.approx([0.25, 0.1, 0.75, 0.6], abs=1e-6)
    assert Path(lines[2]["path"]) == img
    text = runner.invoke(cli, ["crops", str(lib)])
    assert text.exit_code == 0 and "digikam#IMG_0001_v1.png" in text.stdout and "3 crop(s) on 2 photo(s)" in text.stderr


def test_pic_crops_errors_and_usage(tmp_path: Path):
    runner = CliRunner()
    assert runner.invoke(cli, ["crops"]).exit_code == 2
    (tmp_path / "x.jpg").write_bytes(jpeg_bytes(make_photo(20, 20)))
    (tmp_path / "x.jpg.xmp").write_text("<not xml")
    res = runner.invoke(cli, ["crops", str(tmp_path), str(tmp_path / "missing"), "--json"])
    assert res.exit_code == 1
    assert "missing: no such file or folder" in res.stderr and "x.jpg" in res.stderr
    assert res.stdout == ""


def test_version_pixels_match_for_the_hash_found_original(tmp_path: Path):
    """Sanity for the constructed version above: cropping the displayed original gives the version's pixels."""
    pixels = make_photo(60, 40, seed=5)
    disp = pixels.rotate(-90, expand=True)  # what EXIF 6 shows
    box = Box(4 / 40, 35 / 60, 34 / 40, 55 / 60)
    region = np.asarray(disp)[35:55, 4:34]
    version = np.asarray(disp.rotate(-90, expand=True).crop((5, 4, 25, 34)))
    assert np.array_equal(np.rot90(region, -1), version)
    assert box.to_pixels((40, 60)) == (4, 35, 34, 55)
    _ = Image  # Pillow is the reference implementation of the rotations here


def test_digikam_compatible_sidecar_name_and_tiff_embedded_history(tmp_path: Path):
    from pic_plugin.editors.digikam.history import read_version

    orig = tmp_path / "DSC_1.jpg"
    orig.write_bytes(jpeg_bytes(make_photo(80, 60, seed=2)))
    ref = FileRef("original", "f" * 32 + unique_hash_v2(orig), "DSC_1.jpg", os.fsdecode(tmp_path) + "/")
    # "Sidecar file names are compatible with commercial programs": DSC_1_v1.xmp beside DSC_1_v1.jpg.
    (tmp_path / "DSC_1_v1.jpg").write_bytes(jpeg_bytes(make_photo(40, 30)))
    (tmp_path / "DSC_1_v1.xmp").write_bytes(version_sidecar(History([ref, crop_step(10, 10, 40, 30)])))
    # A TIFF version carrying its history in the embedded XMP packet (TIFF tag 700), no sidecar.
    Image.new("RGB", (20, 60)).save(tmp_path / "DSC_1_v2.tif", tiffinfo={700: version_sidecar(
        History([ref, crop_step(0, 0, 20, 60)]))})
    info, problems = read_version(tmp_path / "DSC_1_v2.tif")
    assert info is not None and info.where == "embedded" and not problems
    found = {c.key: c for c in collect_crops([tmp_path])}
    assert found["digikam#DSC_1_v1.jpg"].crop == Box(10 / 80, 10 / 60, 50 / 80, 40 / 60)
    assert found["digikam#DSC_1_v1.jpg"].detail["history"].endswith("DSC_1_v1.xmp")
    assert found["digikam#DSC_1_v2.tif"].crop == Box(0, 0, 20 / 80, 1.0)
    assert all(c.image == orig and c.detail["original_verified"] for c in found.values())


def test_digikam_version_of_a_raw_original(tmp_path: Path, shared_data: Path):
    raw = tmp_path / "PXL.dng"
    shutil.copy(shared_data / "raw-samples/google_pixel7_portrait.dng", raw)  # 510x382, LibRaw flip -> shown 382x510
    ref = FileRef("original", None, "PXL.dng", "/old/place/", unique_hash_v2(raw), raw.stat().st_size)
    (tmp_path / "PXL_v1.jpg").write_bytes(jpeg_bytes(make_photo(100, 180)))
    (tmp_path / "PXL_v1.jpg.xmp").write_bytes(version_sidecar(History([
        ref, FilterStep("digikam:RawConverter", params=(("whiteBalance", "1"),)), crop_step(10, 20, 100, 180)])))
    (c,) = collect_crops([tmp_path])
    assert c.image == raw and c.crop == Box(10 / 382, 20 / 510, 110 / 382, 200 / 510)
    assert c.detail["frame_size"] == [382, 510]


def test_an_original_digikam_overwrote_is_not_a_crop_of_itself(tmp_path: Path):
    img = tmp_path / "IMG.jpg"
    img.write_bytes(jpeg_bytes(make_photo(40, 30)))
    ref = FileRef("original", None, "IMG.jpg", os.fsdecode(tmp_path) + "/")
    (tmp_path / "IMG.jpg.xmp").write_bytes(version_sidecar(History([ref, crop_step(1, 1, 10, 10)])))
    errors: list = []
    assert collect_crops([tmp_path], on_error=lambda p, m: errors.append(m)) == [] and errors == []
