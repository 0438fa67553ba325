"""Test helpers that build editor databases from the editors' REAL schemas (no hand-made imitations).

digiKam: the ``CreateDB``, ``CreateIndices`` and ``CreateTriggers`` statements of the ``QSQLITE`` section of
digiKam's own ``dbconfig.xml`` (Debian's digikam-data), then the ``Settings`` rows digiKam 7.9 writes itself
(copied from a database the real digiKam 7.9 created here, ``tests/data/digikam-real/digikam4.db``).
"""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path

import defusedxml.ElementTree as DET

REAL = Path(__file__).parent / "data" / "digikam-real"


def digikam_schema(dbconfig: Path) -> list[str]:
    root = DET.parse(str(dbconfig)).getroot()
    db = next(d for d in root.iter("database") if d.get("name") == "QSQLITE")
    out: list[str] = []
    for action in ("CreateDB", "CreateIndices", "CreateTriggers"):
        node = next(a for a in db.iter("dbaction") if a.get("name") == action)
        out.extend((s.text or "").strip() for s in node.iter("statement") if (s.text or "").strip())
    return out


@dataclass
class DkImage:
    name: str
    album: str  # relative path, "/" = root
    unique_hash: str | None = None
    size: int | None = None
    orientation: int | None = 1
    width: int | None = None
    height: int | None = None
    status: int = 1


def make_digikam_db(path: Path, dbconfig: Path, root: str, images: list[DkImage],
                    histories: dict[int, tuple[str, str]] | None = None,
                    relations: list[tuple[int, int]] | None = None) -> dict[str, int]:
    """A digikam4.db with one album root at ``root``; returns image ids by name (1-based, in order)."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA synchronous = OFF")  # test databases: no fsync per statement
    conn.execute("BEGIN")
    for stmt in digikam_schema(dbconfig):
        conn.execute(stmt)
    real = sqlite3.connect(f"file:{REAL / 'digikam4.db'}?mode=ro", uri=True)
    conn.executemany("INSERT INTO Settings VALUES (?, ?)", real.execute("SELECT keyword, value FROM Settings"))
    real.close()
    conn.execute("INSERT INTO AlbumRoots VALUES (1, 'photos', 0, 1, ?, '/')", ["volumeid:?path=" + root])
    albums: dict[str, int] = {}
    ids: dict[str, int] = {}
    for i, im in enumerate(images, start=1):
        if im.album not in albums:
            albums[im.album] = len(albums) + 1
            conn.execute("INSERT INTO Albums (id, albumRoot, relativePath, date) VALUES (?, 1, ?, '2024-01-01')",
                         [albums[im.album], im.album])
        conn.execute(
            "INSERT INTO Images (id, album, name, status, category, modificationDate, fileSize, uniqueHash)"
            " VALUES (?, ?, ?, ?, 1, '2024-01-01T00:00:00', ?, ?)",
            [i, albums[im.album], im.name, im.status, im.size, im.unique_hash],
        )
        conn.execute(
            "INSERT INTO ImageInformation (imageid, rating, orientation, width, height, format) VALUES"
            " (?, -1, ?, ?, ?, 'JPG')", [i, im.orientation, im.width, im.height])
        ids[im.name] = i
    for iid, (uuid, xml) in (histories or {}).items():
        conn.execute("INSERT INTO ImageHistory (imageid, uuid, history) VALUES (?, ?, ?)", [iid, uuid, xml])
    for subject, obj in relations or []:
        conn.execute("INSERT INTO ImageRelations (subject, object, type) VALUES (?, ?, 1)", [subject, obj])
    conn.execute("COMMIT")
    conn.close()
    return ids


def snapshot(folder: Path) -> dict[str, tuple[int, bytes]]:
    """Every file under ``folder`` with its size and SHA-256: compare before/after to prove nothing changed."""
    import hashlib

    out = {}
    for dirpath, _dirs, files in os.walk(folder):
        for f in files:
            p = os.path.join(dirpath, f)
            with open(p, "rb") as fh:
                data = fh.read()
            out[os.path.relpath(p, folder)] = (len(data), hashlib.sha256(data).digest())
    return out
