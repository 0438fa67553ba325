"""The frame an editor renders for a camera RAW file, and where an embedded preview lies in it.

pic's crops are normalized to a frame, so that frame must be the one the editors show: a 4:5 crop computed in a
510x382 preview frame renders at 0.791 in darktable's 494x366 frame. The rule (FORMATS.md, "RAW frames"):

- DNG (and GoPro's GPR, a DNG): the DefaultCrop inside the ActiveArea, as the DNG spec, darktable and Lightroom use.
- Other RAWs: darktable's own crop for the camera (rawspeed's ``cameras.xml``, read from the darktable
  installation when there is one), else LibRaw's visible area (close: a few pixels at the edges).
- Then the orientation (LibRaw's flip, as EXIF orientation 1-8).

Embedded previews cover an extent of the sensor that the file does not name (the camera's JPEG area, the whole
raw, or the frame itself). It is recognized by aspect ratio among the extents the metadata names; the preview is
then cropped (or its edges extended) to the frame, so the analysis sees the frame's content in the frame's shape.
All rectangles here are in raw pixel coordinates of the stored (unrotated) sensor.
"""

from __future__ import annotations

import functools
import os
import struct
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from pic_plugin.core.orientation import displayed_size

#: Where darktable installs rawspeed's camera data (Linux packages, /usr/local builds, macOS app, Windows).
CAMERAS_XML_CANDIDATES = (
    "/usr/share/darktable/rawspeed/cameras.xml",
    "/usr/local/share/darktable/rawspeed/cameras.xml",
    "/opt/homebrew/share/darktable/rawspeed/cameras.xml",
    "/Applications/darktable.app/Contents/Resources/share/darktable/rawspeed/cameras.xml",
    "C:/Program Files/darktable/share/darktable/rawspeed/cameras.xml",
)
#: A preview's aspect matches an extent when its short side is within this many pixels (JPEG sizes are rounded to
#: 8 or 16 pixels) or this fraction of what the extent's aspect predicts.
_ASPECT_SLACK_PX = 2.0
_ASPECT_SLACK_FRAC = 0.006
DNG_EXTS = frozenset({".dng", ".gpr"})


@dataclass(frozen=True)
class Rect:
    """A rectangle in raw pixel coordinates (stored orientation)."""

    x: int
    y: int
    w: int
    h: int

    @property
    def aspect(self) -> float:
        return self.w / self.h if self.h else 0.0

    def valid_in(self, size: tuple[int, int]) -> bool:
        return self.w > 0 and self.h > 0 and self.x >= 0 and self.y >= 0 and \
            self.x + self.w <= size[0] and self.y + self.h <= size[1]


@dataclass(frozen=True)
class RawFrame:
    """The editors' frame of one RAW file and the other extents its metadata names."""

    raw_size: tuple[int, int]  # the whole raw (LibRaw's raw_width x raw_height)
    frame: Rect  # what darktable / Lightroom render before any user edit, stored orientation
    orientation: int  # EXIF orientation (1-8) the editors apply
    source: str  # where the frame comes from, for messages and tests
    visible: Rect  # LibRaw's visible area: what its own demosaic (postprocess) returns
    extents: tuple[tuple[str, Rect], ...] = field(default=())  # named areas a preview may cover, frame first

    @property
    def stored_size(self) -> tuple[int, int]:
        return self.frame.w, self.frame.h

    @property
    def size(self) -> tuple[int, int]:
        """The frame as the editors display it (W, H): pic's ``DecodedImage.size`` for this file."""
        return displayed_size(self.stored_size, self.orientation)


def frame_from_metadata(
    raw_size: tuple[int, int],
    visible: Rect,
    orientation: int,
    *,
    dng: bool,
    inset_crop: Rect | None = None,
    rawspeed_crop: tuple[int, int, int, int] | None = None,
) -> RawFrame:
    """The frame from metadata alone (hermetic: no file access).

    ``inset_crop``: LibRaw's ``raw_inset_crops[0]`` (the DNG DefaultCrop; for other makers the maker's recorded
    area, e.g. Canon's SensorInfo). ``rawspeed_crop``: darktable's ``<Crop x y width height>`` for the camera, where a
    width or height <= 0 counts from the raw's right / bottom edge, as rawspeed reads it.
    """
    full = Rect(0, 0, *raw_size)
    crop = inset_crop if inset_crop is not None and inset_crop.valid_in(raw_size) else None
    frame, source = visible, "LibRaw's visible area"
    if dng:
        frame, source = (crop, "DNG DefaultCrop") if crop is not None else (visible, "DNG active area")
    elif rawspeed_crop is not None:
        x, y, w, h = rawspeed_crop
        rect = Rect(x, y, w if w > 0 else raw_size[0] - x + w, h if h > 0 else raw_size[1] - y + h)
        if rect.valid_in(raw_size):
            frame, source = rect, "darktable's camera data (rawspeed cameras.xml)"
    named = [("frame", frame), ("maker crop", crop), ("visible area", visible), ("whole raw", full)]
    extents: list[tuple[str, Rect]] = []
    for name, rect in named:
        if rect is not None and rect.valid_in(raw_size) and all(rect != r for _, r in extents):
            extents.append((name, rect))
    return RawFrame(raw_size, frame, orientation, source, visible, tuple(extents))


def preview_extent(frame: RawFrame, preview_size: tuple[int, int]) -> tuple[str, Rect]:
    """The extent (name, rect) an embedded preview of ``preview_size`` (stored orientation) most likely covers.

    The extent whose aspect predicts the preview's height best, the frame first on ties; when none is close,
    the frame itself (the preview is then taken as a slightly stretched picture of it).
    """
    pw, ph = preview_size
    best: tuple[float, str, Rect] | None = None
    for name, rect in frame.extents or (("frame", frame.frame),):
        miss = abs(pw / rect.aspect - ph)
        if best is None or miss < best[0] - 1e-9:
            best = (miss, name, rect)
    if best is None or best[0] > max(_ASPECT_SLACK_PX, _ASPECT_SLACK_FRAC * ph):
        return "frame (assumed)", frame.frame
    return best[1], best[2]


def fit_to_frame(img: Image.Image, extent: Rect, frame: Rect) -> Image.Image:
    """``img`` (a picture of ``extent``, stored orientation) cut to ``frame``: parts outside the frame are dropped,
    parts of the frame the picture lacks repeat its edge pixels (a few pixels at most, for real files)."""
    if extent == frame:
        return img
    sx, sy = img.width / extent.w, img.height / extent.h
    left, top = round((frame.x - extent.x) * sx), round((frame.y - extent.y) * sy)
    right, bottom = left + max(1, round(frame.w * sx)), top + max(1, round(frame.h * sy))
    arr = np.asarray(img)
    inner = arr[max(0, top):max(0, min(bottom, img.height)), max(0, left):max(0, min(right, img.width))]
    if inner.size == 0:  # the extents do not overlap: metadata is inconsistent, keep the whole picture
        return img
    pad = [(max(0, -top), max(0, bottom - img.height)), (max(0, -left), max(0, right - img.width))]
    pad += [(0, 0)] * (arr.ndim - 2)
    return Image.fromarray(np.pad(inner, pad, mode="edge") if any(p != (0, 0) for p in pad) else inner.copy())


# --- reading the metadata ----------------------------------------------------------------------------------------


def read_frame(path: str | Path, raw: Any, orientation: int) -> RawFrame:
    """The frame of an opened ``rawpy`` file (``raw``), with the camera lookup for non-DNG files."""
    path = Path(path)
    s = raw.sizes
    raw_size = (int(s.raw_width), int(s.raw_height))
    visible = Rect(int(s.left_margin), int(s.top_margin), int(s.width), int(s.height))
    inset = Rect(int(s.crop_left_margin), int(s.crop_top_margin), int(s.crop_width), int(s.crop_height))
    make, model, is_dng = camera_id(path)
    dng = is_dng or path.suffix.lower() in DNG_EXTS
    rawspeed = None if dng or not make else rawspeed_crop(make, model, cameras_xml())
    return frame_from_metadata(raw_size, visible, orientation, dng=dng, inset_crop=inset, rawspeed_crop=rawspeed)


def camera_id(path: Path) -> tuple[str, str, bool]:
    """EXIF Make, Model and whether the file is a DNG; ("", "", False) when unknown. CRW (CIFF) has no EXIF."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(14)
            if head[:2] in (b"II", b"MM") and head[6:14] == b"HEAPCCDR":
                make, model = _ciff_make_model(fh, head[:2])
                return make, model, False
            fh.seek(0)
            import exifread

            tags = exifread.process_file(fh, details=False, extract_thumbnail=False)
    except Exception:  # odd files: the frame falls back to LibRaw's own
        return "", "", False
    make = str(tags.get("Image Make", "")).strip()
    model = str(tags.get("Image Model", "")).strip()
    return make, model, "Image DNGVersion" in tags or "Image Tag 0xC612" in tags  # exifread names it by number


def _ciff_make_model(fh: Any, order: bytes) -> tuple[str, str]:
    """Make and model from a Canon CIFF (CRW) file: tag 0x080a, "Make\\0Model\\0", somewhere in the heap tree."""
    e = "<" if order == b"II" else ">"
    fh.seek(0, os.SEEK_END)
    end = fh.tell()
    fh.seek(2)
    (header_len,) = struct.unpack(e + "I", fh.read(4))

    def walk(start: int, stop: int, depth: int) -> tuple[str, str] | None:
        if depth > 4 or stop - start < 4:
            return None
        fh.seek(stop - 4)
        (dir_off,) = struct.unpack(e + "I", fh.read(4))
        fh.seek(start + dir_off)
        (count,) = struct.unpack(e + "H", fh.read(2))
        entries = [struct.unpack(e + "HII", fh.read(10)) for _ in range(min(count, 512))]
        for tag, size, off in entries:
            if tag & 0xC000:  # data stored in the entry itself: not a string or a directory
                continue
            kind = tag & 0x3800
            if (tag & 0x3FFF) == 0x080A and size < 256:
                fh.seek(start + off)
                parts = fh.read(size).split(b"\0")
                if len(parts) >= 2:
                    return parts[0].decode("latin-1").strip(), parts[1].decode("latin-1").strip()
            elif kind in (0x2800, 0x3000) and start + off + size <= stop:
                found = walk(start + off, start + off + size, depth + 1)
                if found:
                    return found
        return None

    return walk(header_len, end, 0) or ("", "")


def cameras_xml() -> Path | None:
    """rawspeed's camera data of the installed darktable ($PIC_RAWSPEED_CAMERAS overrides; "" disables)."""
    env = os.environ.get("PIC_RAWSPEED_CAMERAS")
    if env is not None:
        return Path(env) if env and Path(env).is_file() else None
    return next((Path(p) for p in CAMERAS_XML_CANDIDATES if Path(p).is_file()), None)


def rawspeed_crop(make: str, model: str, xml: Path | None) -> tuple[int, int, int, int] | None:
    """darktable's ``<Crop>`` for the camera, or None (no data, unknown camera, or modes with different crops)."""
    if xml is None:
        return None
    try:
        stat = xml.stat()
        table = _load_crops(str(xml), stat.st_mtime_ns, stat.st_size)
    except (OSError, ET.ParseError):
        return None
    crops = table.get((make.strip().lower(), model.strip().lower()))
    if not crops:
        return None
    distinct = set(crops.values())
    if len(distinct) == 1:
        return distinct.pop()
    return crops.get("")  # several modes (bit depths, compressions) disagree: only the mode-less entry is safe


@functools.lru_cache(maxsize=4)
def _load_crops(path: str, _mtime_ns: int, _size: int) -> dict[tuple[str, str], dict[str, tuple[int, int, int, int]]]:
    """(make, model) -> {mode: crop} for every supported camera of a cameras.xml (a trusted file of darktable's)."""
    table: dict[tuple[str, str], dict[str, tuple[int, int, int, int]]] = {}
    for cam in ET.parse(path).getroot().iter("Camera"):  # darktable's own installed data
        if cam.get("supported", "yes") == "no":
            continue
        crop = cam.find("Crop")
        if crop is None:
            continue
        try:
            values = tuple(int(crop.get(k, "0")) for k in ("x", "y", "width", "height"))
        except ValueError:
            continue
        make = (cam.get("make") or "").strip().lower()
        models = [(cam.get("model") or "").strip().lower()]
        models += [(a.text or "").strip().lower() for a in cam.iter("Alias")]
        for model in models:
            table.setdefault((make, model), {})[cam.get("mode") or ""] = values  # type: ignore[assignment]
    return table
