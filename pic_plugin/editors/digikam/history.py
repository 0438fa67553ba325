"""digiKam: the crops a photographer made in digiKam's editor, read back from the versions digiKam saved.

digiKam crops destructively. With versioning on, the editor saves a new file (``IMG_0001_v1.JPG``) and records
in its metadata, as ``Xmp.digiKam.ImageHistory``, an XML document (a text value inside the XMP) naming the
original file and every step it applied (FORMATS.md §3.2). The history is descriptive: digiKam never replays it.
pic replays only its geometry to find which region of the ORIGINAL the version shows; that region, in the
original's displayed frame, is the user's crop of the original (the photo pic learns on).

* Geometry steps: ``digikam:RatioCrop`` and ``transform:crop`` (x, y, width, height in pixels of the editor's
  image *at that step*), ``transform:rotate`` (90 = clockwise, 180, 270), ``transform:flip``,
  ``transform:resize`` (scales every later pixel coordinate). Colour filters do not move pixels. Filters that
  warp or resize by their own rules (free rotation, shear, lens/perspective corrections, borders, content-aware
  resize) cannot be replayed exactly: the result is flagged approximate, or refused when a later crop's frame
  size becomes unknown.
* Step 0 is the original as the editor showed it: non-RAW files auto-rotated by their EXIF orientation (not
  recorded in the history), RAW files upright from the RAW engine. Both are pic's displayed frame.
* The history document is parsed hardened (no DTD, entities or external references; size and depth limits).

Where the history lives: the version's sidecar (``file.ext.xmp``, or ``file.xmp`` with digiKam's "compatible
names" setting) or the XMP embedded in the version file (digiKam's default), read-only; and digiKam's database
(``editor_databases``). Which file is the original: ``fileParams`` path and name, checked against digiKam's
``uniqueHashV2`` (MD5 of the first and last 100 kB) and size; failing that, any library file with that hash.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any
from xml.sax.saxutils import quoteattr

from pic_plugin.core.errors import SidecarError
from pic_plugin.core.geometry import Box
from pic_plugin.core.orientation import displayed_size, stored_to_displayed
from pic_plugin.editors.xmp import parse_xml

NS_DIGIKAM = "http://www.digikam.org/ns/1.0/"

#: A real history is a few kB (curves parameters make it a few tens); anything far larger is refused.
MAX_HISTORY_BYTES = 4 * 1024 * 1024
MAX_HISTORY_STEPS = 10_000
#: digiKam's uniqueHashV2 reads this much from each end of the file.
HASH_CHUNK = 100 * 1024

CROP_FILTERS = frozenset({"digikam:ratiocrop", "transform:crop"})
#: Filters that move content without changing the frame size: the crop region is only approximately the same.
CONTENT_WARPING = frozenset({
    "digikam:lensdistortionfilter", "digikam:lensfunfilter", "digikam:distortionfxfilter",
    "digikam:perspectivefilter", "digikam:perspective",
})
#: Filters that change the frame by their own rules (size unknown from the history alone).
FRAME_CHANGING = frozenset({
    "digikam:freerotationfilter", "digikam:shearfilter", "digikam:borderfilter", "digikam:contentawarefilter",
})


# --- the history document ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FileRef:
    """A ``<file>`` element: a file the history refers to (the original, the edited source, an intermediate)."""

    kind: str  # "original" | "source" | "intermediate"
    uuid: str | None = None
    file_name: str | None = None
    file_path: str | None = None
    file_hash: str | None = None
    file_size: int | None = None
    creation_date: str | None = None

    def path(self) -> Path | None:
        if not self.file_name:
            return None
        return Path(self.file_path or "") / self.file_name if self.file_path else Path(self.file_name)

    def hash_hint(self) -> str | None:
        """The uniqueHashV2 the original had: ``fileHash``, else the last 32 hex digits of the uuid."""
        if self.file_hash and re.fullmatch(r"[0-9a-fA-F]{32}", self.file_hash):
            return self.file_hash.lower()
        if self.uuid and len(self.uuid) >= 64 and re.fullmatch(r"[0-9a-fA-F]+", self.uuid[-32:]):
            return self.uuid[-32:].lower()
        return None


@dataclass(frozen=True)
class FilterStep:
    """A ``<filter>`` element: one editing step, its parameters as digiKam wrote them (strings)."""

    name: str
    display_name: str = ""
    version: int | None = 1
    category: str = "reproducible"
    branch: bool = False
    params: tuple[tuple[str, str], ...] = ()

    @property
    def key(self) -> str:
        return self.name.strip().lower()

    def param(self, name: str) -> str | None:
        for k, v in self.params:
            if k == name:
                return v
        return None

    def is_crop(self) -> bool:
        return self.key in CROP_FILTERS


@dataclass
class History:
    """A parsed ``Xmp.digiKam.ImageHistory`` document: files and filters in document order."""

    items: list[FileRef | FilterStep] = field(default_factory=list)

    @property
    def files(self) -> list[FileRef]:
        return [i for i in self.items if isinstance(i, FileRef)]

    @property
    def filters(self) -> list[FilterStep]:
        return [i for i in self.items if isinstance(i, FilterStep)]

    @property
    def original(self) -> FileRef | None:
        return next((f for f in self.files if f.kind == "original"), None)

    def steps_from_original(self) -> list[FilterStep]:
        """The filters applied since the original was loaded (all of them when the original is not named)."""
        start = 0
        for i, item in enumerate(self.items):
            if isinstance(item, FileRef) and item.kind == "original":
                start = i + 1
                break
        return [i for i in self.items[start:] if isinstance(i, FilterStep)]

    def to_xml(self) -> str:
        """The document as ``DImageHistory::toXml()`` writes it (params sorted by name, two-space indent)."""
        out = ['<?xml version="1.0" encoding="UTF-8"?>', '<history version="1">']
        for item in self.items:
            if isinstance(item, FilterStep):
                attrs = (
                    f" filterName={quoteattr(item.name)} filterDisplayName={quoteattr(item.display_name)}"
                    f' filterVersion="{item.version if item.version is not None else 1}"'
                    f" filterCategory={quoteattr(item.category)}"
                )
                if item.branch:
                    attrs += ' branch="true"'
                out.append(f"    <filter{attrs}>")
                out.append("        <params>")
                for k, v in sorted(item.params, key=lambda kv: kv[0]):
                    out.append(f"            <param name={quoteattr(k)} value={quoteattr(v)}/>")
                out.append("        </params>")
                out.append("    </filter>")
            else:
                attrs = ""
                if item.uuid:
                    attrs += f" uuid={quoteattr(item.uuid)}"
                if item.kind in ("original", "source"):
                    attrs += f' type="{item.kind}"'
                out.append(f"    <file{attrs}>")
                p = ""
                for name, value in (
                    ("fileName", item.file_name), ("filePath", item.file_path), ("fileHash", item.file_hash),
                    ("fileSize", None if item.file_size is None else str(item.file_size)),
                    ("creationDate", item.creation_date if item.kind == "original" else None),
                ):
                    if value is not None:
                        p += f" {name}={quoteattr(value)}"
                out.append(f"        <fileParams{p}/>")
                out.append("    </file>")
        out.append("</history>")
        return "\n".join(out) + "\n"


def parse_history(text: str | bytes, *, source: str = "Xmp.digiKam.ImageHistory") -> History:
    """Parse an ImageHistory document safely. Raises ``SidecarError`` with a message a user can act on.

    The hardened parser is the sidecars' own (``xmp.parse_xml``: no DTD, entities or external references, depth
    and size limits). Unknown elements are skipped like digiKam's reader does; a document that is not a
    ``<history>`` is an error (digiKam would read it as an empty history, which would hide a damaged file).
    """
    data = text.encode("utf-8") if isinstance(text, str) else bytes(text)
    if len(data) > MAX_HISTORY_BYTES:
        raise SidecarError(f"{source}: a {len(data)}-byte history is more than the "
                           f"{MAX_HISTORY_BYTES >> 20} MiB pic accepts (refused as hostile)")
    root = parse_xml(data, source=source).root
    if root.local != "history":
        raise SidecarError(f"{source}: not a digiKam image history (root element <{root.local}>)")
    history = History()
    for el in root.elements():
        if len(history.items) >= MAX_HISTORY_STEPS:
            raise SidecarError(f"{source}: more than {MAX_HISTORY_STEPS} history steps (refused as hostile)")
        if el.local == "file":
            kind = el.get(None, "type") or ""
            fp = el.find(None, "fileParams")

            def a(name: str, fp=fp) -> str | None:
                return (fp.get(None, name) or None) if fp is not None else None

            history.items.append(FileRef(
                kind=kind if kind in ("original", "source") else "intermediate",
                uuid=el.get(None, "uuid") or None,
                file_name=a("fileName"),
                file_path=a("filePath"),
                file_hash=a("fileHash"),
                file_size=_int_or_none(a("fileSize")),
                creation_date=a("creationDate"),
            ))
        elif el.local == "filter":
            params: list[tuple[str, str]] = []
            for block in el.elements():
                if block.local != "params":
                    continue
                for p in block.elements():
                    name = p.get(None, "name")
                    if p.local == "param" and name is not None:
                        params.append((name, p.get(None, "value") or ""))
            history.items.append(FilterStep(
                name=el.get(None, "filterName") or "",
                display_name=el.get(None, "filterDisplayName") or "",
                version=_int_or_none(el.get(None, "filterVersion")),
                category=el.get(None, "filterCategory") or "complex",
                branch=el.get(None, "branch") == "true",
                params=tuple(params),
            ))
    return history


def _int_or_none(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        return int(text.strip())
    except ValueError:
        return None


# --- replaying the geometry ---------------------------------------------------------------------------------------


class HistoryError(SidecarError):
    """The history's geometry cannot be replayed (a crop outside the frame, an unknown frame size, ...)."""


@dataclass(frozen=True)
class Chain:
    """What the version shows, in the original's displayed frame.

    ``box`` is the region of the original the version's pixels come from (normalized, displayed frame);
    ``orientation`` says how the version is turned relative to it, in EXIF numbering (1 = not turned: the user
    cropped and kept the photo's orientation; 6 = the version is the region turned 90° clockwise, ...).
    """

    box: Box
    pixel_box: tuple[float, float, float, float]  # the same region in pixels of the original's editor frame
    size: tuple[int, int]  # the version's pixel size the history implies
    orientation: int
    cropped: bool
    approximate: bool
    notes: tuple[str, ...]
    steps: tuple[str, ...]  # the geometry steps replayed, for the record


class _Affine:
    """Maps a point of the current editor frame (pixels) to the original frame (pixels), exactly."""

    def __init__(self, w: Fraction, h: Fraction) -> None:
        self.w, self.h = w, h
        # original = (a*x + b*y + c, d*x + e*y + f)
        self.a, self.b, self.c = Fraction(1), Fraction(0), Fraction(0)
        self.d, self.e, self.f = Fraction(0), Fraction(1), Fraction(0)

    def then(self, a: Fraction, b: Fraction, c: Fraction, d: Fraction, e: Fraction, f: Fraction) -> None:
        """Compose with ``old = (a*x' + b*y' + c, d*x' + e*y' + f)`` for the new frame's point (x', y')."""
        sa, sb, sc, sd, se, sf = self.a, self.b, self.c, self.d, self.e, self.f
        self.a, self.b, self.c = sa * a + sb * d, sa * b + sb * e, sa * c + sb * f + sc
        self.d, self.e, self.f = sd * a + se * d, sd * b + se * e, sd * c + se * f + sf

    def point(self, x: Fraction, y: Fraction) -> tuple[Fraction, Fraction]:
        return self.a * x + self.b * y + self.c, self.d * x + self.e * y + self.f

    def orientation(self) -> int:
        """How the current frame is turned relative to the original, as an EXIF orientation number."""
        if self.b == 0 and self.d == 0:
            return {(True, True): 1, (False, True): 2, (False, False): 3, (True, False): 4}[(self.a > 0, self.e > 0)]
        return {(True, True): 5, (True, False): 6, (False, False): 7, (False, True): 8}[(self.b > 0, self.d > 0)]


_ZERO, _ONE = Fraction(0), Fraction(1)


def _int_param(step: FilterStep, name: str) -> int:
    value = step.param(name)
    if value is None:
        raise HistoryError(f"{step.name}: parameter {name!r} is missing")
    try:
        return int(value.strip())
    except ValueError:
        try:
            f = float(value)
        except ValueError:
            raise HistoryError(f"{step.name}: parameter {name}={value[:20]!r} is not a number") from None
        if f != f or f in (float("inf"), float("-inf")) or not f.is_integer():
            raise HistoryError(f"{step.name}: parameter {name}={value[:20]!r} is not a whole number of pixels") from None
        return int(f)


def replay(steps: Iterable[FilterStep], size: tuple[int, int]) -> Chain:
    """Replay the geometric ``steps`` on an original whose editor frame is ``size`` (W, H) pixels.

    Raises ``HistoryError`` when the geometry cannot be followed (an empty crop, a crop after a step whose
    output size is unknown, a step with unreadable parameters).
    """
    w0, h0 = size
    if w0 <= 0 or h0 <= 0:
        raise HistoryError(f"original size {size} is not a size")
    m = _Affine(Fraction(w0), Fraction(h0))
    notes: list[str] = []
    done: list[str] = []
    approximate = False
    cropped = False
    unknown_size: str | None = None
    for step in steps:
        key = step.key
        W, H = m.w, m.h
        if key in CROP_FILTERS:
            if unknown_size is not None:
                raise HistoryError(f"{step.name} after {unknown_size}: the frame it crops has an unknown size")
            x, y = _int_param(step, "x"), _int_param(step, "y")
            cw, ch = _int_param(step, "width"), _int_param(step, "height")
            x0, y0 = max(Fraction(x), _ZERO), max(Fraction(y), _ZERO)
            x1, y1 = min(Fraction(x + cw), W), min(Fraction(y + ch), H)
            if x1 <= x0 or y1 <= y0:
                raise HistoryError(f"{step.name} x={x} y={y} {cw}x{ch} lies outside the {W}x{H} frame")
            if (x0, y0, x1, y1) != (x, y, x + cw, y + ch):
                notes.append(f"{step.name} x={x} y={y} {cw}x{ch} reaches outside the {W}x{H} frame: clamped, "
                             "as digiKam does")
            m.then(_ONE, _ZERO, x0, _ZERO, _ONE, y0)
            m.w, m.h = x1 - x0, y1 - y0
            cropped = True
            done.append(f"crop {x0},{y0} {m.w}x{m.h}")
        elif key in ("transform:rotate", "digikam:rotate90", "digikam:rotate270"):
            if key == "transform:rotate":
                angle = _int_param(step, "angle")
                if angle not in (90, 180, 270):
                    notes.append(f"transform:rotate angle={angle}: digiKam treats it as 270")
                    angle = 270
            else:
                angle = 90 if key.endswith("90") else 270
            if angle == 90:  # clockwise: old (x, y) = (y', H - x')
                m.then(_ZERO, _ONE, _ZERO, -_ONE, _ZERO, H)
                m.w, m.h = H, W
            elif angle == 180:
                m.then(-_ONE, _ZERO, W, _ZERO, -_ONE, H)
            else:  # 270 = counter-clockwise: old (x, y) = (W - y', x')
                m.then(_ZERO, -_ONE, W, _ONE, _ZERO, _ZERO)
                m.w, m.h = H, W
            done.append(f"rotate {angle}")
        elif key == "transform:flip":
            if (step.param("direction") or "").strip() == "vertical":
                m.then(_ONE, _ZERO, _ZERO, _ZERO, -_ONE, H)
                done.append("flip vertical")
            else:  # digiKam reads anything else as horizontal
                m.then(-_ONE, _ZERO, W, _ZERO, _ONE, _ZERO)
                done.append("flip horizontal")
        elif key == "transform:resize":
            nw, nh = _int_param(step, "width"), _int_param(step, "height")
            if nw <= 0 or nh <= 0:
                raise HistoryError(f"transform:resize to {nw}x{nh} is not a size")
            if unknown_size is None:
                m.then(W / nw, _ZERO, _ZERO, _ZERO, H / nh, _ZERO)
            else:
                # The frame before it is unknown, but a resize fixes the size again; the region stays unknown.
                raise HistoryError(f"transform:resize after {unknown_size}: the frame it scales has an unknown size")
            m.w, m.h = Fraction(nw), Fraction(nh)
            done.append(f"resize {nw}x{nh}")
        elif key in CONTENT_WARPING:
            approximate = True
            notes.append(f"{step.name} moves content: the region is approximate")
        elif key in FRAME_CHANGING:
            approximate = True
            unknown_size = step.name
            notes.append(f"{step.name} changes the frame: the region is approximate")
    if unknown_size is not None and not cropped:
        raise HistoryError(f"{unknown_size} changes the frame and no crop follows: nothing exact to read")
    (ux0, uy0), (ux1, uy1) = m.point(_ZERO, _ZERO), m.point(m.w, m.h)
    px = (min(ux0, ux1), min(uy0, uy1), max(ux0, ux1), max(uy0, uy1))
    box = Box(float(px[0] / w0), float(px[1] / h0), float(px[2] / w0), float(px[3] / h0))
    return Chain(
        box=box,
        pixel_box=tuple(float(v) for v in px),  # type: ignore[arg-type]
        size=(int(m.w), int(m.h)) if m.w.denominator == 1 and m.h.denominator == 1 else (round(m.w), round(m.h)),
        orientation=m.orientation(),
        cropped=cropped,
        approximate=approximate,
        notes=tuple(notes),
        steps=tuple(done),
    )


# --- identity: uniqueHashV2, sidecars, embedded XMP ----------------------------------------------------------------


def unique_hash_v2(path: str | os.PathLike[str]) -> str:
    """digiKam's ``uniqueHashV2``: MD5 (hex) of the first and the last 100 kB of the file."""
    md5 = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        n = min(size, HASH_CHUNK)
        if n:
            md5.update(fh.read(n))
            fh.seek(size - n)
            md5.update(fh.read(n))
    return md5.hexdigest()


def sidecar_paths(image: Path) -> list[Path]:
    """digiKam's sidecar names for ``image`` that exist: ``file.ext.xmp`` (default), then ``file.xmp``."""
    out = []
    for cand in (image.with_name(image.name + ".xmp"), image.with_suffix(".xmp") if image.suffix else None):
        if cand is not None and cand != image and cand.is_file():
            out.append(cand)
    return out


def embedded_xmp(path: Path) -> bytes | None:
    """The XMP packet embedded in a JPEG, TIFF, PNG or WebP file (read-only; Pillow reads the header only)."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            data = im.info.get("xmp")
            if data is None and hasattr(im, "tag_v2"):
                data = im.tag_v2.get(700)  # TIFF XMLPacket
    except Exception:  # not an image Pillow knows (RAW), or broken: no embedded XMP to read
        return None
    if isinstance(data, str):
        data = data.encode("utf-8")
    if isinstance(data, tuple):  # some TIFF writers store the packet as a tuple of ints
        try:
            data = bytes(data)
        except (TypeError, ValueError):
            return None
    return bytes(data) if data else None


@dataclass(frozen=True)
class VersionInfo:
    """A file that carries a digiKam image history (a version, or an original digiKam overwrote)."""

    path: Path
    history: History
    where: str  # the sidecar path, or "embedded"
    unique_id: str | None  # the version's own Xmp.digiKam.ImageUniqueID


def _xmp_values(data: bytes, source: str) -> tuple[str | None, str | None]:
    from pic_plugin.editors.xmp import parse_xmp

    doc = parse_xmp(data, source=source)
    return doc.get(NS_DIGIKAM, "ImageHistory"), doc.get(NS_DIGIKAM, "ImageUniqueID")


def read_version(path: Path) -> tuple[VersionInfo | None, list[str]]:
    """The image history recorded for ``path`` (sidecars first, then the embedded XMP) and per-source problems.

    Returns (None, problems) when no readable history exists. Nothing is ever written.
    """
    from pic_plugin.editors.xmp import read_bytes

    problems: list[str] = []
    sources: list[tuple[str, bytes]] = []
    for sc in sidecar_paths(path):
        try:
            data, _ = read_bytes(sc)
        except SidecarError as exc:
            problems.append(str(exc))
            continue
        if data is not None:
            sources.append((os.fsdecode(sc), data))
    emb = embedded_xmp(path) if path.suffix.lower() in _EMBEDDED_EXTS else None
    if emb is not None:
        sources.append(("embedded", emb))
    for where, data in sources:
        label = where if where != "embedded" else f"{os.fsdecode(path)} (embedded XMP)"
        try:
            text, uid = _xmp_values(data, label)
            if text is None or not text.strip():
                continue
            history = parse_history(text, source=f"{label}: ImageHistory")
        except SidecarError as exc:
            problems.append(str(exc))
            continue
        return VersionInfo(path, history, where, uid), problems
    return None, problems


_EMBEDDED_EXTS = frozenset({".jpg", ".jpeg", ".jpe", ".jfif", ".tif", ".tiff", ".png", ".webp"})


# --- finding the original ----------------------------------------------------------------------------------------


class HashIndex:
    """Library files by size, hashed (uniqueHashV2) only when a lookup needs them: cheap on large libraries."""

    def __init__(self, paths: Iterable[Path] = ()) -> None:
        self._by_size: dict[int, list[Path]] = {}
        self._hash: dict[Path, str | None] = {}
        for p in paths:
            self.add(p)

    def add(self, path: Path) -> None:
        try:
            size = os.stat(path).st_size
        except OSError:
            return
        bucket = self._by_size.setdefault(size, [])
        if path not in bucket:
            bucket.append(path)

    def hash_of(self, path: Path) -> str | None:
        if path not in self._hash:
            try:
                self._hash[path] = unique_hash_v2(path)
            except OSError:
                self._hash[path] = None
        return self._hash[path]

    def find(self, file_hash: str, size: int | None, exclude: Sequence[Path] = ()) -> Path | None:
        buckets = [self._by_size.get(size, [])] if size is not None else list(self._by_size.values())
        for bucket in buckets:
            for p in bucket:
                if p not in exclude and self.hash_of(p) == file_hash:
                    return p
        return None


@dataclass(frozen=True)
class OriginalLink:
    path: Path
    how: str  # "path", "folder+name", "hash"
    verified: bool  # uniqueHashV2 (and size) matched
    notes: tuple[str, ...] = ()


def find_original(version: Path, ref: FileRef, index: HashIndex | None = None) -> OriginalLink | None:
    """Locate the file ``ref`` names, preferring where the user's library is now.

    Order: the version's folder + the recorded name (digiKam keeps versions beside their original), any library
    file with the original's uniqueHashV2 (and size), then the absolute path recorded at editing time. A file
    found by name whose hash differs is taken only as a last resort, and says so.
    """
    want_hash = ref.hash_hint()

    def verify(p: Path) -> bool | None:
        if want_hash is None:
            return None  # nothing to check against
        try:
            if ref.file_size is not None and os.stat(p).st_size != ref.file_size:
                return False
            return (index.hash_of(p) if index is not None else unique_hash_v2(p)) == want_hash
        except OSError:
            return False

    me = os.path.abspath(version)
    unverified: tuple[Path, str] | None = None

    def by_name(cand: Path, how: str) -> OriginalLink | None:
        nonlocal unverified
        if os.path.abspath(cand) == me or not cand.is_file():
            return None
        ok = verify(cand)
        if ok is None or ok:
            return OriginalLink(cand, how, bool(ok))
        unverified = unverified or (cand, how)
        return None

    if ref.file_name:
        link = by_name(version.parent / ref.file_name, "folder+name")
        if link is not None:
            return link
    if want_hash is not None and index is not None:
        found = index.find(want_hash, ref.file_size, exclude=[version])
        if found is not None:
            return OriginalLink(found, "hash", True)
    recorded = ref.path()
    if recorded is not None and recorded.is_absolute():
        link = by_name(recorded, "path")
        if link is not None:
            return link
    if unverified is not None:
        # Same name, different bytes: digiKam writes metadata into originals (tags, ratings), which changes the
        # hash but not the pixels. Take it, and say so.
        return OriginalLink(unverified[0], unverified[1], False,
                            ("the original's uniqueHashV2 changed since the version was saved (metadata written "
                             "to it?)",))
    return None


# --- putting it together ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DigikamCrop:
    """A crop the user made in digiKam: the region of ``original`` that ``version`` shows."""

    original: Path
    version: Path
    crop: Box  # original's displayed frame
    approximate: bool
    detail: dict[str, Any]


def version_crop(
    info: VersionInfo,
    original_size: tuple[int, int],
    link: OriginalLink,
    *,
    version_orientation: int = 1,
    original_orientation: int = 1,
) -> DigikamCrop | None:
    """The crop ``info``'s history implies on the original (None when the history holds no crop).

    ``original_size`` is the original's displayed size in pixels (the editor's frame at step 0).
    ``version_orientation``: the version's own EXIF orientation. The editor writes upright pixels with
    orientation 1; a version that keeps the original's (non-1) orientation was made without auto-rotation
    (Batch Queue Manager), so its steps are replayed in the original's stored frame instead.
    """
    steps = info.history.steps_from_original()
    if not any(s.is_crop() for s in steps):
        return None
    stored_frame = original_orientation != 1 and version_orientation == original_orientation
    size = displayed_size(original_size, original_orientation) if stored_frame else original_size
    chain = replay(steps, size)
    crop = stored_to_displayed(chain.box, original_orientation) if stored_frame else chain.box
    notes = list(link.notes) + list(chain.notes)
    if stored_frame:
        notes.append(f"the version keeps EXIF orientation {version_orientation}: its steps were applied to the "
                     "stored (unrotated) original, as the Batch Queue Manager does")
    ref = info.history.original
    detail: dict[str, Any] = {
        "version": os.fsdecode(info.path),
        "history": info.where,
        "original_link": link.how,
        "original_verified": link.verified,
        "original_uuid": ref.uuid if ref else None,
        "version_uuid": info.unique_id,
        "steps": list(chain.steps),
        "filters": [s.name for s in steps],
        "frame_size": list(size),
        "pixel_box": [round(v, 3) for v in chain.pixel_box],
        "version_size": list(chain.size),
        "version_orientation": chain.orientation,
        "notes": notes,
    }
    return DigikamCrop(link.path, info.path, crop.clamped(), chain.approximate, detail)


__all__ = [
    "NS_DIGIKAM", "Chain", "DigikamCrop", "FileRef", "FilterStep", "HashIndex", "History", "HistoryError",
    "OriginalLink", "VersionInfo", "embedded_xmp", "find_original", "parse_history",
    "read_version", "replay", "sidecar_paths", "unique_hash_v2", "version_crop",
]
