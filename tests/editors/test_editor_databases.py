"""Read-only readers of digiKam's and darktable's databases.

The digiKam databases here are either the one the real digiKam 7.9 created and filled by scanning real showfoto
versions (tests/data/digikam-real, see PROVENANCE.md there) or built from digiKam's own schema (dbconfig.xml).
"""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest
from digikam_fixtures import chains, coordinate_image
from editor_fixtures import REAL, DkImage, make_digikam_db, snapshot
from hypothesis import HealthCheck, given, settings

from pic_plugin.core.geometry import Box
from pic_plugin.editors.databases import EditorDatabaseError, connect_readonly
from pic_plugin.editors.digikam.database import DigikamDatabase, resolve_digikam_root
from pic_plugin.editors.digikam.history import FileRef, History, parse_history, replay


@pytest.fixture
def real_db(tmp_path: Path) -> Path:
    d = tmp_path / "dk"
    d.mkdir()
    shutil.copy(REAL / "digikam4.db", d / "digikam4.db")
    return d / "digikam4.db"


def test_real_digikam_database_versions_and_relations(real_db: Path):
    before = snapshot(real_db.parent)
    with DigikamDatabase(real_db) as db:
        versions = list(db.versions())
    assert snapshot(real_db.parent) == before  # nothing written, no -journal/-wal/-shm left behind
    assert [v.image.name for v in versions] == ["IMG_0001_v1.png", "IMG_0001_v2.JPG"]
    v1, v2 = versions
    assert [p.name for p in v1.derived_from] == ["IMG_0001.JPG"]
    assert sorted(p.name for p in v2.derived_from) == ["IMG_0001.JPG", "IMG_0001_v1.png"]
    orig = v1.derived_from[0]
    assert (orig.width, orig.height, orig.orientation) == (900, 600, 6)  # stored size + EXIF orientation
    assert orig.unique_hash == "48e49b7888f3576dc311b1fb102c28b9" and orig.file_size == 115801
    assert orig.path == Path("/tmp/dkc/coll/IMG_0001.JPG")  # the album root digiKam recorded
    assert v1.uuid and v1.uuid.endswith(orig.unique_hash)
    # The history text in the database is the same document as in the version file.
    h = parse_history(v1.history)
    assert [s.name for s in h.steps_from_original()] == [
        "transform:crop", "transform:rotate", "digikam:RatioCrop", "transform:flip"]


def test_digikam_schema_round_trip(tmp_path: Path, digikam_dbconfig: Path):
    xml = History([FileRef("original", None, "a.jpg", "/x/"), *chains_example()]).to_xml()
    ids = make_digikam_db(
        tmp_path / "digikam4.db", digikam_dbconfig, "/photos/my album",
        [DkImage("a.jpg", "/2024", "ab" * 16, 1234, 6, 40, 30), DkImage("a_v1.jpg", "/2024")],
        histories={2: ("uuid-v1", xml)}, relations=[(2, 1)],
    )
    with DigikamDatabase(tmp_path) as db:  # a folder is accepted: digikam4.db inside it
        (v,) = list(db.versions())
    assert v.image.id == ids["a_v1.jpg"] and v.uuid == "uuid-v1"
    assert v.derived_from[0].path == Path("/photos/my album/2024/a.jpg")
    assert parse_history(v.history).steps_from_original() == chains_example()


def chains_example():
    from digikam_fixtures import crop_step, rotate_step

    return [rotate_step(90), crop_step(3, 4, 10, 12)]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(chains())
def test_random_histories_through_a_real_schema_database(tmp_path_factory, digikam_dbconfig, chain):
    """Write a random chain as digiKam would (history XML in ImageHistory), read it back: same region."""
    (w, h), steps = chain
    d = tmp_path_factory.mktemp("db")
    xml = History([FileRef("original", None, "o.jpg", str(d)), *steps]).to_xml()
    make_digikam_db(d / "digikam4.db", digikam_dbconfig, str(d),
                    [DkImage("o.jpg", "/", width=w, height=h), DkImage("o_v1.jpg", "/")],
                    histories={2: ("u", xml)}, relations=[(2, 1)])
    with DigikamDatabase(d / "digikam4.db") as db:
        (v,) = list(db.versions())
    got = replay(parse_history(v.history).steps_from_original(), (v.derived_from[0].width, v.derived_from[0].height))
    arr = coordinate_image(w, h)
    from digikam_fixtures import apply_numpy

    for s in steps:
        arr = apply_numpy(arr, s)
    truth = Box(arr[..., 0].min() / w, arr[..., 1].min() / h, (arr[..., 0].max() + 1) / w, (arr[..., 1].max() + 1) / h)
    assert got.box == truth


def test_gone_files_and_empty_histories_are_skipped(tmp_path: Path, digikam_dbconfig: Path):
    xml = History([FileRef("original", None, "a.jpg")]).to_xml()
    make_digikam_db(tmp_path / "digikam4.db", digikam_dbconfig, "/p",
                    [DkImage("a.jpg", "/"), DkImage("b.jpg", "/", status=3), DkImage("c.jpg", "/")],
                    histories={2: ("u", xml), 3: ("u3", "  ")})
    with DigikamDatabase(tmp_path / "digikam4.db") as db:
        assert list(db.versions()) == []


@pytest.mark.parametrize("ident, spec, expected", [
    ("volumeid:?path=/home/me/Pictures", "/", "/home/me/Pictures"),
    ("volumeid:?path=/a%20b/c+d", "/", "/a b/c+d"),
    ("volumeid:?path=/net/share", "/sub/dir", "/net/share/sub/dir"),
    ("volumeid:?uuid=does-not-exist-0000", "/Photos", None),
    ("volumeid:?fileuuid=abc", "/", None),
    ("garbage", "/", None),
    (None, None, None),
])
def test_album_roots(ident, spec, expected):
    assert resolve_digikam_root(ident, spec) == expected


# --- read-only guarantees --------------------------------------------------------------------------------------


def _wal_copy(src: Path, dst: Path) -> None:
    shutil.copy(src, dst)
    c = sqlite3.connect(dst)
    c.execute("PRAGMA journal_mode=WAL")
    c.close()  # the last connection checkpoints and removes -wal/-shm


def test_wal_database_without_wal_file_leaves_no_files(tmp_path: Path, real_db: Path):
    dst = tmp_path / "wal" / "digikam4.db"
    dst.parent.mkdir()
    _wal_copy(real_db, dst)
    before = snapshot(dst.parent)
    with DigikamDatabase(dst) as db:
        assert len(list(db.versions())) == 2
    assert snapshot(dst.parent) == before  # plain mode=ro would have created -wal and -shm here


def test_wal_database_while_the_editor_writes(tmp_path: Path, real_db: Path):
    dst = tmp_path / "wal" / "digikam4.db"
    dst.parent.mkdir()
    _wal_copy(real_db, dst)
    editor = sqlite3.connect(dst)  # an "editor" holding the database open in WAL mode
    editor.execute("UPDATE Images SET name = 'renamed.png' WHERE id = 2")
    editor.commit()
    assert (dst.parent / "digikam4.db-wal").exists()
    with DigikamDatabase(dst) as db:
        assert db.image(2).name == "renamed.png"  # committed data seen through the editor's -wal
    editor.close()


def test_readonly_connection_cannot_write(real_db: Path):
    conn = connect_readonly(real_db)
    with pytest.raises(sqlite3.OperationalError):
        conn.execute("DELETE FROM Images")
    conn.close()


def test_bad_databases_give_clear_errors(tmp_path: Path, real_db: Path):
    with pytest.raises(EditorDatabaseError, match="no such database"):
        connect_readonly(tmp_path / "missing.db")
    (tmp_path / "text.db").write_text("hello")
    with pytest.raises(EditorDatabaseError, match="not an SQLite database"):
        connect_readonly(tmp_path / "text.db")
    other = tmp_path / "other.db"
    sqlite3.connect(other).execute("CREATE TABLE t (x)").connection.close()
    with pytest.raises(EditorDatabaseError, match="not a digiKam database"):
        DigikamDatabase(other)
    (real_db.parent / "digikam4.db-journal").write_bytes(b"x" * 512)
    with pytest.raises(EditorDatabaseError, match="hot journal"):
        DigikamDatabase(real_db)
