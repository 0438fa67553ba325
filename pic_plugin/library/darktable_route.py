"""The darktable library route of ``pic batch``: photos darktable has imported get pic's crop through darktable.

darktable's ``library.db`` is the master copy of an imported photo's edits (FORMATS.md 2.1): a crop entry pic
appends to ``IMG.ext.xmp`` is not read (darktable reads sidecars at import, or after a dialog), and the next
rating or tag makes darktable rewrite the sidecar from its database, removing pic's entry. So for a photo found in
the library (read-only: film rolls + images) pic never writes the darktable entry; it decides per photo:

* ``in-darktable``: the library's history holds a crop entry with params pic wrote (through the plugin, or from a
  sidecar darktable imported). Reached: nothing more to do, even when darktable or the user changed or removed it
  since (a removal is their decision, never undone by pic);
* ``kept-user-crop``: the effective crop in the library is the user's, or darktable has not loaded the photo yet and
  will import the user's Lightroom crop from ``IMG.xmp`` on its first darkroom load (pic's crop would crop it twice);
* ``pending``: the suggestion waits in pic's catalog until the darktable plugin applies it through darktable's own
  API (history, undo and database agree): when darktable starts, or with "apply pending" in the pic module;
* ``unchanged`` (the whole frame: nothing to apply) / ``suggested`` (``--suggest-only``).

pic's own record (the ``pic`` target) is still written to the sidecar while the crop waits, and left alone once the
crop reached darktable, so a sidecar darktable rewrote is not written again.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from pic_plugin.core.errors import SidecarError
from pic_plugin.editors import darktable
from pic_plugin.editors.darktable.library_db import DarktableImage, DarktableLibrary
from pic_plugin.editors.sidecars import lightroom_crop
from pic_plugin.library.catalog import Catalog
from pic_plugin.library.options import BatchOptions
from pic_plugin.library.pipeline import UNCROPPED_AREA, PhotoOutput, write_sidecars

#: ``written["darktable_library"]`` values, as the summary names them.
STATES = ("in-darktable", "pending", "kept-user-crop", "unchanged", "suggested")


def default_library() -> Path:
    """darktable's own ``library.db`` (``$XDG_CONFIG_HOME/darktable`` or ``~/.config/darktable``)."""
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base, "darktable", "library.db")


def pic_params(catalog: Catalog, path: Path) -> set[bytes]:
    """Params of every darktable crop pic wrote for ``path`` (plugin styles and sidecar entries), as bytes."""
    record = catalog.image(path)
    if record is None:
        return set()
    texts = set()
    for s in catalog.suggestions_for_image(record.id):
        written = s.get("written") or {}
        if written.get("darktable_style"):
            texts.add(written["darktable_style"])
        entry = written.get("darktable_entry")
        if isinstance(entry, list) and len(entry) == 2:
            texts.add(entry[1])
    found = set()
    for text in texts:
        with contextlib.suppress(SidecarError):  # a damaged catalog value is simply not pic's
            found.add(darktable.decode_params(text))
    return found


@dataclass
class LibraryRoute:
    library: DarktableLibrary
    by_path: dict[str, list[DarktableImage]] = field(default_factory=dict)

    @classmethod
    def open(cls, path: Path) -> LibraryRoute:
        library = DarktableLibrary(path)
        route = cls(library)
        for image in library.images():
            route.by_path.setdefault(os.path.abspath(image.path), []).append(image)
        return route

    def close(self) -> None:
        self.library.close()

    def images(self, path: Path) -> list[DarktableImage]:
        return self.by_path.get(os.path.abspath(path), [])

    def state(self, image: DarktableImage, out: PhotoOutput, options: BatchOptions,
              mine: set[bytes]) -> tuple[str, bytes | None]:
        """The route's state for ``image`` and, when pic's crop is in darktable's history, its params."""
        doc = self.library.sidecar(image)
        hist = darktable.read_history(doc)
        entries = hist.entries if hist is not None else []
        for e in entries:
            if e.operation == "crop" and e.params is not None and e.params in mine:
                return "in-darktable", e.params
        try:
            crop = darktable.read_crop(doc, out.orientation, out.size)
        except SidecarError:
            crop = None
        if crop is not None and crop.enabled and not crop.is_full_frame:
            return "kept-user-crop", None
        if not image.auto_presets_applied:
            lr = lightroom_crop(out.path)
            if lr is not None and not lr.is_pic_own:
                # darktable imports it on the first darkroom load, after pic's crop: it would crop twice
                return "kept-user-crop", None
        assert out.suggestion is not None
        if out.suggestion.crop.area >= UNCROPPED_AREA:
            return "unchanged", None
        return ("pending" if options.mode == "apply" else "suggested"), None

    def writer(self, catalog: Catalog):  # -> SidecarWriter
        def write(out: PhotoOutput, options: BatchOptions) -> dict[str, Any]:
            images = self.images(out.path)
            if not images or "darktable" not in options.targets:
                return write_sidecars(out, options)
            main = next((i for i in images if i.version == 0), images[0])
            state, params = self.state(main, out, options, pic_params(catalog, out.path))
            targets = tuple(t for t in options.targets if t != "darktable")
            sidecar = darktable.sidecar_path(out.path)
            if state != "pending" and sidecar.exists():
                targets = tuple(t for t in targets if t != "pic")  # pic's record is there; do not rewrite it
            info: dict[str, Any] = {"files": {}}
            if targets:  # pic's record only: the crop itself waits for the plugin (or is in darktable already)
                info = write_sidecars(out, replace(options, targets=targets, mode="suggest"))
            try:
                st = os.stat(sidecar)
                info.setdefault("files", {})[os.fsdecode(sidecar)] = [st.st_size, st.st_mtime_ns]
            except OSError:
                pass
            info["darktable"] = "library"
            info["darktable_library"] = state
            if params is not None:  # remembered, so that later runs still know this crop in darktable as pic's
                info["darktable_style"] = darktable.encode_params(params)
            return info

        return write
