"""``pic dtstyle`` and ``pic learn-files``: the commands the editor plugins call, with hostile file names."""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from conftest import jpeg_bytes, make_photo
from pic_cli.main import cli
from pic_plugin.core.geometry import FULL_FRAME, Box, iou
from pic_plugin.editors.darktable.styles import StyleItem, crop_item, make_style, read_style, write_style
from pic_plugin.integrations.darktable_plugin import UNDO_STYLE_NAME, snapshot_name
from pic_plugin.integrations.file_list import read_file_list, tsv_field, write_file_list

HOSTILE = ["plain.jpg", "sp ace.jpg", "it's \"$HOME\" `id` $(x).jpg", "new\nline.jpg", "tab\there;rm -rf.jpg"]


def _run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def _rows(work: Path) -> dict[int, list[str]]:
    rows = {}
    for line in (work / "results.tsv").read_text().splitlines():
        fields = line.split("\t")
        assert len(fields) == 10, line
        rows[int(fields[0])] = fields
    return rows


def _params_box(text: str) -> Box:
    return Box(*struct.unpack("<4f", bytes.fromhex(text)[:16]))


@pytest.fixture
def hostile_dir(tmp_path: Path) -> Path:
    d = tmp_path / "photos"
    d.mkdir()
    for i, name in enumerate(HOSTILE):
        (d / name).write_bytes(jpeg_bytes(make_photo(300, 200, seed=i)))
    return d


def test_file_list_round_trip(tmp_path: Path) -> None:
    names = [tmp_path / n for n in HOSTILE] + [Path(os.fsdecode(b"/x/latin1-\xe9.jpg"))]
    listed = write_file_list(tmp_path / "list", names)
    assert read_file_list(listed) == names
    (tmp_path / "lines").write_text("a.jpg\n\nb c.jpg\n")
    assert read_file_list(tmp_path / "lines") == [Path("a.jpg"), Path("b c.jpg")]
    assert tsv_field("a\tb\nc\x00d") == "a b c d"


def test_dtstyle_suggests_for_hostile_names_via_list(hostile_dir: Path, tmp_path: Path, catalog_path: Path) -> None:
    listed = write_file_list(tmp_path / "list", [hostile_dir / n for n in HOSTILE])
    work = tmp_path / "work"
    code, out, _ = _run("dtstyle", "--files-from", str(listed), "--out", str(work), "--ratio", "1:1", "--json",
                        "--catalog", str(catalog_path))
    assert code == 0
    lines = [json.loads(line) for line in out.splitlines()]
    assert [Path(r["path"]).name for r in lines] == HOSTILE
    rows = _rows(work)
    assert sorted(rows) == [1, 2, 3, 4, 5]
    assert (work / "progress").read_text() == "5 5\n"
    for i, row in rows.items():
        assert row[1] == "suggested" and row[4] == "1:1"
        style = read_style(Path(row[6]))
        assert style.name == row[5] == "pic crop"
        item = style.effective("crop")
        assert item is not None and item.enabled
        assert iou(_params_box(item.op_params), Box(*map(float, row[2].split()))) > 0.999
        assert Path(row[6]).is_absolute() and Path(row[6]).parent == work.absolute()
        assert lines[i - 1]["darktable_params"] == item.op_params


def _snapshot(snaps: Path, index: int, items: list[StyleItem]) -> None:
    write_style(snaps / snapshot_name(index), make_style("snap", "", items))


def test_dtstyle_with_snapshots_protects_user_crop_and_writes_undo(hostile_dir: Path, tmp_path: Path,
                                                                   catalog_path: Path) -> None:
    images = [hostile_dir / n for n in HOSTILE[:4]]
    snaps = tmp_path / "snaps"
    snaps.mkdir()
    exposure = StyleItem(0, "exposure", 6, "00" * 24)
    user_crop = crop_item(Box(0.2, 0.1, 0.8, 0.9))
    _snapshot(snaps, 1, [exposure])  # edited, never cropped
    _snapshot(snaps, 2, [exposure, user_crop])  # cropped by the user
    _snapshot(snaps, 3, [StyleItem(0, "ashift", 5, "00"), exposure])  # frame changed before crop
    # 4: no snapshot at all (create_style failed): treated as an image without a crop
    listed = write_file_list(tmp_path / "list", images)
    work = tmp_path / "work"
    code, _, _ = _run("dtstyle", "--files-from", str(listed), "--out", str(work), "--snapshots", str(snaps),
                      "--catalog", str(catalog_path))
    assert code == 0
    rows = _rows(work)
    assert [rows[i][1] for i in (1, 2, 3, 4)] == ["ready", "kept-user-crop", "skipped", "ready"]
    assert "ashift" in rows[3][9] and "already cropped" in rows[2][9]
    assert rows[2][5] == rows[2][6] == ""  # nothing to apply
    undo = read_style(Path(rows[1][8]))
    assert undo.name == UNDO_STYLE_NAME
    item = undo.effective("crop")
    assert item is not None and not item.enabled and _params_box(item.op_params) == FULL_FRAME

    # replacing the user's crop is explicit, and its undo puts exactly that crop back
    work2 = tmp_path / "work2"
    code, _, _ = _run("dtstyle", "--files-from", str(listed), "--out", str(work2), "--snapshots", str(snaps),
                      "--replace-crops", "--catalog", str(catalog_path))
    rows2 = _rows(work2)
    assert rows2[2][1] == "ready"
    assert read_style(Path(rows2[2][8])).effective("crop") == StyleItem(0, "crop", 1, user_crop.op_params)

    # pic's own earlier crop (recorded by the apply above) is not mistaken for the user's
    applied = read_style(Path(rows[1][6])).effective("crop")
    assert applied is not None
    _snapshot(snaps, 1, [exposure, applied])
    work3 = tmp_path / "work3"
    _run("dtstyle", "--files-from", str(listed), "--out", str(work3), "--snapshots", str(snaps), "--ratio", "16:9",
         "--catalog", str(catalog_path))
    assert _rows(work3)[1][1] == "ready"


def test_dtstyle_maps_into_a_frame_the_user_rotated(hostile_dir: Path, tmp_path: Path, catalog_path: Path) -> None:
    image = hostile_dir / HOSTILE[0]
    snaps = tmp_path / "snaps"
    snaps.mkdir()
    rotate_cw = StyleItem(0, "flip", 2, struct.pack("<i", 5).hex())  # darktable bits 5 = rotate 90 CW
    _snapshot(snaps, 1, [rotate_cw])
    code, out, _ = _run("dtstyle", str(image), "--out", str(tmp_path / "w"), "--snapshots", str(snaps), "--json",
                        "--catalog", str(catalog_path))
    row = json.loads(out)
    left, top, right, bottom = row["crop"]
    # pic's crop is in the displayed (EXIF) frame; darktable's crop frame is rotated CW: (1-bottom, left, 1-top, right)
    assert _params_box(row["darktable_params"]) == pytest.approx(Box(1 - bottom, left, 1 - top, right), abs=1e-6)


def test_dtstyle_stops_when_cancelled(hostile_dir: Path, tmp_path: Path, catalog_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    (work / "cancel").touch()
    code, _, _ = _run("dtstyle", str(hostile_dir / HOSTILE[0]), str(hostile_dir / HOSTILE[1]), "--out", str(work),
                      "--catalog", str(catalog_path))
    assert code == 0
    assert [r[1] for r in _rows(work).values()] == ["cancelled", "cancelled"]


def test_dtstyle_reports_errors_per_image(tmp_path: Path, catalog_path: Path, hostile_dir: Path) -> None:
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    code, _, err = _run("dtstyle", str(tmp_path / "broken.jpg"), str(hostile_dir / HOSTILE[0]), "--out",
                        str(tmp_path / "w"), "--catalog", str(catalog_path))
    assert code == 1 and "broken.jpg" in err
    rows = _rows(tmp_path / "w")
    assert rows[1][1] == "error" and rows[2][1] == "suggested"


def test_learn_files_forwards_to_learn(tmp_path: Path, catalog_path: Path, hostile_dir: Path) -> None:
    seen: dict[str, object] = {}

    @click.command("learn")
    @click.option("--user")
    @click.option("--catalog")
    @click.option("--from-library", "from_library", is_flag=True)
    @click.argument("paths", nargs=-1)
    def fake_learn(user: str, catalog: str, from_library: bool, paths: tuple[str, ...]) -> None:
        seen.update(user=user, catalog=catalog, from_library=from_library, paths=list(paths))
        click.echo("learned")

    sidecars = [hostile_dir / (n + ".xmp") for n in HOSTILE]  # the darktable plugin sends sidecars
    listed = write_file_list(tmp_path / "list", sidecars)
    had = cli.commands.get("learn")
    cli.add_command(fake_learn)
    try:
        code, out, _ = _run("learn-files", "--files-from", str(listed), "--user", "anna", "--catalog", str(catalog_path))
    finally:
        cli.commands.pop("learn")
        if had is not None:
            cli.add_command(had)
    assert code == 0 and "learned" in out
    assert seen == {"user": "anna", "catalog": str(catalog_path), "from_library": True,
                    "paths": [str(hostile_dir / n) for n in HOSTILE]}


def test_learn_files_repeats_a_multiple_option(tmp_path: Path) -> None:
    seen: dict[str, object] = {}

    @click.command("learn")
    @click.option("--user")
    @click.option("--from-library", "library", multiple=True)
    def fake_learn(user: str, library: tuple[str, ...]) -> None:
        seen.update(user=user, library=list(library))

    had = cli.commands.get("learn")
    cli.add_command(fake_learn)
    try:
        for name in ("a b.jpg", "c.jpg"):
            (tmp_path / name).write_bytes(jpeg_bytes(make_photo(60, 40)))
        code, _, _ = _run("learn-files", str(tmp_path / "a b.jpg"), str(tmp_path / "c_01.jpg.xmp"), "--user", "anna")
    finally:
        cli.commands.pop("learn")
        if had is not None:
            cli.add_command(had)
    # c_01.jpg.xmp is darktable's duplicate 1 of c.jpg: it stands for c.jpg
    assert code == 0 and seen == {"user": "anna", "library": [str(tmp_path / "a b.jpg"), str(tmp_path / "c.jpg")]}


def test_learn_files_learns_the_darktable_crops_for_real(tmp_path: Path, catalog_path: Path) -> None:
    """The darktable plugin's path end to end: sidecars in a list -> harvest -> fine-tune -> a model version."""
    from editor_fixtures import crop_params, darktable_sidecar

    from pic_plugin.library.catalog import Catalog

    photos = tmp_path / "it's a \"film\" $roll"
    photos.mkdir()
    sidecars = []
    for i in range(3):
        img = photos / f"IMG_{i:04d}.jpg"
        img.write_bytes(jpeg_bytes(make_photo(360, 240, seed=i, subject=(0.3 + 0.2 * i, 0.5))))
        sc = img.with_name(img.name + ".xmp")
        sc.write_text(darktable_sidecar([("crop", 1, crop_params(0.1 * i, 0.1, 0.6 + 0.1 * i, 0.9), True)]))
        sidecars.append(sc)
    (photos / "orphan.jpg.xmp").write_text(darktable_sidecar([("crop", 1, crop_params(0.1, 0.1, 0.9, 0.9), True)]))
    listed = write_file_list(tmp_path / "list", [*sidecars, photos / "orphan.jpg.xmp"])
    code, out, err = _run("learn-files", "--files-from", str(listed), "--user", "anna", "--catalog", str(catalog_path))
    assert code == 0, err
    assert "read 3 crops on 3 photos" in out and "-> model version 1" in out
    with Catalog(catalog_path) as cat:
        rows = cat.user_crops("anna")
        assert sorted(r["crop"].as_list(3) for r in rows) == [
            [0.0, 0.1, 0.6, 0.9], [0.1, 0.1, 0.7, 0.9], [0.2, 0.1, 0.8, 0.9]]
        assert {r["source"] for r in rows} == {"darktable"} and cat.active_model("anna")[0] == 1  # type: ignore[index]




DARKTABLE_SIDECAR = """<?xml version="1.0" encoding="UTF-8"?>
<x:xmpmeta xmlns:x="adobe:ns:meta/" x:xmptk="XMP Core 4.4.0-Exiv2">
 <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
  <rdf:Description rdf:about=""
    xmlns:darktable="http://darktable.sf.net/"
   darktable:xmp_version="5"
   darktable:raw_params="0"
   darktable:auto_presets_applied="1"
   darktable:history_end="1"
   darktable:iop_order_version="2">
   <darktable:history>
    <rdf:Seq>
     <rdf:li
      darktable:num="0"
      darktable:operation="exposure"
      darktable:enabled="1"
      darktable:modversion="6"
      darktable:params="00000000000000000000c03f00004842000080c000000000"
      darktable:multi_name=""
      darktable:multi_priority="0"
      darktable:blendop_version="11"
      darktable:blendop_params="gz14eJxjYIAACQYYOOHEgAZY0QVwggZ7CB6pfNoAAE8gGQg="/>
    </rdf:Seq>
   </darktable:history>
  </rdf:Description>
 </rdf:RDF>
</x:xmpmeta>
"""


def test_dtstyle_sidecar_route_appends_to_the_current_sidecar(hostile_dir: Path, tmp_path: Path,
                                                             catalog_path: Path) -> None:
    from pic_plugin.editors.darktable import read_history
    from pic_plugin.editors.xmp import parse_xmp

    image = hostile_dir / HOSTILE[2]
    sidecar = hostile_dir / (HOSTILE[2] + ".xmp")
    sidecar.write_text(DARKTABLE_SIDECAR)  # as darktable wrote it just before ("write sidecar files")
    snaps = tmp_path / "snaps"
    snaps.mkdir()
    _snapshot(snaps, 1, [StyleItem(0, "exposure", 6, "00000000000000000000c03f00004842000080c000000000")])
    code, out, _ = _run("dtstyle", str(image), "--out", str(tmp_path / "w"), "--snapshots", str(snaps),
                        "--write-sidecars", "--json", "--catalog", str(catalog_path))
    assert code == 0 and json.loads(out)["status"] == "ready"
    hist = read_history(parse_xmp(sidecar.read_bytes()))
    assert hist is not None
    assert [(e.operation, e.enabled) for e in hist.entries] == [("exposure", True), ("crop", True)]
    assert hist.history_end == 2
    assert hist.entries[1].params_text == json.loads(out)["darktable_params"] or iou(
        _params_box(hist.entries[1].params_text), _params_box(json.loads(out)["darktable_params"])) > 0.99
