"""Read-only access to the editors' own SQLite databases (digiKam's ``digikam4.db``: ``digikam.database``;
darktable's ``library.db``: ``darktable.library_db``).

Both are SQLite files the editor owns, often while it runs. pic never writes them:

* ``connect_readonly`` opens with ``mode=ro`` and ``PRAGMA query_only``. In rollback-journal mode (darktable's
  default, digiKam's default) a read-only connection only takes shared locks: a running editor keeps working
  and pic sees committed data. A WAL-mode database whose ``-wal`` file exists (the editor is running, or
  crashed) is read the same way, through the editor's own ``-wal``/``-shm``. A WAL-mode database *without* a
  ``-wal`` file would make SQLite create ``-wal``/``-shm`` files beside it even in ``mode=ro``; nobody is
  writing then, so pic opens it ``immutable=1`` instead (no locks, no files created). ``immutable`` is never
  used while a ``-wal`` file exists, because then it would miss or misread the editor's newest commits.
* A hot rollback journal (an editor crashed mid-write) cannot be replayed read-only: that is a clear error
  ("open it in the editor once"), not a silent read of half-written data.

Paths: digiKam stores album roots as ``volumeid:?path=/abs`` or ``volumeid:?uuid=UUID`` plus a path on that
volume; darktable stores film-roll folders as absolute paths. Both also record enough to recognise a file that
moved (digiKam: ``uniqueHash`` + size; darktable: file name), which the harvest uses.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from urllib.parse import quote

from pic_plugin.core.errors import PicError

SQLITE_MAGIC = b"SQLite format 3\x00"


class EditorDatabaseError(PicError):
    """An editor database could not be read (missing, not SQLite, locked by a crashed writer, wrong schema)."""


def _uri(path: Path, query: str) -> str:
    return f"file:{quote(os.path.abspath(path))}?{query}"


def connect_readonly(path: str | os.PathLike[str]) -> sqlite3.Connection:
    """Open an editor's SQLite database so that nothing on disk can change. Raises ``EditorDatabaseError``."""
    p = Path(path)
    name = os.fsdecode(p)
    try:
        with open(p, "rb") as fh:
            header = fh.read(100)
    except FileNotFoundError:
        raise EditorDatabaseError(f"{name}: no such database") from None
    except IsADirectoryError:
        raise EditorDatabaseError(f"{name}: is a folder (name the database file itself)") from None
    except OSError as exc:
        raise EditorDatabaseError(f"{name}: cannot read ({exc.strerror or exc})") from None
    if not header.startswith(SQLITE_MAGIC):
        raise EditorDatabaseError(f"{name}: not an SQLite database")
    wal = len(header) >= 20 and header[18] == 2 and header[19] == 2
    journal = Path(name + "-journal")
    if not wal and journal.exists() and journal.stat().st_size > 0:
        raise EditorDatabaseError(f"{name}: the editor left an unfinished write (hot journal); open the editor once "
                                  "so it recovers the database, then retry")
    immutable = wal and not Path(name + "-wal").exists()
    query = "immutable=1" if immutable else "mode=ro"
    try:
        conn = sqlite3.connect(_uri(p, query), uri=True, timeout=10, check_same_thread=False)
        conn.execute("PRAGMA query_only = ON")
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.Error as exc:
        raise EditorDatabaseError(f"{name}: cannot open read-only ({exc})") from None
    return conn


def require_tables(conn: sqlite3.Connection, name: str, tables: tuple[str, ...], what: str) -> None:
    have = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    missing = [t for t in tables if t not in have]
    if missing:
        raise EditorDatabaseError(f"{name}: not a {what} database (missing tables: {', '.join(missing)})")


def text_or_none(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        return value.decode("utf-8", "surrogateescape")
    return str(value)
