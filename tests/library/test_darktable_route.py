"""The darktable library route of ``pic batch`` (issue 14.1) on darktable 4.2's own library.db (tests/data).

Photos darktable imported get no crop entry in their sidecar (darktable would not read it, and would remove it on
the next rating); their suggestion waits in the catalog for the plugin, which applies it through darktable. Once
darktable's history holds pic's crop, ``pic batch`` reports it as reached and never writes again, also after
darktable rewrote the sidecar. The real GUI run is tests/integrations/test_darktable_plugin.py.
"""

from __future__ import annotations

import gzip
import json
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner

from conftest import TEST_DATA, jpeg_bytes, make_photo
from pic_cli.main import cli
from pic_plugin.editors.darktable import decode_params
from pic_plugin.editors.darktable.library_db import DarktableLibrary


@pytest.fixture
def library(tmp_path: Path) -> tuple[Path, Path]:
    photos = tmp_path / "photos"
    photos.mkdir()
    db = tmp_path / "library.db"
    db.write_bytes(gzip.decompress((TEST_DATA / "darktable-real" / "library.db.gz").read_bytes()))
    con = sqlite3.connect(db)
    with con:  # the fixture's photos live here now, plus one imported photo without any edit
        con.execute("UPDATE film_rolls SET folder = ?", [str(photos)])
        con.execute("CREATE TEMP TABLE t AS SELECT * FROM images WHERE filename = 'off.jpg'")
        con.execute("UPDATE t SET id = 100, filename = 'fresh.jpg', history_end = 0")
        con.execute("INSERT INTO images SELECT * FROM t")
    con.close()
    for i, name in enumerate(["dups.jpg", "off.jpg", "plain.jpg", "fresh.jpg"]):
        (photos / name).write_bytes(jpeg_bytes(make_photo(600, 400, seed=i, subject=(0.3, 0.5))))
    (tmp_path / "outside.jpg").write_bytes(jpeg_bytes(make_photo(600, 400, seed=9)))
    return photos, db


def batch(*args: str) -> str:
    result = CliRunner().invoke(cli, ["batch", *args, "--ratio", "4:5", "-j", "1"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def crop_entries(sidecar: Path) -> int:
    return sidecar.read_text().count('darktable:operation="crop"') if sidecar.exists() else 0


def test_imported_photos_wait_for_the_plugin_and_are_never_written_again(library, tmp_path: Path) -> None:
    photos, db = library
    cat = str(tmp_path / "cat.db")
    out = batch(str(photos), str(tmp_path / "outside.jpg"), "--catalog", cat, "--darktable-library", str(db))
    assert "in darktable's library: 4 photos" in out and "2 wait for the darktable plugin" in out, out
    assert "2 keep your darktable crop" in out  # dups.jpg and plain.jpg carry the user's crop in the library
    for name in ("off.jpg", "fresh.jpg", "dups.jpg"):
        assert crop_entries(photos / f"{name}.xmp") == 0  # no entry darktable would not read anyway
    assert 'pic:State="suggested"' in (photos / "fresh.jpg.xmp").read_text()
    assert crop_entries(tmp_path / "outside.jpg.xmp") == 1  # not imported: the sidecar route as before

    # the plugin asks what waits, and plans exactly those suggestions
    work = tmp_path / "w"
    r = CliRunner().invoke(cli, ["dtstyle", "--pending", "--out", str(work), "--catalog", cat])
    assert r.exit_code == 0, r.output
    pending = [Path(p.decode()) for p in (work / "pending.list").read_bytes().split(b"\0") if p]
    assert sorted(p.name for p in pending) == ["fresh.jpg", "off.jpg"]
    (tmp_path / "snaps").mkdir()
    r = CliRunner().invoke(cli, ["dtstyle", *map(str, pending), "--pending", "--snapshots", str(tmp_path / "snaps"),
                                 "--out", str(tmp_path / "w2"), "--catalog", cat, "--json"])
    assert r.exit_code == 0, r.output
    rows = [json.loads(line) for line in r.output.splitlines() if line.startswith("{")]
    assert [row["status"] for row in rows] == ["ready", "ready"] and all(row["ratio"] == "4:5" for row in rows)

    # what darktable does when the plugin applies the style: a crop row appended to the image's history
    con = sqlite3.connect(db)
    with con:
        for row in rows:
            iid = con.execute("SELECT id FROM images WHERE filename = ?", [Path(row["path"]).name]).fetchone()[0]
            end = con.execute("SELECT history_end FROM images WHERE id = ?", [iid]).fetchone()[0]
            con.execute("INSERT INTO history (imgid, num, module, operation, op_params, enabled, blendop_params, "
                        "blendop_version, multi_priority, multi_name) VALUES (?, ?, 1, 'crop', ?, 1, NULL, 11, 0, '')",
                        [iid, end, decode_params(row["darktable_params"])])
            con.execute("UPDATE images SET history_end = ? WHERE id = ?", [end + 1, iid])
    con.close()
    r = CliRunner().invoke(cli, ["dtstyle", "--pending", "--out", str(tmp_path / "w3"), "--catalog", cat])
    assert (tmp_path / "w3" / "pending.list").read_bytes() == b""  # nothing waits any more

    before = {p.name: p.read_bytes() for p in photos.glob("*.xmp")}
    out = batch(str(photos), "--catalog", cat, "--darktable-library", str(db))
    assert "2 show pic's crop in darktable" in out and "wait" not in out, out
    # darktable rewrites a sidecar from its database (a rating): pic's record stays, pic writes nothing
    sidecar = photos / "fresh.jpg.xmp"
    sidecar.write_text(sidecar.read_text().replace('pic:State="suggested"', 'pic:State="suggested" xmp:Rating="3"'))
    rated = sidecar.read_bytes()
    out = batch(str(photos), "--catalog", cat, "--darktable-library", str(db))
    assert "1 show pic's crop in darktable" in out and "1 done, 3 unchanged" in out, out  # only the rated one is read
    assert sidecar.read_bytes() == rated
    out = batch(str(photos), "--catalog", cat, "--darktable-library", str(db))
    assert "4 unchanged" in out, out
    assert {p.name: p.read_bytes() for p in photos.glob("*.xmp") if p.name != "fresh.jpg.xmp"} == {
        k: v for k, v in before.items() if k != "fresh.jpg.xmp"}
    with DarktableLibrary(db) as lib:  # read-only all along
        assert len(list(lib.images())) == 8


def test_a_crop_darktable_removed_from_the_sidecar_is_not_appended_again(tmp_path: Path) -> None:
    """Not in the library (or no library known): darktable rewrote the sidecar without pic's entry, pic:State
    stayed "applied". The next batch leaves it (a removal is darktable's or the user's decision)."""
    (tmp_path / "a.jpg").write_bytes(jpeg_bytes(make_photo(600, 400, seed=3, subject=(0.3, 0.5))))
    cat = str(tmp_path / "cat.db")
    batch(str(tmp_path / "a.jpg"), "--catalog", cat, "--darktable-library", "none")
    sidecar = tmp_path / "a.jpg.xmp"
    assert crop_entries(sidecar) == 1
    from pic_plugin.editors.darktable import NS_DT
    from pic_plugin.editors.xmp import parse_xmp

    doc = parse_xmp(sidecar.read_bytes())
    container = doc.array_container(NS_DT, "history")
    for li in list(container.elements()):
        container.remove_child(li)
    doc.set(NS_DT, "history_end", "0")
    sidecar.write_bytes(doc.to_bytes())
    stripped = sidecar.read_bytes()
    out = batch(str(tmp_path / "a.jpg"), "--catalog", cat, "--darktable-library", "none")
    assert sidecar.read_bytes() == stripped
    assert "lost pic's crop in darktable" in out, out
    batch(str(tmp_path / "a.jpg"), "--catalog", cat, "--darktable-library", "none", "--force", "--refresh")
    assert crop_entries(sidecar) == 1  # --force puts it back


@pytest.mark.parametrize("loaded", [False, True], ids=["never-loaded", "loaded-in-darkroom"])
def test_a_lightroom_crop_darktable_will_import_is_kept_for_an_imported_photo(library, tmp_path: Path,
                                                                               loaded: bool) -> None:
    """Issue 15.7: darktable imports IMG.xmp's crop on the photo's first darkroom load (images.flags without
    DT_IMAGE_AUTO_PRESETS_APPLIED); pic's crop applied by the plugin before that would be cropped again."""
    from editor_fixtures import lightroom_xmp

    photos, db = library
    con = sqlite3.connect(db)
    with con:
        op = "|" if loaded else "& ~"
        con.execute(f"UPDATE images SET flags = flags {op} 512 WHERE filename = 'fresh.jpg'")
    con.close()
    (photos / "fresh.xmp").write_text(lightroom_xmp())
    result = CliRunner().invoke(cli, ["batch", str(photos / "fresh.jpg"), "--ratio", "4:5", "-j", "1", "--json",
                                      "--catalog", str(tmp_path / "cat.db"), "--darktable-library", str(db)],
                                catch_exceptions=False)
    row = json.loads(result.stdout.splitlines()[0])
    assert row["written"]["darktable_library"] == ("pending" if loaded else "kept-user-crop"), row
