"""Reading the crop darktable renders from a sidecar (FORMATS.md section 1).

Reading (``read_crop``) replays the history the way darktable does (1.5): entries with ``num < history_end``, the
last one per (operation, multi_priority) wins and its ``enabled`` decides. The crop comes from the ``crop`` module
(v1/v2/v3) and/or the deprecated ``clipping`` module (v2-v5: angle, keystone, mirror flags); both sit after
``flip``, so their frame is darktable's displayed orientation, which is mapped to pic's displayed frame (EXIF
orientation applied) through the effective ``flip`` entry (1.6.3). The result is ``approximate`` when geometry
modules before the crop (lens, ashift, enlargecanvas, a rotating/keystoning clipping, ...) move content (pitfall 17)
or when clipping rotates (the crop is then reported as its axis-aligned bound in the unrotated frame).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pic_plugin.core.errors import SidecarError
from pic_plugin.core.geometry import FULL_FRAME, Box
from pic_plugin.editors.darktable.frames import (
    clipping_content,
    frame_orientation,
    frame_size,
    frame_to_displayed,
)
from pic_plugin.editors.darktable.history import DarktableHistory, HistoryEntry, read_history
from pic_plugin.editors.darktable.params import (
    GEOMETRY_BEFORE_CROP,
    READABLE_XMP_VERSIONS,
    ClippingParams,
    CropParams,
    is_full,
)
from pic_plugin.editors.xmp import XmpDocument

# --- reading the crop ------------------------------------------------------------------------------------------


@dataclass
class DarktableCrop:
    """The effective crop of a darktable history, in pic's displayed frame (content region)."""

    crop: Box
    frame_crop: Box  # as stored in the module's params (darktable's frame)
    module: str  # "crop", "clipping" or "crop+clipping"
    num: int
    version: int
    enabled: bool
    params_text: str
    params: bytes
    ratio: tuple[int, int]  # (ratio_d, ratio_n) as stored
    approximate: bool = False
    notes: list[str] = field(default_factory=list)
    angle: float = 0.0
    mirror: tuple[bool, bool] = (False, False)
    keystone: bool = False
    flip_bits: int | None = None
    frame_orientation: int = 1

    @property
    def is_full_frame(self) -> bool:
        return is_full(self.crop)

    def detail(self) -> dict[str, Any]:
        return {
            "module": self.module,
            "version": self.version,
            "num": self.num,
            "enabled": self.enabled,
            "ratio": list(self.ratio),
            "params": self.params_text,
            "frame_crop": self.frame_crop.as_list(),
            "angle": self.angle,
            "mirror": list(self.mirror),
            "keystone": self.keystone,
            "flip": self.flip_bits,
            "frame_orientation": self.frame_orientation,
            "notes": list(self.notes),
        }


def approximations(hist: DarktableHistory, effective: dict[tuple[str, int], HistoryEntry]) -> list[str]:
    notes = []
    for (op, _), e in effective.items():
        if e.enabled and op in GEOMETRY_BEFORE_CROP and hist.precedes_crop(op):
            notes.append(f"{op} (num {e.num}) changes the geometry before the crop; the crop is approximate")
    return notes


def read_crop(doc: XmpDocument, orientation: int, size: tuple[int, int] | None = None) -> DarktableCrop | None:
    """The crop darktable would apply (or the disabled crop entry it would skip), None if there is none.

    ``orientation`` is the image's EXIF orientation, ``size`` pic's displayed size in pixels (only needed for a
    rotating clipping; without it a 3:2 frame is assumed and said so).
    """
    hist = read_history(doc)
    if hist is None:
        return None
    if hist.xmp_version not in READABLE_XMP_VERSIONS:
        return None  # darktable itself rejects the history (xmp_version 1 parallel arrays are not read either)
    effective = hist.effective()
    frame_o, flip_bits = frame_orientation(effective.get(("flip", 0)), orientation)
    fsize = frame_size(size, frame_o, orientation)
    crop_e = effective.get(("crop", 0))
    clip_e = effective.get(("clipping", 0))
    crop_p = clip_p = None
    notes = approximations(hist, effective)
    if crop_e is not None and crop_e.params is not None and crop_e.modversion is not None:
        try:
            crop_p = CropParams.decode(crop_e.modversion, crop_e.params)
        except SidecarError as exc:
            notes.append(f"crop entry num {crop_e.num} ignored: {exc}")
    if clip_e is not None and clip_e.params is not None and clip_e.modversion is not None:
        try:
            clip_p = ClippingParams.decode(clip_e.modversion, clip_e.params)
        except SidecarError as exc:
            notes.append(f"clipping entry num {clip_e.num} ignored: {exc}")
    clip_on = clip_p is not None and clip_e is not None and clip_e.enabled
    crop_on = crop_p is not None and crop_e is not None and crop_e.enabled
    if crop_p is None and clip_p is None:
        return None

    geometry = bool(notes)
    if clip_on and clip_p is not None and (crop_on or crop_p is None or not clip_p.is_identity):
        assert clip_e is not None
        sub = crop_p.box if crop_on and crop_p is not None else FULL_FRAME
        region, exact = clipping_content(clip_p, sub, fsize)
        if not exact:
            why = "rotates" if clip_p.angle else "corrects keystone"
            notes.append(f"clipping (num {clip_e.num}) {why}: the crop is its axis-aligned bound in the unrotated frame")
            if fsize is None and clip_p.angle:
                notes.append("image size unknown: a 3:2 frame was assumed for the rotation")
        main = crop_e if crop_on and crop_e is not None else clip_e
        main_p = crop_p if crop_on and crop_p is not None else clip_p
        result = DarktableCrop(
            crop=frame_to_displayed(region, frame_o, orientation),
            frame_crop=main_p.box,
            module="crop+clipping" if crop_on else "clipping",
            num=main.num or 0,
            version=main.modversion or 0,
            enabled=True,
            params_text=main.params_text or "",
            params=main.params or b"",
            ratio=(main_p.ratio_d, main_p.ratio_n),
            approximate=not exact or geometry,
            notes=notes,
            angle=clip_p.angle,
            mirror=clip_p.mirror,
            keystone=clip_p.keystone,
            flip_bits=flip_bits,
            frame_orientation=frame_o,
        )
        return result

    if crop_p is not None and crop_e is not None:
        entry, params, module = crop_e, crop_p, "crop"
        region = crop_p.box
    else:
        assert clip_p is not None and clip_e is not None
        entry, params, module = clip_e, clip_p, "clipping"
        region, _ = clipping_content(clip_p, FULL_FRAME, fsize)
    return DarktableCrop(
        crop=frame_to_displayed(region.clamped(), frame_o, orientation),
        frame_crop=params.box,
        module=module,
        num=entry.num or 0,
        version=entry.modversion or 0,
        enabled=entry.enabled,
        params_text=entry.params_text or "",
        params=entry.params or b"",
        ratio=(params.ratio_d, params.ratio_n),
        approximate=geometry and entry.enabled,
        notes=notes,
        angle=getattr(params, "angle", 0.0),
        mirror=getattr(params, "mirror", (False, False)),
        keystone=getattr(params, "keystone", False),
        flip_bits=flip_bits,
        frame_orientation=frame_o,
    )


