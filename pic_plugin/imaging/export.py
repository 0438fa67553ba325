"""Cropped copies for sharing (``pic batch --export DIR``). Originals are only ever read.

The copy is upright (orientation normalized to 1), cropped at full resolution to the exact pixel ratio asked
for, and keeps what a photographer expects to survive: JPEG quality (the source's own quantization tables and
chroma subsampling), the ICC profile and the EXIF data (orientation reset, stale thumbnail dropped). RAW files
export as high-quality JPEG from a full demosaic.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image, JpegImagePlugin

from pic_plugin.core.atomic import atomic_path
from pic_plugin.core.errors import PicError
from pic_plugin.core.geometry import Box, Ratio, exact_pixel_crop
from pic_plugin.core.orientation import read_exif_orientation
from pic_plugin.imaging.decode import apply_orientation, image_format, open_full

RAW_EXPORT_QUALITY = 95


def export_path(image: Path, root: Path | None, export_dir: Path) -> Path:
    """Where the copy of ``image`` goes: the same relative path under ``export_dir`` (RAW: ``name.ext.jpg``)."""
    try:
        rel = image.resolve().relative_to(root.resolve()) if root is not None and root.is_dir() else Path(image.name)
    except ValueError:
        rel = Path(image.name)
    if image_format(image) == "raw":
        rel = rel.with_name(rel.name + ".jpg")
    return export_dir / rel


def export_crop(image: Path, crop: Box, ratio: Ratio, out: Path) -> Path:
    """Write the cropped copy of ``image`` to ``out`` atomically. Returns ``out``. Raises PicError."""
    if out.exists() and out.resolve() == image.resolve():
        raise PicError("export would overwrite the original")
    fmt = image_format(image)
    if fmt == "raw":
        upright = open_full(image)
        save_kwargs: dict[str, object] = {"format": "JPEG", "quality": RAW_EXPORT_QUALITY, "subsampling": 0}
    else:
        with Image.open(image) as src:
            src.load()
            orientation = read_exif_orientation(image)
            save_kwargs = _save_options(src)
            upright = apply_orientation(src.copy(), orientation)
    x0, y0, x1, y1 = exact_pixel_crop(crop, upright.size, ratio)
    cropped = upright.crop((x0, y0, x1, y1))
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        with atomic_path(out) as tmp:
            cropped.save(tmp, **save_kwargs)
    except Exception as exc:
        raise PicError(f"cannot write export {out}: {exc}") from exc
    return out


def _save_options(src: Image.Image) -> dict[str, object]:
    opts: dict[str, object] = {"format": src.format or "PNG"}
    icc = src.info.get("icc_profile")
    if icc:
        opts["icc_profile"] = icc
    exif = src.getexif()
    if exif:
        exif[0x0112] = 1  # the pixels are upright now
        for ifd in (0x8769, 0x8825):  # load the Exif and GPS sub-IFDs so that they are written back
            exif.get_ifd(ifd)
        opts["exif"] = exif.tobytes()
    if src.format == "JPEG" and isinstance(src, JpegImagePlugin.JpegImageFile):
        qtables = getattr(src, "quantization", None)
        if qtables:
            opts["qtables"] = qtables
            sampling = JpegImagePlugin.get_sampling(src)
            if sampling != -1:
                opts["subsampling"] = sampling
        else:
            opts["quality"] = 92
        if src.mode not in ("RGB", "L", "CMYK"):
            opts["format"] = "JPEG"
    elif src.format == "TIFF":
        opts["compression"] = src.info.get("compression", "tiff_lzw")
    return opts
