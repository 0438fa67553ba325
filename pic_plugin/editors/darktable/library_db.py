"""darktable's ``library.db``, read-only: film rolls, images and their history (FORMATS.md 2.1: the database, not
the sidecar, is the master copy for imported images). Film-roll folders are absolute paths.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from pic_plugin.editors.databases import connect_readonly, require_tables, text_or_none

#: ``DT_IMAGE_AUTO_PRESETS_APPLIED`` in ``images.flags`` (src/common/image.h).
AUTO_PRESETS_APPLIED = 1 << 9


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
    #: darktable's DT_IMAGE_AUTO_PRESETS_APPLIED flag: it has loaded the photo in the darkroom (and so has read, or
    #: will never read, a Lightroom ``IMG.xmp``); None when the library has no ``flags`` column.
    auto_presets_applied: bool | None = None

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
        require_tables(self.conn, os.fsdecode(self.path), self.TABLES, "darktable library")
        cols = {r[1] for r in self.conn.execute("PRAGMA table_info(images)")}
        self._has_orientation = "orientation" in cols
        self._has_flags = "flags" in cols
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
        flags = "i.flags" if self._has_flags else "NULL"
        sql = (
            f"SELECT i.id, f.folder, i.filename, i.version, {orient}, i.history_end, i.width, i.height, {flags}"
            " FROM images i JOIN film_rolls f ON f.id = i.film_id ORDER BY f.folder, i.filename, i.version"
        )
        for iid, folder, filename, version, orientation, end, w, h, fl in self.conn.execute(sql):
            yield DarktableImage(
                id=int(iid), folder=text_or_none(folder) or "", filename=text_or_none(filename) or "",
                version=int(version or 0), orientation=orientation, history_end=int(end or 0), width=w, height=h,
                auto_presets_applied=bool(int(fl) & AUTO_PRESETS_APPLIED) if isinstance(fl, int) else None,
            )

    def history(self, image_id: int) -> list[DarktableEntry]:
        rows = self.conn.execute(
            "SELECT num, operation, module, op_params, enabled, multi_priority, multi_name, blendop_version,"
            " blendop_params FROM history WHERE imgid = ? ORDER BY num",
            [image_id],
        ).fetchall()
        return [
            DarktableEntry(
                num=int(num), operation=text_or_none(op) or "", modversion=int(mod or 0), params=bytes(params or b""),
                enabled=bool(enabled), multi_priority=int(prio or 0), multi_name=text_or_none(name) or "",
                blendop_version=bv, blendop_params=bytes(bp) if bp is not None else None,
            )
            for num, op, mod, params, enabled, prio, name, bv, bp in rows
        ]

    def module_order(self, image_id: int) -> tuple[int | None, str | None]:
        """(iop_order_version, custom iop list) of an image; (None, None) when the library has no record."""
        if not self._has_module_order:
            return None, None
        row = self.conn.execute("SELECT version, iop_list FROM module_order WHERE imgid = ?", [image_id]).fetchone()
        return (row[0], text_or_none(row[1])) if row else (None, None)

    def sidecar(self, image: DarktableImage):  # -> sidecars.xmp.XmpDocument
        """The history of ``image`` as the sidecar darktable would write from its database (in memory only).

        Lets the one darktable history codec (``editors.darktable``) read database and sidecar alike.
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

