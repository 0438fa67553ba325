"""Decoding photos into a small upright RGB array for analysis.

JPEGs decode at reduced size (libjpeg DCT scaling through Pillow's ``draft``), which is most of pic's speed.
PNG/TIFF decode fully. Camera RAW files use the embedded JPEG preview through rawpy (LibRaw) and fall back
to a half-size demosaic when there is no usable preview; either is cut to the frame the editors render
(``raw_frame.py``), whose size is ``size``. Every result is in the *displayed* frame: the EXIF orientation (or
LibRaw's flip for RAW) is applied, and ``size`` is the full displayed size in pixels.
"""

from __future__ import annotations

import io
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile

from pic_plugin.core.errors import DecodeError
from pic_plugin.core.orientation import (
    LIBRAW_FLIP_TO_EXIF,
    displayed_size,
    normalize_orientation,
    read_exif_orientation,
)
from pic_plugin.imaging.raw_frame import RawFrame, camera_id, fit_to_frame, preview_extent, read_frame

JPEG_EXTS = frozenset({".jpg", ".jpeg", ".jpe", ".jfif"})
PNG_EXTS = frozenset({".png"})
TIFF_EXTS = frozenset({".tif", ".tiff"})
WEBP_EXTS = frozenset({".webp"})
RAW_EXTS = frozenset(
    {
        ".cr2", ".cr3", ".crw", ".nef", ".nrw", ".arw", ".srf", ".sr2", ".raf", ".orf", ".rw2", ".pef",
        ".dng", ".srw", ".kdc", ".dcr", ".mrw", ".3fr", ".iiq", ".erf", ".mos", ".x3f", ".gpr", ".rwl",
    }
)
IMAGE_EXTS = JPEG_EXTS | PNG_EXTS | TIFF_EXTS | WEBP_EXTS | RAW_EXTS

#: Images above this many pixels are refused (decompression bombs). 250 MP covers medium-format cameras.
MAX_PIXELS = 250_000_000
#: Memory a decode may take (full-size raster plus conversions) before it is refused: a PNG of zeros compresses
#: 1000:1, so a file under a megabyte can decode to gigabytes under MAX_PIXELS; ``pic watch``'s service is capped at
#: 1 GiB with the model loaded. 512 MiB still decodes a 130 MP RGB PNG/TIFF (JPEGs decode reduced, RAWs via preview).
MAX_DECODE_BYTES = 512 << 20
#: Long side of the analysis image. Candidates are normalized, so this only sets the detail features see.
ANALYSIS_LONG_SIDE = 512
#: Embedded RAW previews smaller than this (long side) are thumbnails, not previews.
MIN_PREVIEW_LONG_SIDE = 320

ImageFile.LOAD_TRUNCATED_IMAGES = False
Image.MAX_IMAGE_PIXELS = MAX_PIXELS

# Pillow transpose operations that turn a stored raster into the displayed frame, by EXIF orientation.
_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


@dataclass
class DecodedImage:
    """An upright analysis-size image and what is known about the full-size original."""

    path: Path
    pixels: np.ndarray  # H x W x 3 uint8, displayed frame, long side <= long_side * oversize (see decode)
    size: tuple[int, int]  # full displayed size (W, H) in pixels
    orientation: int  # EXIF orientation that was applied (1-8)
    format: str  # jpeg | png | tiff | webp | raw
    method: str  # how the pixels were obtained, e.g. "jpeg draft 1/8", "raw preview", "raw half-size"

    @property
    def analysis_size(self) -> tuple[int, int]:
        return self.pixels.shape[1], self.pixels.shape[0]


def image_format(path: Path) -> str | None:
    ext = path.suffix.lower()
    if ext in JPEG_EXTS:
        return "jpeg"
    if ext in PNG_EXTS:
        return "png"
    if ext in TIFF_EXTS:
        return "tiff"
    if ext in WEBP_EXTS:
        return "webp"
    if ext in RAW_EXTS:
        return "raw"
    return None


def is_image_path(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTS


def apply_orientation(img: Image.Image, orientation: int) -> Image.Image:
    op = _TRANSPOSE.get(normalize_orientation(orientation))
    return img.transpose(op) if op is not None else img


def decode(path: str | Path, long_side: int = ANALYSIS_LONG_SIDE, oversize: float = 1.0) -> DecodedImage:
    """Decode ``path`` for analysis. Raises DecodeError with a message a user can act on.

    The result's long side is at most ``long_side``, or up to ``oversize`` times that when the reduced decode
    already gives about the right size: the analysis resizes again anyway (CNN input, face detector), and a
    24 MP JPEG decoded at 1/8 (750 px) would otherwise be resized twice (``library/analyze.py`` passes 1.5).
    """
    path = Path(path)
    fmt = image_format(path)
    if fmt is None:
        raise DecodeError(f"unsupported file type {path.suffix!r}")
    try:
        if os.path.getsize(path) == 0:
            raise DecodeError("empty file (0 bytes)")
    except OSError as exc:
        raise DecodeError(f"cannot read file: {exc.strerror or exc}") from exc
    try:
        with warnings.catch_warnings():
            # Pillow warns (rather than fails) between MAX_IMAGE_PIXELS and twice that: make it an error.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            if fmt == "raw":
                return _decode_raw(path, long_side, oversize)
            return _decode_pillow(path, fmt, long_side, oversize)
    except DecodeError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise DecodeError(f"refused: image is larger than {MAX_PIXELS // 1_000_000} megapixels ({exc})") from exc
    except MemoryError as exc:
        raise DecodeError("image too large to decode") from exc
    except Exception as exc:  # Pillow and LibRaw raise many types for corrupt data
        raise DecodeError(describe_decode_failure(exc)) from exc


def describe_decode_failure(exc: Exception) -> str:
    """A photographer's words for why Pillow could not open a file (shared with ``fullview``)."""
    msg = str(exc) or type(exc).__name__
    if "cannot identify image file" in msg:
        return "not a recognizable image (wrong extension or corrupt header)"
    if "truncated" in msg.lower():
        return "truncated or corrupt image data"
    return f"corrupt or unreadable image: {msg}"


def check_pixels(size: tuple[int, int]) -> None:
    """Refuse an image with no pixels or more than ``MAX_PIXELS`` (a decompression bomb) before decoding it."""
    if size[0] <= 0 or size[1] <= 0:
        raise DecodeError("image has no pixels")
    if size[0] * size[1] > MAX_PIXELS:
        raise DecodeError(
            f"refused: {size[0]}x{size[1]} is larger than {MAX_PIXELS // 1_000_000} megapixels (decompression bomb?)"
        )


#: Bytes per pixel of Pillow's raster by mode (RGB and the other 3-band modes are stored 4 bytes a pixel).
_MODE_BYTES = {"1": 1, "L": 1, "P": 1, "LA": 4, "PA": 4, "La": 4, "I;16": 2, "I;16L": 2, "I;16B": 2, "I;16N": 2,
               "I": 4, "F": 4}


def decode_cost(mode: str, size: tuple[int, int]) -> int:
    """Bytes the decode of an image of ``mode`` and ``size`` needs at its peak (see ``_decode_pillow``)."""
    px = size[0] * size[1]
    raster = _MODE_BYTES.get(mode, 4)
    if mode in ("RGB", "L", "1"):
        return px * raster  # RGB needs no conversion; L and 1 are reduced before becoming RGB
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        return px * (raster + 4 + 4)  # a float32 copy and the percentile's working copy
    return px * (raster + 4)  # converted to RGB at full size (palette, alpha, CMYK, ...)


def _check_budget(mode: str, size: tuple[int, int]) -> None:
    cost = decode_cost(mode, size)
    if cost > MAX_DECODE_BYTES:
        raise DecodeError(f"refused: decoding this {size[0]}x{size[1]} {mode} image would take {cost >> 20} MiB, "
                          f"more than the {MAX_DECODE_BYTES >> 20} MiB pic allows for one photo")


def to_rgb(img: Image.Image) -> Image.Image:
    """8-bit RGB from any Pillow mode (16-bit and float TIFFs are scaled, not clipped)."""
    if img.mode == "RGB":
        return img
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(img, dtype=np.float32)
        hi = float(np.percentile(arr, 99.9)) if arr.size else 1.0
        arr = np.clip(arr / max(hi, 1e-6) * 255.0, 0, 255).astype(np.uint8)
        return Image.fromarray(arr, "L").convert("RGB")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


def _resize_long_side(img: Image.Image, long_side: int, oversize: float = 1.0) -> Image.Image:
    w, h = img.size
    scale = long_side / max(w, h)
    if scale >= 1 / oversize:
        return img
    new = (max(1, round(w * scale)), max(1, round(h * scale)))
    return img.resize(new, Image.Resampling.BILINEAR, reducing_gap=2.0)


def _decode_pillow(path: Path, fmt: str, long_side: int, oversize: float) -> DecodedImage:
    with open(path, "rb") as fh:
        img = Image.open(fh)
        stored = img.size
        check_pixels(stored)
        if fmt != "jpeg":  # before getexif(): for a PNG without an early eXIf chunk it decodes the whole image
            _check_budget(img.mode, stored)
        orientation = read_exif_orientation(path)
        if orientation == 1 and fmt in ("png", "webp", "tiff"):
            # exifread misses some containers' EXIF (PNG eXIf, WebP); Pillow finds it.
            orientation = normalize_orientation(img.getexif().get(0x0112, 1))
        method = fmt
        if fmt == "jpeg":
            requested = (max(1, stored[0] * long_side // max(stored)), max(1, stored[1] * long_side // max(stored)))
            img.draft("RGB", requested)
            scale = stored[0] / img.size[0] if img.size[0] else 1
            method = f"jpeg draft 1/{round(scale)}"
        if getattr(img, "n_frames", 1) > 1:
            img.seek(0)
        _check_budget(img.mode, img.size)  # after the JPEG draft: the size that will really be decoded
        img.load()
        if img.mode in ("L", "1"):  # reduce first: a 1-byte raster stays small, its RGB copy would be 4x
            rgb = to_rgb(_resize_long_side(img.convert("L"), long_side, oversize))
        else:
            rgb = to_rgb(img)
    small = apply_orientation(_resize_long_side(rgb, long_side, oversize), orientation)
    return DecodedImage(
        path=path,
        pixels=np.asarray(small, dtype=np.uint8).copy(),
        size=displayed_size(stored, orientation),
        orientation=orientation,
        format=fmt,
        method=method,
    )


def _decode_raw(path: Path, long_side: int, oversize: float) -> DecodedImage:
    import rawpy  # lazy: LibRaw is only loaded when a RAW file is met

    try:
        raw = rawpy.imread(str(path))
    except rawpy.LibRawError as exc:
        raise DecodeError(_raw_failure(path, f"RAW file not supported or corrupt ({libraw_message(exc)})")) from exc
    with raw:
        orientation = LIBRAW_FLIP_TO_EXIF.get(int(raw.sizes.flip), 1)
        # The editors' frame (DNG DefaultCrop, darktable's camera crop, ...), not the preview's: see raw_frame.py.
        frame = read_frame(path, raw, orientation)
        check_pixels(frame.stored_size)
        preview, preview_size = _raw_preview(raw)
        if preview is not None and max(preview_size) >= min(MIN_PREVIEW_LONG_SIDE, max(frame.stored_size)):
            extent_name, extent = preview_extent(frame, preview_size)
            stored = fit_to_frame(to_rgb(preview), extent, frame.frame)
            method = "raw preview" if extent_name == "frame" else f"raw preview ({extent_name} cut to the frame)"
        else:
            # No usable preview: demosaic at half size, unrotated (user_flip=0) so that it can be cut to the frame.
            try:
                rgb = raw.postprocess(half_size=True, use_camera_wb=True, output_bps=8, user_flip=0)
            except rawpy.LibRawError as exc:
                reason = f"RAW file has no preview and LibRaw cannot decode it ({libraw_message(exc)})"
                raise DecodeError(_raw_failure(path, reason)) from exc
            stored = fit_to_frame(Image.fromarray(rgb), frame.visible, frame.frame)
            method = "raw half-size"
        small = apply_orientation(_resize_long_side(stored, long_side, oversize), orientation)
    return DecodedImage(
        path=path,
        pixels=np.asarray(small, dtype=np.uint8).copy(),
        size=frame.size,
        orientation=orientation,
        format="raw",
        method=method,
    )


def _raw_failure(path: Path, reason: str) -> str:
    """``reason``, with what to do for GoPro's GPR (a DNG whose raw data is VC-5 compressed, without a preview)."""
    if path.suffix.lower() == ".gpr" or "GoPro" in camera_id(path)[0]:
        return (f"GoPro GPR: its raw data is VC-5 compressed, which the LibRaw in pic (rawpy {_rawpy_version()}) "
                "cannot decode, and the file has no embedded preview; darktable opens it, or convert it to DNG "
                f"first (GoPro's gpr_tools -i FILE.GPR -o FILE.DNG). LibRaw: {reason}")
    return reason


def _rawpy_version() -> str:
    import rawpy

    return str(getattr(rawpy, "__version__", "?"))


def raw_orientation(path: str | Path) -> int:
    """EXIF orientation of a RAW file as LibRaw applies it (without decoding pixels); 1 if unknown."""
    import rawpy

    try:
        with rawpy.imread(str(path)) as raw:
            return LIBRAW_FLIP_TO_EXIF.get(int(raw.sizes.flip), 1)
    except Exception:  # unreadable RAW: decode() reports the real error
        return 1


def raw_frame(path: str | Path) -> RawFrame | None:
    """The editors' frame of a RAW file from its metadata (no pixels decoded); None if LibRaw cannot read it."""
    import rawpy

    try:
        with rawpy.imread(str(path)) as raw:
            return read_frame(path, raw, LIBRAW_FLIP_TO_EXIF.get(int(raw.sizes.flip), 1))
    except Exception:  # unreadable RAW: decode() reports the real error
        return None


def libraw_message(exc: Exception) -> str:
    """LibRaw's error text (its messages arrive as bytes)."""
    msg = exc.args[0] if exc.args else type(exc).__name__
    return msg.decode("utf-8", "replace") if isinstance(msg, bytes) else str(msg)


def _raw_preview(raw: object) -> tuple[Image.Image | None, tuple[int, int]]:
    """The embedded preview (reduced for analysis) and its size as stored, which tells the extent it covers."""
    import rawpy

    try:
        thumb = raw.extract_thumb()  # type: ignore[attr-defined]
    except (rawpy.LibRawNoThumbnailError, rawpy.LibRawUnsupportedThumbnailError, rawpy.LibRawError):
        return None, (0, 0)
    try:
        if thumb.format == rawpy.ThumbFormat.JPEG:
            img = Image.open(io.BytesIO(thumb.data))
            size = img.size
            img.draft("RGB", (ANALYSIS_LONG_SIDE, ANALYSIS_LONG_SIDE))
            img.load()
            return img, size
        if thumb.format == rawpy.ThumbFormat.BITMAP:
            img = Image.fromarray(thumb.data)
            return img, img.size
    except Exception:  # a broken preview is not fatal: fall back to demosaicing
        return None, (0, 0)
    return None, (0, 0)


def open_full(path: str | Path) -> Image.Image:
    """The full-resolution upright image for exports (RAW: a full demosaic). Raises DecodeError."""
    path = Path(path)
    fmt = image_format(path)
    if fmt is None:
        raise DecodeError(f"unsupported file type {path.suffix!r}")
    try:
        if fmt == "raw":
            import rawpy

            with rawpy.imread(str(path)) as raw:
                orientation = LIBRAW_FLIP_TO_EXIF.get(int(raw.sizes.flip), 1)
                frame = read_frame(path, raw, orientation)
                rgb = raw.postprocess(use_camera_wb=True, output_bps=8, user_flip=0)
            # The same frame as the analysis and the editors, so exported crops match the sidecars'.
            return apply_orientation(fit_to_frame(Image.fromarray(rgb), frame.visible, frame.frame), orientation)
        img = Image.open(path)
        check_pixels(img.size)
        orientation = read_exif_orientation(path)
        img.load()
        return apply_orientation(to_rgb(img) if img.mode not in ("RGB", "L", "CMYK") else img, orientation)
    except DecodeError:
        raise
    except Exception as exc:
        raise DecodeError(describe_decode_failure(exc)) from exc
