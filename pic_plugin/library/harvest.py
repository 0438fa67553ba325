"""Harvesting: every crop a photographer already made, from every editor pic can read, into the catalog.

Sources, per photo (the crop always belongs to the photo it was made *of*, in pic's displayed frame):

* darktable: the effective crop of ``IMG.ext.xmp`` and of each duplicate ``IMG_NN.ext.xmp``
  (``sidecars.find_crops``), and, with ``darktable_library``, the history in darktable's ``library.db``, which is
  the master copy: where both exist the database wins and the detail says whether the sidecar agreed.
* Lightroom / Camera Raw: ``crs:`` crops (``sidecars.find_crops``; baked-in ``AlreadyApplied`` crops excluded).
* digiKam: versions (``IMG_v1.JPG``) whose ``Xmp.digiKam.ImageHistory`` crops their original (version sidecar or
  embedded XMP), and, with ``digikam_db``, the same histories from ``digikam4.db`` when sidecars are off.

Catalog rows are keyed (user, photo content, source). ``source`` is the editor (``darktable``, ``crs``) or, where
one photo can carry several crops of the same editor, the editor plus ``#`` and what tells them apart:
``darktable#2`` for darktable's duplicate 2, ``digikam#IMG_0001_v1.JPG`` for each digiKam version. Re-harvesting
therefore updates rows instead of adding new ones.

Weights (what the crop says about the user's taste): 1.0 for a crop the user made or edited; 0.3 for a crop equal
to pic's own suggestion (accepted unchanged, or never looked at: a weak positive); crops that are only
approximately known (lens/perspective corrections or rotations before the crop, free rotation in digiKam) count
half. Nothing that is read is ever written: images, sidecars and databases are opened read-only.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pic_plugin.core.errors import PicError
from pic_plugin.core.geometry import Box, is_full_frame
from pic_plugin.core.orientation import displayed_size, normalize_orientation, read_exif_orientation
from pic_plugin.editors.digikam import history as digikam
from pic_plugin.imaging.decode import image_format
from pic_plugin.library.catalog import Catalog
from pic_plugin.library.scan import content_key, iter_images

log = logging.getLogger(__name__)

WEIGHT_USER = 1.0
WEIGHT_ACCEPTED_SUGGESTION = 0.3
APPROXIMATE_FACTOR = 0.5
FULL_FRAME_EPS = 1e-4


@dataclass(frozen=True)
class LibraryCrop:
    """One crop found for ``image``: ``source`` is the editor, ``key`` the catalog source (see module doc)."""

    image: Path
    crop: Box
    source: str
    key: str
    detail: dict[str, Any]
    approximate: bool = False
    pic_suggestion: bool = False

    @property
    def weight(self) -> float:
        w = WEIGHT_ACCEPTED_SUGGESTION if self.pic_suggestion else WEIGHT_USER
        return w * APPROXIMATE_FACTOR if self.approximate else w

    def as_json(self) -> dict[str, Any]:
        return {
            "path": os.fsdecode(self.image),
            "crop": self.crop.as_list(),
            "source": self.source,
            "key": self.key,
            "approximate": self.approximate,
            "pic_suggestion": self.pic_suggestion,
            "weight": self.weight,
            "detail": self.detail,
        }


@dataclass
class HarvestReport:
    images: int = 0  # photos looked at
    crops: int = 0  # crops found
    added: int = 0  # catalog rows added or changed
    unchanged: int = 0  # already in the catalog as they are
    by_source: dict[str, int] = field(default_factory=dict)
    errors: list[tuple[str, str]] = field(default_factory=list)  # (path, message)

    @property
    def ok(self) -> bool:
        return not self.errors


ErrorSink = Callable[[str, str], None]


def _is_full(box: Box) -> bool:
    return is_full_frame(box, FULL_FRAME_EPS)


# --- image facts ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Frame:
    """An image as editors show it: displayed size in pixels and the EXIF orientation that gives it."""

    size: tuple[int, int]
    orientation: int
    raw: bool


def image_frame(path: Path) -> Frame:
    """Displayed size and orientation from the file header (RAW: LibRaw's output size and flip). Raises PicError."""
    fmt = image_format(path)
    if fmt == "raw":
        import rawpy

        from pic_plugin.core.orientation import LIBRAW_FLIP_TO_EXIF

        try:
            with rawpy.imread(os.fspath(path)) as raw:
                s = raw.sizes
                orientation = LIBRAW_FLIP_TO_EXIF.get(int(s.flip), 1)
                return Frame(displayed_size((int(s.width), int(s.height)), orientation), orientation, True)
        except Exception as exc:  # LibRaw raises its own hierarchy; any failure is a per-file problem
            raise PicError(f"cannot read the RAW header: {exc}") from None
    from PIL import Image

    try:
        with Image.open(path) as im:
            stored = im.size
    except Exception as exc:
        raise PicError(f"cannot read the image header: {type(exc).__name__}: {exc}") from None
    orientation = read_exif_orientation(path)
    return Frame(displayed_size(stored, orientation), orientation, False)


def _orientation(path: Path) -> int:
    if image_format(path) == "raw":
        from pic_plugin.imaging.decode import raw_orientation

        return raw_orientation(path)
    return read_exif_orientation(path)


# --- collecting ------------------------------------------------------------------------------------------------


def collect_crops(
    paths: Iterable[str | os.PathLike[str]],
    *,
    darktable_library: str | os.PathLike[str] | None = None,
    digikam_db: str | os.PathLike[str] | None = None,
    on_error: ErrorSink | None = None,
    on_image: Callable[[Path], None] | None = None,
) -> list[LibraryCrop]:
    """Every crop found for the photos under ``paths`` (and in the named databases), sorted by photo and source.

    Problems with single files or database rows go to ``on_error(path, message)`` and never stop the walk.
    With databases and no ``paths``, every photo the databases know is considered.
    """
    errors: ErrorSink = on_error or (lambda p, m: log.warning("%s: %s", p, m))
    roots = [Path(p) for p in paths]
    for r in roots:
        if not r.exists():
            errors(os.fsdecode(r), "no such file or folder")
    images = list(iter_images([r for r in roots if r.exists()]))
    index = digikam.HashIndex(images)
    found: dict[tuple[str, str], LibraryCrop] = {}

    def add(c: LibraryCrop, replace: bool = False) -> None:
        k = (os.path.abspath(c.image), c.key)
        if k in found and not replace:
            return
        found[k] = c

    for img in images:
        if on_image is not None:
            on_image(img)
        try:
            for c in _sidecar_crops(img):
                add(c)
        except Exception as exc:  # a per-file problem must never stop a harvest
            errors(os.fsdecode(img), _message(exc))
        try:
            c = _digikam_file_crop(img, index)
            if c is not None:
                add(c)
        except Exception as exc:
            errors(os.fsdecode(img), _message(exc))

    scope = [os.path.abspath(r) for r in roots if r.exists()]
    if darktable_library is not None:
        for c in _darktable_db_crops(Path(darktable_library), scope, errors):
            k = (os.path.abspath(c.image), c.key)
            side = found.get(k)
            if side is not None:
                c.detail["sidecar_agrees"] = side.crop.as_list(5) == c.crop.as_list(5)
            add(c, replace=True)  # darktable's database is the master copy
    if digikam_db is not None:
        for c in _digikam_db_crops(Path(digikam_db), scope, index, errors):
            k = (os.path.abspath(c.image), c.key)
            if k in found:
                found[k].detail.setdefault("also_in", []).append(os.fsdecode(digikam_db))
            else:
                add(c)
    return sorted(found.values(), key=lambda c: (os.fsencode(c.image), c.key))


def _message(exc: BaseException) -> str:
    if isinstance(exc, PicError):
        return str(exc)
    if isinstance(exc, OSError):
        return f"{exc.strerror or exc}"
    return f"{type(exc).__name__}: {exc}"


def _in_scope(path: Path, scope: list[str]) -> bool:
    if not scope:
        return True
    p = os.path.abspath(path)
    return any(p == s or p.startswith(s.rstrip(os.sep) + os.sep) for s in scope)


# darktable and crs sidecars: the sidecars package reads them (one codec per format).


def _sidecar_crops(img: Path) -> list[LibraryCrop]:
    from pic_plugin.editors.sidecars import find_crops

    out = []
    for fc in find_crops(img, _orientation(img)):
        if fc.source == "pic":
            continue  # pic's own record of a suggestion is not something the user did
        if _is_full(fc.crop):
            continue
        detail = dict(fc.detail)
        if fc.source == "darktable":
            dup = int(detail.get("duplicate", 0) or 0)
            key = "darktable" if dup == 0 else f"darktable#{dup}"
        else:
            key = fc.source
        out.append(LibraryCrop(img, fc.crop, fc.source, key, detail, fc.approximate, fc.is_pic_suggestion))
    return out


# digiKam versions found as files


def _digikam_file_crop(img: Path, index: digikam.HashIndex) -> LibraryCrop | None:
    info, problems = digikam.read_version(img)
    if info is None:
        if problems:
            raise PicError("; ".join(problems))
        return None
    steps = info.history.steps_from_original()
    if not any(s.is_crop() for s in steps):
        return None
    ref = info.history.original
    if ref is None:
        raise PicError(f"digiKam history ({info.where}) crops, but names no original file")
    if ref.file_name == img.name and (
        not ref.file_path or os.path.abspath(ref.file_path) == os.path.abspath(img.parent)
    ):
        return None  # digiKam overwrote the original: the crop is baked into the only file there is
    link = digikam.find_original(img, ref, index)
    if link is None:
        raise PicError(f"digiKam version of {ref.file_name!r}: original not found (looked at "
                       f"{ref.file_path or '?'}, this folder, and files with its uniqueHashV2)")
    return _digikam_crop(info, link, img)


def _digikam_crop(info: digikam.VersionInfo, link: digikam.OriginalLink, version: Path | None,
                  version_orientation: int | None = None, frame: Frame | None = None) -> LibraryCrop | None:
    frame = frame or image_frame(link.path)
    if version_orientation is None:
        version_orientation = _orientation(version) if version is not None and version.exists() else 1
    dc = digikam.version_crop(
        info, frame.size, link,
        version_orientation=1 if frame.raw else version_orientation,
        original_orientation=1 if frame.raw else frame.orientation,
    )
    if dc is None or _is_full(dc.crop):
        return None
    key = f"digikam#{os.fsdecode(info.path.name)}"
    return LibraryCrop(link.path, dc.crop, "digikam", key, dc.detail, dc.approximate, False)


# digiKam database


def _digikam_db_crops(db_path: Path, scope: list[str], index: digikam.HashIndex,
                      errors: ErrorSink) -> Iterator[LibraryCrop]:
    from pic_plugin.editors.databases import EditorDatabaseError
    from pic_plugin.editors.digikam.database import DigikamDatabase

    try:
        db = DigikamDatabase(db_path)
    except EditorDatabaseError as exc:
        errors(os.fsdecode(db_path), str(exc))
        return
    with db:
        for v in db.versions():
            label = f"{os.fsdecode(db_path)}: image {v.image.id} ({v.image.name})"
            try:
                c = _digikam_db_crop(v, index)
            except Exception as exc:
                errors(label, _message(exc))
                continue
            if c is not None and _in_scope(c.image, scope):
                c.detail["database"] = os.fsdecode(db_path)
                yield c


def _digikam_db_crop(v, index: digikam.HashIndex) -> LibraryCrop | None:
    history = digikam.parse_history(v.history, source=f"digikam4.db image {v.image.id}")
    if not any(s.is_crop() for s in history.steps_from_original()):
        return None
    ref = history.original
    parents = list(v.derived_from)
    # The original is the parent the history names (or, failing that, the first digiKam related).
    if ref is not None and ref.file_name:
        parents.sort(key=lambda p: p.name != ref.file_name)
    if not parents and ref is None:
        raise PicError("history crops, but neither the history nor ImageRelations name the original")
    original_path: Path | None = None
    how = "database"
    verified = False
    for p in parents:
        # A file the user pointed at with this content first (libraries move), then digiKam's own path.
        hit = index.find(p.unique_hash, p.file_size) if p.unique_hash else None
        if hit is not None:
            original_path, how, verified = hit, "hash", True
            break
        cand = p.path
        if cand is not None and cand.is_file():
            original_path, verified = cand, False
            break
    if original_path is None and ref is not None:
        version_guess = v.image.path or Path(v.image.name)
        link = digikam.find_original(version_guess, ref, index)
        if link is not None:
            original_path, how, verified = link.path, link.how, link.verified
    if original_path is None:
        raise PicError(f"original of {v.image.name!r} not found on disk (album root not mounted? name the "
                       "folder that holds it)")
    version_path = v.image.path if v.image.path is not None and v.image.path.is_file() else None
    if version_path is None and v.image.unique_hash:
        version_path = index.find(v.image.unique_hash, v.image.file_size)
    info = digikam.VersionInfo(version_path or Path(v.image.name), history, "digikam4.db", v.uuid)
    link = digikam.OriginalLink(original_path, how, verified)
    return _digikam_crop(info, link, version_path,
                         version_orientation=None if version_path else normalize_orientation(v.image.orientation))


# darktable library


def _darktable_db_crops(db_path: Path, scope: list[str], errors: ErrorSink) -> Iterator[LibraryCrop]:
    from pic_plugin.editors.darktable.library_db import DarktableLibrary
    from pic_plugin.editors.databases import EditorDatabaseError

    try:
        lib = DarktableLibrary(db_path)
    except EditorDatabaseError as exc:
        errors(os.fsdecode(db_path), str(exc))
        return
    with lib:
        for im in lib.images():
            if not _in_scope(im.path, scope):
                continue
            try:
                c = darktable_library_crop(lib, im)
            except Exception as exc:
                errors(f"{os.fsdecode(db_path)}: {os.fsdecode(im.path)}", _message(exc))
                continue
            if c is not None:
                yield c


def darktable_library_crop(lib, im) -> LibraryCrop | None:  # noqa: ANN001 (editor_databases types)
    """The crop darktable's database holds for one image or duplicate (None when there is none)."""
    from pic_plugin.editors import darktable as dt
    from pic_plugin.editors import picns
    from pic_plugin.editors.xmp import read_sidecar

    path = im.path
    if path.is_file():
        exif_o = _orientation(path)
    else:  # the database records EXIF orientation as darktable bits
        exif_o = dt.BITS_TO_EXIF.get(im.orientation, 1) if im.orientation is not None else 1
    size = displayed_size((im.width, im.height), exif_o) if im.width and im.height else None
    c = dt.read_crop(lib.sidecar(im), exif_o, size)
    if c is None or not c.enabled or c.is_full_frame:
        return None
    mine = False
    sidecar = dt.sidecar_path(path, im.version)
    if c.module == "crop" and sidecar.is_file():
        try:
            doc, _ = read_sidecar(sidecar)
            rec = picns.read_record(doc) if doc is not None else None
            own = rec.darktable if rec is not None else None
            mine = own is not None and dt.decode_params(own.params_text) == c.params
        except PicError:
            mine = False
    detail = {**c.detail(), "library": os.fsdecode(lib.path), "imgid": im.id, "duplicate": im.version}
    key = "darktable" if im.version == 0 else f"darktable#{im.version}"
    return LibraryCrop(path, c.crop, "darktable", key, detail, c.approximate, mine)


# --- harvesting ------------------------------------------------------------------------------------------------


def harvest(
    paths: Iterable[str | os.PathLike[str]],
    catalog: Catalog,
    user: str,
    *,
    darktable_library: str | os.PathLike[str] | None = None,
    digikam_db: str | os.PathLike[str] | None = None,
    on_crop: Callable[[LibraryCrop, bool], None] | None = None,
) -> HarvestReport:
    """Store every crop found under ``paths`` in ``catalog`` as ``user``'s. Idempotent; never writes what it reads.

    ``on_crop(crop, changed)`` is called for each crop (for progress output). Per-file problems end up in
    ``report.errors``; the harvest always runs to the end.
    """
    report = HarvestReport()

    def error(path: str, message: str) -> None:
        report.errors.append((path, message))

    def seen(_: Path) -> None:
        report.images += 1

    crops = collect_crops(paths, darktable_library=darktable_library, digikam_db=digikam_db,
                          on_error=error, on_image=seen)
    keys: dict[str, str | None] = {}
    for c in crops:
        k = os.path.abspath(c.image)
        if k not in keys:
            try:
                keys[k] = content_key(c.image)
            except OSError as exc:
                keys[k] = None
                error(os.fsdecode(c.image), f"cannot read it to recognise it: {exc.strerror or exc}")
        ck = keys[k]
        if ck is None:
            continue
        detail = {**c.detail, "approximate": c.approximate, "pic_suggestion": c.pic_suggestion, "editor": c.source}
        changed = catalog.add_user_crop(user, ck, os.fsdecode(c.image), c.crop, c.key, c.weight, detail)
        report.crops += 1
        report.by_source[c.source] = report.by_source.get(c.source, 0) + 1
        if changed:
            report.added += 1
        else:
            report.unchanged += 1
        if on_crop is not None:
            on_crop(c, changed)
    return report
