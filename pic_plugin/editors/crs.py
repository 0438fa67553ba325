"""Adobe Camera Raw / Lightroom crop (``crs:`` namespace), FORMATS.md section 4.

``crs:CropLeft/Top/Right/Bottom`` are two opposite corners of the crop, normalized to the **stored** (unrotated)
image; ``tiff:Orientation`` in the same packet is the final orientation. ``crs:HasCrop`` is authoritative (False:
the Crop* values are stale), ``crs:AlreadyApplied=True`` means the crop is already baked into the pixels (a rendered
JPEG): it is reported as such, never as a crop to apply. ``crs:CropAngle`` rotates the rectangle; pic then reports
its axis-aligned bound and marks it approximate.

Writing goes to Lightroom's sidecar ``IMG.xmp`` (extension replaced) and is opt-in: darktable imports a crs crop on
an image's first darkroom load as a ``clipping`` entry, so a darktable crop *and* a crs crop for the same photo
crop it twice (pitfall 21); the same ``IMG.xmp`` is also picked up for ``IMG.CR2`` and ``IMG.JPG`` alike. pic
writes ``tiff:ImageWidth/ImageLength`` (stored size) and ``tiff:Orientation`` when they are missing, because
darktable's import divides by the image size (NaN crop without it, pitfall 23).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pic_plugin.core.errors import SidecarError, UnsupportedSidecarError
from pic_plugin.core.geometry import Box, is_full_frame
from pic_plugin.core.orientation import displayed_to_stored, normalize_orientation, stored_to_displayed
from pic_plugin.editors.picns import NS_PIC, parse_box, write_crs_marker
from pic_plugin.editors.xmp import XmpDocument

NS_CRS = "http://ns.adobe.com/camera-raw-settings/1.0/"
NS_TIFF = "http://ns.adobe.com/tiff/1.0/"
_SAME_EPS = 1e-9
#: Decimals Lightroom writes crop edges with (real sidecars: ``0.190999``, ``0.929009``).
CRS_DECIMALS = 6
#: What a settings packet needs beside the crop when pic starts it (``HasSettings=True``): Lightroom reads a packet
#: without ``crs:ProcessVersion`` as the 2003 process and renders the photo differently, so pic names the process
#: version of the real samples (Camera Raw 11-12, process version 5 = "11.0"). Existing values are never changed.
NEW_PACKET_SETTINGS = (("Version", "11.0"), ("ProcessVersion", "11.0"))


def crs_real(value: float) -> str:
    """A crop value as Lightroom spells it: at most 6 decimals, no trailing zeros (``0.247396``, ``0``, ``1``)."""
    text = f"{round(value, CRS_DECIMALS):.{CRS_DECIMALS}f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def _bool(text: str | None) -> bool | None:
    if text is None:
        return None
    t = text.strip().lower()
    if t in ("true", "1"):
        return True
    if t in ("false", "0"):
        return False
    raise SidecarError(f"crs boolean {text[:20]!r} is neither True nor False")


def _real(doc: XmpDocument, ns: str, name: str) -> float | None:
    text = doc.get(ns, name)
    if text is None or not text.strip():
        return None
    try:
        v = float(text.strip())
    except ValueError:
        raise SidecarError(f"crs:{name} {text[:20]!r} is not a number") from None
    if not math.isfinite(v):
        raise SidecarError(f"crs:{name} is not finite")
    return v


def _int(doc: XmpDocument, ns: str, name: str) -> int | None:
    v = _real(doc, ns, name)
    return None if v is None else int(v)


@dataclass
class CrsCrop:
    corners: Box  # (Left, Top, Right, Bottom) as stored: two opposite corners, stored frame
    bound: Box  # axis-aligned crop in the stored frame (== corners when the angle is 0)
    displayed: Box  # ``bound`` in the displayed frame of ``orientation``
    orientation: int  # tiff:Orientation (the final one), or the caller's when the file has none
    angle: float = 0.0
    has_crop: bool = True
    already_applied: bool = False
    size: tuple[int, int] | None = None  # tiff:ImageWidth / ImageLength (stored frame)
    approximate: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def is_crop_to_apply(self) -> bool:
        """A real crop an editor would still apply: HasCrop, not baked in, not the full frame."""
        return self.has_crop and not self.already_applied and not _is_full(self.bound)

    def in_frame(self, exif_orientation: int) -> Box:
        """The crop (content region) in the displayed frame of ``exif_orientation`` (pic's frame)."""
        return stored_to_displayed(self.bound, exif_orientation)

    def detail(self) -> dict[str, Any]:
        return {
            "corners": self.corners.as_list(),
            "stored": self.bound.as_list(),
            "angle": self.angle,
            "has_crop": self.has_crop,
            "already_applied": self.already_applied,
            "tiff_orientation": self.orientation,
            "size": list(self.size) if self.size else None,
            "displayed_in_editor": self.displayed.as_list(),
            "notes": list(self.notes),
        }


def _is_full(box: Box) -> bool:
    return is_full_frame(box, 1e-6)


def _rotated_bound(corners: Box, angle_deg: float, size: tuple[float, float]) -> Box:
    """Axis-aligned bound (stored frame) of the rectangle whose opposite corners ``corners`` are, rotated by
    CropAngle. darktable's lightroom.c maps a corner into the straightened frame with rotate_xy(-(-CropAngle)),
    i.e. (x cos a + y sin a, -x sin a + y cos a) with a = CropAngle; the crop is axis-aligned there."""
    w, h = size
    a = math.radians(angle_deg)
    c, s = math.cos(a), math.sin(a)

    def fwd(x: float, y: float) -> tuple[float, float]:
        return (x * c + y * s, -x * s + y * c)

    def back(x: float, y: float) -> tuple[float, float]:
        return (x * c - y * s, x * s + y * c)

    p1 = fwd((corners.left - 0.5) * w, (corners.top - 0.5) * h)
    p3 = fwd((corners.right - 0.5) * w, (corners.bottom - 0.5) * h)
    pts = [back(*q) for q in (p1, p3, (p3[0], p1[1]), (p1[0], p3[1]))]
    xs = [x / w + 0.5 for x, _ in pts]
    ys = [y / h + 0.5 for _, y in pts]
    return Box(min(xs), min(ys), max(xs), max(ys)).clamped()


def read_crs(doc: XmpDocument, orientation: int | None = None) -> CrsCrop | None:
    """The crs crop in ``doc`` (None when it has no crs crop properties at all).

    The displayed box uses the file's final ``tiff:Orientation``; ``orientation`` is the fallback.
    """
    has_crop = _bool(doc.get(NS_CRS, "HasCrop"))
    values = [_real(doc, NS_CRS, k) for k in ("CropLeft", "CropTop", "CropRight", "CropBottom")]
    if has_crop is None and all(v is None for v in values):
        return None
    notes: list[str] = []
    if any(v is None for v in values):
        if has_crop:
            notes.append("HasCrop=True but some Crop* values are missing: treated as no crop")
        has_crop = False
        values = [0.0, 0.0, 1.0, 1.0]
    left, top, right, bottom = (float(v) for v in values)  # type: ignore[arg-type]
    corners = Box(left, top, right, bottom)
    angle = _real(doc, NS_CRS, "CropAngle") or 0.0
    width, length = _int(doc, NS_TIFF, "ImageWidth"), _int(doc, NS_TIFF, "ImageLength")
    size = (width, length) if width and length and width > 0 and length > 0 else None
    tiff_o = _int(doc, NS_TIFF, "Orientation")
    final_o = normalize_orientation(tiff_o if tiff_o is not None else (orientation or 1))
    approximate = False
    if angle:
        if size is None:
            notes.append("tiff:ImageWidth/ImageLength missing: a 3:2 frame was assumed for CropAngle")
        bound = _rotated_bound(corners, angle, size or (1.5, 1.0))
        approximate = True
        notes.append(f"CropAngle {angle:g}: the crop is its axis-aligned bound in the unrotated frame")
    else:
        bound = Box(min(left, right), min(top, bottom), max(left, right), max(top, bottom)).clamped()
    already = bool(_bool(doc.get(NS_CRS, "AlreadyApplied")))
    if already:
        notes.append("crs:AlreadyApplied=True: this crop is already baked into the pixels, not one to apply")
    if not has_crop:
        notes.append("crs:HasCrop=False: the Crop* values are stale and ignored")
    return CrsCrop(
        corners=corners,
        bound=bound,
        displayed=stored_to_displayed(bound, final_o),
        orientation=final_o,
        angle=angle,
        has_crop=bool(has_crop),
        already_applied=already,
        size=size,
        approximate=approximate,
        notes=notes,
    )


@dataclass
class CrsWrite:
    status: Literal["written", "unchanged", "kept-user-crop"]
    stored: Box | None = None
    notes: list[str] = field(default_factory=list)


def _same(a: Box, b: Box) -> bool:
    return all(abs(x - y) <= _SAME_EPS for x, y in zip(a, b, strict=True))


def write_crs(
    doc: XmpDocument,
    crop: Box,
    orientation: int,
    *,
    size: tuple[int, int] | None = None,
    force: bool = False,
) -> CrsWrite:
    """Set the crs crop to ``crop`` (pic's displayed frame; ``size`` = displayed pixel size), in place.

    A crop already in the file that pic did not write (pic:CrsCrop) is the user's: kept unless ``force``.
    """
    if not crop.is_valid():
        raise SidecarError(f"invalid crop {tuple(crop)}: need 0 <= left < right <= 1 and 0 <= top < bottom <= 1")
    existing = read_crs(doc, orientation)
    if existing is not None and existing.already_applied:
        raise UnsupportedSidecarError("crs:AlreadyApplied=True: this sidecar describes pixels that are already rendered "
                           "(a crop written here would be applied twice); pic does not write a crop into it")
    own_text = doc.get(NS_PIC, "CrsCrop")
    own = parse_box(own_text) if own_text is not None else None
    # rounded first, so that the marker, the file and a later comparison all hold the same numbers
    stored = Box(*(float(crs_real(v)) for v in displayed_to_stored(crop, orientation)))
    if not stored.is_valid():
        raise SidecarError(f"crop {tuple(crop)} is narrower than Lightroom's {CRS_DECIMALS} decimals")
    if existing is not None and existing.has_crop and not _is_full(existing.bound):
        is_own = own is not None and existing.angle == 0.0 and _same(existing.corners, own)
        if not is_own and not force:
            return CrsWrite("kept-user-crop", existing.corners, ["the user's crs crop is kept"])
        if is_own and _same(existing.corners, stored):
            return CrsWrite("unchanged", stored)
    elif _is_full(stored):
        # The whole frame and no crop to undo: a crop setting would only mark the photo as edited.
        return CrsWrite("unchanged", None, ["the whole frame: no crop needed"])
    if doc.get(NS_CRS, "HasSettings") is None:
        for name, value in NEW_PACKET_SETTINGS:
            if doc.get(NS_CRS, name) is None:
                doc.set(NS_CRS, name, value, "crs")
    doc.set(NS_CRS, "HasCrop", "True", "crs")
    for name, value in zip(("CropLeft", "CropTop", "CropRight", "CropBottom"), stored, strict=True):
        doc.set(NS_CRS, name, crs_real(value), "crs")
    doc.set(NS_CRS, "CropAngle", "0", "crs")
    if doc.get(NS_CRS, "CropConstrainToWarp") is None:
        doc.set(NS_CRS, "CropConstrainToWarp", "0", "crs")  # what Lightroom writes for a crop without Upright
    if doc.get(NS_CRS, "HasSettings") is None:
        doc.set(NS_CRS, "HasSettings", "True", "crs")
    notes = []
    if doc.get(NS_TIFF, "ImageWidth") is None or doc.get(NS_TIFF, "ImageLength") is None:
        if size is None:
            notes.append("image size unknown: tiff:ImageWidth/ImageLength not written (darktable's import needs them)")
        else:
            w, h = size
            stored_size = (h, w) if normalize_orientation(orientation) >= 5 else (w, h)
            doc.set(NS_TIFF, "ImageWidth", str(stored_size[0]), "tiff")
            doc.set(NS_TIFF, "ImageLength", str(stored_size[1]), "tiff")
    if doc.get(NS_TIFF, "Orientation") is None:
        doc.set(NS_TIFF, "Orientation", str(normalize_orientation(orientation)), "tiff")
    write_crs_marker(doc, stored)
    return CrsWrite("written", stored, notes)


def sidecar_path(image: Path) -> Path:
    """Lightroom's ``IMG.xmp`` (extension replaced); an existing ``IMG.XMP`` is used as is (darktable tries both)."""
    lower = image.with_name(_stem(image) + ".xmp")
    upper = image.with_name(_stem(image) + ".XMP")
    if not lower.exists() and upper.exists():
        return upper
    return lower


def _stem(image: Path) -> str:
    name = image.name
    return name.rsplit(".", 1)[0] if "." in name.lstrip(".") else name


