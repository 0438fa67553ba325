"""digiKam's ``digikam4.db``, read-only: images, album roots and version relations (FORMATS.md section 3).

Paths: digiKam stores album roots as ``volumeid:?path=/abs`` or ``volumeid:?uuid=UUID`` plus a path on that
volume; ``uniqueHash`` + size recognise a file that moved (the harvest uses them).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

from pic_plugin.editors.databases import connect_readonly, require_tables, text_or_none

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
        require_tables(self.conn, os.fsdecode(self.path), self.TABLES, "digiKam")
        self._roots: dict[int, str | None] = {}
        for rid, ident, spec in self.conn.execute("SELECT id, identifier, specificPath FROM AlbumRoots"):
            self._roots[int(rid)] = resolve_digikam_root(text_or_none(ident), text_or_none(spec))

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
            id=int(iid), name=text_or_none(name) or "", relative_path=text_or_none(rel) or "/",
            root=self._roots.get(int(root_id)) if root_id is not None else None,
            unique_hash=text_or_none(uhash), file_size=size, orientation=orient, width=w, height=h, status=status,
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
            text = text_or_none(history)
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
            yield DigikamVersion(img, text_or_none(uuid), text, tuple(parents))


