"""Read-only access to the editors' own databases: digiKam's ``digikam4.db`` and darktable's ``library.db``.

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
import re
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, unquote

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


def _require_tables(conn: sqlite3.Connection, name: str, tables: tuple[str, ...], what: str) -> None:
    have = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    missing = [t for t in tables if t not in have]
    if missing:
        raise EditorDatabaseError(f"{name}: not a {what} database (missing tables: {', '.join(missing)})")


def _text(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        return value.decode("utf-8", "surrogateescape")
    return str(value)


# --- digiKam ---------------------------------------------------------------------------------------------------

#: ``ImageRelations.type`` for "subject is a version derived from object" (DatabaseRelation::DerivedFrom).
DIGIKAM_DERIVED_FROM = 1
#: ``Images.status`` values of files that are gone (trashed, obsolete).
DIGIKAM_GONE = (3, 4)


@dataclass(frozen=True)
class DigikamImage:
    id: int
    name: str
    relative_path: str  # album path inside its root, "/" for the root itself
    root: str | None  # absolute path of the album root on this machine, None if it cannot be resolved
    unique_hash: str | None  # uniqueHashV2 (uniqueHashVersion 2) of the file when digiKam scanned it
    file_size: int | None
    orientation: int | None  # EXIF orientation digiKam recorded (ImageInformation)
    width: int | None  # stored (unrotated) pixel size (ImageInformation)
    height: int | None
    status: int | None

    @property
    def path(self) -> Path | None:
        if self.root is None:
            return None
        rel = self.relative_path.strip("/")
        return Path(self.root, rel, self.name) if rel else Path(self.root, self.name)


@dataclass(frozen=True)
class DigikamVersion:
    """An image whose history digiKam recorded, and the images it is derived from (ImageRelations)."""

    image: DigikamImage
    uuid: str | None
    history: str
    derived_from: tuple[DigikamImage, ...]


def resolve_digikam_root(identifier: str | None, specific_path: str | None) -> str | None:
    """The absolute folder of a digiKam album root on this machine (None when its volume is not mounted)."""
    if not identifier or not identifier.startswith("volumeid:?"):
        return None
    params: dict[str, str] = {}
    for part in identifier[len("volumeid:?"):].split("&"):
        key, _, value = part.partition("=")
        params[unquote(key)] = unquote(value)  # percent-decoding only: "+" is a literal plus in a path
    sub = (specific_path or "/").strip("/")
    if "path" in params:
        return os.path.join(params["path"], sub) if sub else params["path"]
    base: str | None = None
    if "uuid" in params:
        base = _mount_point_of_uuid(params["uuid"][0])
    elif "fileuuid" in params:  # a volume recognised by a marker file: not resolvable without scanning mounts
        return None
    if base is None:
        return None
    return os.path.join(base, sub) if sub else base


def _mount_point_of_uuid(uuid: str) -> str | None:
    real = os.path.realpath(Path("/dev/disk/by-uuid") / uuid)
    try:
        with open("/proc/self/mounts", "rb") as fh:
            lines = fh.read().splitlines()
    except OSError:
        return None
    for line in lines:
        parts = line.split()
        if len(parts) >= 2 and os.path.realpath(_unescape_mount(parts[0])) == real:
            return _unescape_mount(parts[1])
    return None


def _unescape_mount(field: bytes) -> str:
    """/proc/mounts writes space, tab, newline and backslash as octal escapes (``\\040``)."""
    return os.fsdecode(re.sub(rb"\\([0-7]{3})", lambda m: bytes([int(m.group(1), 8)]), field))


class DigikamDatabase:
    """digiKam's core database (``digikam4.db``), read-only."""

    TABLES = ("AlbumRoots", "Albums", "Images", "ImageInformation", "ImageHistory", "ImageRelations")

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        if self.path.is_dir():
            self.path = self.path / "digikam4.db"
        self.conn = connect_readonly(self.path)
        _require_tables(self.conn, os.fsdecode(self.path), self.TABLES, "digiKam")
        self._roots: dict[int, str | None] = {}
        for rid, ident, spec in self.conn.execute("SELECT id, identifier, specificPath FROM AlbumRoots"):
            self._roots[int(rid)] = resolve_digikam_root(_text(ident), _text(spec))

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> DigikamDatabase:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    _IMAGE_SQL = (
        "SELECT i.id, i.name, a.relativePath, a.albumRoot, i.uniqueHash, i.fileSize, ii.orientation, ii.width,"
        " ii.height, i.status FROM Images i LEFT JOIN Albums a ON a.id = i.album"
        " LEFT JOIN ImageInformation ii ON ii.imageid = i.id"
    )

    def _image(self, row: tuple) -> DigikamImage:
        iid, name, rel, root_id, uhash, size, orient, w, h, status = row
        return DigikamImage(
            id=int(iid), name=_text(name) or "", relative_path=_text(rel) or "/",
            root=self._roots.get(int(root_id)) if root_id is not None else None,
            unique_hash=_text(uhash), file_size=size, orientation=orient, width=w, height=h, status=status,
        )

    def image(self, image_id: int) -> DigikamImage | None:
        row = self.conn.execute(self._IMAGE_SQL + " WHERE i.id = ?", [image_id]).fetchone()
        return self._image(row) if row else None

    def images(self) -> Iterator[DigikamImage]:
        for row in self.conn.execute(self._IMAGE_SQL + " ORDER BY i.id"):
            yield self._image(row)

    def versions(self) -> Iterator[DigikamVersion]:
        """Every image with a recorded history, oldest id first (files that are gone are skipped)."""
        rows = self.conn.execute("SELECT imageid, uuid, history FROM ImageHistory ORDER BY imageid").fetchall()
        for iid, uuid, history in rows:
            text = _text(history)
            if not text or not text.strip():
                continue
            img = self.image(int(iid))
            if img is None or img.status in DIGIKAM_GONE:
                continue
            parents = []
            for (obj,) in self.conn.execute(
                "SELECT object FROM ImageRelations WHERE subject = ? AND type = ? ORDER BY object",
                [iid, DIGIKAM_DERIVED_FROM],
            ):
                p = self.image(int(obj))
                if p is not None:
                    parents.append(p)
            yield DigikamVersion(img, _text(uuid), text, tuple(parents))


# --- darktable -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DarktableImage:
    id: int
    folder: str
    filename: str
    version: int  # duplicate number: 0 is the image itself, N its sidecar IMG_NN.ext.xmp
    orientation: int | None  # darktable orientation bits from EXIF (images.orientation)
    history_end: int
    width: int | None
    height: int | None

    @property
    def path(self) -> Path:
        return Path(self.folder, self.filename)


@dataclass(frozen=True)
class DarktableEntry:
    """One row of darktable's ``history`` table (the same fields as a sidecar's history ``rdf:li``)."""

    num: int
    operation: str
    modversion: int
    params: bytes
    enabled: bool
    multi_priority: int
    multi_name: str
    blendop_version: int | None
    blendop_params: bytes | None


class DarktableLibrary:
    """darktable's ``library.db``, read-only. darktable's database is the master copy of its edits (FORMATS §2.1)."""

    TABLES = ("images", "film_rolls", "history")

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        if self.path.is_dir():
            self.path = self.path / "library.db"
        self.conn = connect_readonly(self.path)
        _require_tables(self.conn, os.fsdecode(self.path), self.TABLES, "darktable library")
        cols = {r[1] for r in self.conn.execute("PRAGMA table_info(images)")}
        self._has_orientation = "orientation" in cols
        self._has_module_order = bool(
            self.conn.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='module_order'").fetchone()
        )

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> DarktableLibrary:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def images(self) -> Iterator[DarktableImage]:
        orient = "i.orientation" if self._has_orientation else "NULL"
        sql = (
            f"SELECT i.id, f.folder, i.filename, i.version, {orient}, i.history_end, i.width, i.height"
            " FROM images i JOIN film_rolls f ON f.id = i.film_id ORDER BY f.folder, i.filename, i.version"
        )
        for iid, folder, filename, version, orientation, end, w, h in self.conn.execute(sql):
            yield DarktableImage(
                id=int(iid), folder=_text(folder) or "", filename=_text(filename) or "",
                version=int(version or 0), orientation=orientation, history_end=int(end or 0), width=w, height=h,
            )

    def history(self, image_id: int) -> list[DarktableEntry]:
        rows = self.conn.execute(
            "SELECT num, operation, module, op_params, enabled, multi_priority, multi_name, blendop_version,"
            " blendop_params FROM history WHERE imgid = ? ORDER BY num",
            [image_id],
        ).fetchall()
        return [
            DarktableEntry(
                num=int(num), operation=_text(op) or "", modversion=int(mod or 0), params=bytes(params or b""),
                enabled=bool(enabled), multi_priority=int(prio or 0), multi_name=_text(name) or "",
                blendop_version=bv, blendop_params=bytes(bp) if bp is not None else None,
            )
            for num, op, mod, params, enabled, prio, name, bv, bp in rows
        ]

    def module_order(self, image_id: int) -> tuple[int | None, str | None]:
        """(iop_order_version, custom iop list) of an image; (None, None) when the library has no record."""
        if not self._has_module_order:
            return None, None
        row = self.conn.execute("SELECT version, iop_list FROM module_order WHERE imgid = ?", [image_id]).fetchone()
        return (row[0], _text(row[1])) if row else (None, None)

    def sidecar(self, image: DarktableImage):  # -> sidecars.xmp.XmpDocument
        """The history of ``image`` as the sidecar darktable would write from its database (in memory only).

        Lets the one darktable history codec (``sidecars.darktable``) read database and sidecar alike.
        """
        from pic_plugin.editors.darktable import NS_DT, encode_params
        from pic_plugin.editors.xmp import XmpDocument, new_item_like

        doc = XmpDocument.new()
        doc.set(NS_DT, "xmp_version", "5", prefix_hint="darktable")
        doc.set(NS_DT, "history_end", str(image.history_end), prefix_hint="darktable")
        order, iop_list = self.module_order(image.id)
        if order is not None:
            doc.set(NS_DT, "iop_order_version", str(order), prefix_hint="darktable")
        if iop_list:
            doc.set(NS_DT, "iop_order_list", iop_list, prefix_hint="darktable")
        seq = doc.ensure_array(NS_DT, "history", "Seq", prefix_hint="darktable")
        for e in self.history(image.id):
            item = new_item_like(seq, None)
            for name, value in (
                ("num", str(e.num)), ("operation", e.operation), ("enabled", "1" if e.enabled else "0"),
                ("modversion", str(e.modversion)), ("params", encode_params(e.params, "never")),
                ("multi_name", e.multi_name), ("multi_priority", str(e.multi_priority)),
            ):
                item.set(NS_DT, name, value, prefix_hint="darktable")
        return doc

