"""The review page's 100% view: a photo's full-resolution displayed image (EXIF orientation applied) as a JPEG.

Every decode stays within ``decode.MAX_DECODE_BYTES`` (the budget ``pic watch``'s service is sized for):

* a JPEG whose full decode would take more is decoded at the largest DCT reduction (1/2, 1/4, 1/8) that fits, and
  ``FullView.note`` says so (the page shows the note beside the "100%" it is then not);
* a PNG/TIFF/WebP cannot be decoded reduced, so above the budget it is refused with ``TooLarge`` (a message, not a
  traceback; the page shows it);
* a RAW file is shown through its embedded preview, or a half-size demosaic where there is none or it is smaller
  (a full demosaic takes seconds and several times the budget), with a note that says which.

``plan`` reads only headers, so the page can ask what it will get before it asks for the pixels.
"""

from __future__ import annotations

import io
import threading
import warnings
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from pic_plugin.core.errors import DecodeError
from pic_plugin.core.orientation import (
    LIBRAW_FLIP_TO_EXIF,
    displayed_size,
    normalize_orientation,
    read_exif_orientation,
)
from pic_plugin.imaging import decode

#: JPEG DCT reductions tried in order when the full decode is over the budget (1 = full size).
JPEG_DIVISORS = (1, 2, 4, 8)
#: High quality and no chroma subsampling: the view is for judging sharpness, so it must not add its own blur.
JPEG_QUALITY = 92
#: Encoded views kept in memory (a 24 MP view is about 5-10 MB): the last few photos looked at stay instant.
CACHE_BYTES = 96 << 20


class TooLarge(DecodeError):
    """The photo cannot be decoded at 100% within pic's decode memory budget (and cannot be decoded reduced)."""


@dataclass(frozen=True)
class FullView:
    size: tuple[int, int]  # displayed size of the image served, pixels
    full: tuple[int, int]  # displayed size of the original, pixels
    note: str | None = None  # why ``size`` is smaller than ``full`` (None: it is the full resolution)

    @property
    def scale(self) -> float:
        return self.size[0] / self.full[0] if self.full[0] else 1.0

    def to_json(self) -> dict[str, Any]:
        return {"size": list(self.size), "full": list(self.full), "scale": round(self.scale, 4), "note": self.note}


def full_view_cost(mode: str, size: tuple[int, int], orientation: int) -> int:
    """About the peak bytes of a 100% view of a ``mode`` raster of ``size``: the decode (``decode.decode_cost``)
    plus, for a rotated photo, the upright copy that lives beside the raster for a moment."""
    cost = decode.decode_cost(mode, size)
    if normalize_orientation(orientation) != 1:
        cost += size[0] * size[1] * (1 if mode in ("L", "1") else 4)
    return cost


def plan(path: str | Path) -> FullView:
    """What ``render`` will serve for ``path`` (headers only). Raises TooLarge or DecodeError."""
    return _guarded(Path(path), load=False)[1]


def render(path: str | Path) -> tuple[bytes, FullView]:
    """The upright full-resolution JPEG of ``path`` (or the reduced one ``FullView.note`` describes)."""
    img, view = _guarded(Path(path), load=True)
    assert img is not None
    icc = img.info.get("icc_profile") if img.mode in ("RGB", "L") else None
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=JPEG_QUALITY, subsampling=0, icc_profile=icc)
    return buf.getvalue(), view


class FullViewCache:
    """Encoded 100% views by content key, in memory (LRU, ``max_bytes``); one decode at a time, because each may
    take up to the whole decode budget and a browser asks on several connections at once."""

    def __init__(self, max_bytes: int = CACHE_BYTES) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict[str, tuple[bytes, FullView]] = OrderedDict()
        self._guard = threading.Lock()
        self._decoding = threading.Lock()

    def get(self, image: Path, content_key: str) -> tuple[bytes, FullView]:
        hit = self._lookup(content_key)
        if hit is not None:
            return hit
        with self._decoding:
            hit = self._lookup(content_key)  # made by the request this one waited for
            if hit is not None:
                return hit
            data, view = render(image)
        with self._guard:
            if len(data) <= self.max_bytes:
                self._items[content_key] = (data, view)
                while sum(len(d) for d, _ in self._items.values()) > self.max_bytes:
                    self._items.popitem(last=False)
        return data, view

    def _lookup(self, content_key: str) -> tuple[bytes, FullView] | None:
        with self._guard:
            hit = self._items.get(content_key)
            if hit is not None:
                self._items.move_to_end(content_key)
            return hit


# --- internals -------------------------------------------------------------------------------------------------


def _guarded(path: Path, load: bool) -> tuple[Image.Image | None, FullView]:
    fmt = decode.image_format(path)
    if fmt is None:
        raise DecodeError(f"unsupported file type {path.suffix!r}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            if fmt == "raw":
                return _raw(path, load)
            return _pillow(path, fmt, load)
    except DecodeError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise DecodeError(f"refused: image is larger than {decode.MAX_PIXELS // 1_000_000} megapixels") from exc
    except MemoryError as exc:
        raise TooLarge("not enough memory to show this photo at 100%") from exc
    except OSError as exc:
        raise DecodeError(f"cannot read file: {exc.strerror or exc}") from exc
    except Exception as exc:  # Pillow and LibRaw raise many types for corrupt data
        raise DecodeError(decode.describe_decode_failure(exc)) from exc


def _mib(n: int) -> str:
    mib = n / (1 << 20)
    return f"{mib:.0f} MiB" if mib >= 10 else f"{mib:.1f} MiB"


def _too_large(mode: str, size: tuple[int, int], cost: int) -> TooLarge:
    return TooLarge(f"too large for a 100% view: decoding this {size[0]}x{size[1]} {mode} image would take "
                    f"{_mib(cost)}, more than the {_mib(decode.MAX_DECODE_BYTES)} pic allows for one photo")


def _divisor(img: Image.Image, fmt: str, orientation: int) -> tuple[int, str | None]:
    """The smallest reduction whose decode fits the budget (only JPEGs can be decoded reduced), and why."""
    w, h = img.size
    full_cost = full_view_cost(img.mode, (w, h), orientation)
    if full_cost <= decode.MAX_DECODE_BYTES:
        return 1, None
    if fmt != "jpeg":
        raise _too_large(img.mode, (w, h), full_cost)
    for d in JPEG_DIVISORS[1:]:
        reduced = ((w + d - 1) // d, (h + d - 1) // d)
        if full_view_cost(img.mode, reduced, orientation) <= decode.MAX_DECODE_BYTES:
            shown = displayed_size(reduced, orientation)
            return d, (f"shown at 1/{d} ({shown[0]}x{shown[1]}): the full size would take {_mib(full_cost)} to "
                       f"decode, more than the {_mib(decode.MAX_DECODE_BYTES)} pic allows for one photo")
    raise _too_large(img.mode, (w, h), full_cost)


def _load(img: Image.Image, divisor: int, orientation: int) -> Image.Image:
    if divisor > 1:
        # Request floor(size / d): Pillow then picks exactly the 1/d DCT scale (ceil would round down to 1/(d/2)).
        img.draft(img.mode if img.mode in ("RGB", "L") else "RGB", (max(1, img.size[0] // divisor),
                                                                   max(1, img.size[1] // divisor)))
    img.load()
    icc = img.info.get("icc_profile")
    if img.mode not in ("RGB", "L"):
        img = decode.to_rgb(img)  # palette, alpha, CMYK, 16-bit: what a browser shows the same everywhere
        icc = None  # a CMYK or other profile does not describe the converted pixels
    upright = decode.apply_orientation(img, orientation)
    if icc:
        upright.info["icc_profile"] = icc
    return upright


def _pillow(path: Path, fmt: str, load: bool) -> tuple[Image.Image | None, FullView]:
    with open(path, "rb") as fh:  # closed once loaded: the pixels stay in memory, the file is not held
        img = Image.open(fh)
        stored = img.size
        decode.check_pixels(stored)
        if fmt != "jpeg":  # before getexif(): for a PNG without an early eXIf chunk that decodes the whole image
            cost = full_view_cost(img.mode, stored, 1)
            if cost > decode.MAX_DECODE_BYTES:
                raise _too_large(img.mode, stored, cost)
        orientation = read_exif_orientation(path)
        if orientation == 1 and fmt in ("png", "webp", "tiff"):
            orientation = normalize_orientation(img.getexif().get(0x0112, 1))
        if getattr(img, "n_frames", 1) > 1:
            img.seek(0)
        divisor, note = _divisor(img, fmt, orientation)
        served = ((stored[0] + divisor - 1) // divisor, (stored[1] + divisor - 1) // divisor)
        view = FullView(displayed_size(served, orientation), displayed_size(stored, orientation), note)
        if not load:
            return None, view
        out = _load(img, divisor, orientation)
    return out, FullView((out.size[0], out.size[1]), view.full, view.note)


#: About the bytes per sensor pixel of LibRaw's half-size demosaic (its raw buffer, its image, our RGB copy).
RAW_HALF_BYTES_PER_PIXEL = 6


def _raw(path: Path, load: bool) -> tuple[Image.Image | None, FullView]:
    """The embedded preview; where there is none, or it is under half the sensor's size, a half-size demosaic (the
    most detail within the budget: a full demosaic takes seconds and several times the budget)."""
    import rawpy  # lazy: LibRaw is only loaded when a RAW file is met

    try:
        raw = rawpy.imread(str(path))
    except rawpy.LibRawError as exc:
        raise DecodeError(f"RAW file not supported or corrupt ({decode.libraw_message(exc)})") from exc
    with raw:
        orientation = LIBRAW_FLIP_TO_EXIF.get(int(raw.sizes.flip), 1)
        stored = (int(raw.sizes.width), int(raw.sizes.height))
        decode.check_pixels(stored)
        full = displayed_size(stored, orientation)
        try:
            thumb = raw.extract_thumb()
        except (rawpy.LibRawNoThumbnailError, rawpy.LibRawUnsupportedThumbnailError, rawpy.LibRawError):
            thumb = None
        if thumb is not None and thumb.format not in (rawpy.ThumbFormat.JPEG, rawpy.ThumbFormat.BITMAP):
            thumb = None
        preview: Image.Image | None = None
        if thumb is not None:
            preview = (Image.open(io.BytesIO(thumb.data)) if thumb.format == rawpy.ThumbFormat.JPEG
                       else Image.fromarray(thumb.data))
        half = ((stored[0] + 1) // 2, (stored[1] + 1) // 2)
        half_cost = stored[0] * stored[1] * RAW_HALF_BYTES_PER_PIXEL
        if (preview is None or max(preview.size) < max(half)) and half_cost <= decode.MAX_DECODE_BYTES:
            served = displayed_size(half, orientation)
            note = f"RAW: a half-size demosaic ({served[0]}x{served[1]}) of the sensor's {full[0]}x{full[1]}"
            if not load:
                return None, FullView(served, full, note)
            try:  # LibRaw applies the flip itself here
                rgb = raw.postprocess(half_size=True, use_camera_wb=True, output_bps=8)
            except rawpy.LibRawError as exc:
                if preview is None:
                    raise DecodeError(f"RAW file has no preview and LibRaw cannot decode it "
                                      f"({decode.libraw_message(exc)})") from exc
            else:
                out = Image.fromarray(rgb)
                return out, FullView((out.size[0], out.size[1]), full, note)
    if preview is None:
        if half_cost > decode.MAX_DECODE_BYTES:
            raise _too_large("RAW", stored, half_cost)
        raise DecodeError("this RAW file has no embedded preview to show at 100%: open it in darktable")
    divisor, note = _divisor(preview, "jpeg", orientation) if thumb.format == rawpy.ThumbFormat.JPEG else (1, None)
    served = displayed_size(((preview.size[0] + divisor - 1) // divisor, (preview.size[1] + divisor - 1) // divisor),
                            orientation)
    if note is None and served[0] < full[0]:
        note = f"RAW: the camera's embedded preview ({served[0]}x{served[1]}), not the sensor's {full[0]}x{full[1]}"
    if not load:
        return None, FullView(served, full, note)
    out = _load(preview, divisor, orientation)
    return out, FullView((out.size[0], out.size[1]), full, note)
