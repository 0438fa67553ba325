"""darktable sidecars (``IMG.ext.xmp``, duplicates ``IMG_NN.ext.xmp``): read the effective crop, append pic's crop.

Layouts and rules are FORMATS.md section 1 (format) and 2.2 (the append recipe); section numbers below refer to it.

Reading (``read_crop``) replays the history the way darktable does (1.5): entries with ``num < history_end``, the
last one per (operation, multi_priority) wins and its ``enabled`` decides. The crop comes from the ``crop`` module
(v1/v2/v3) and/or the deprecated ``clipping`` module (v2-v5: angle, keystone, mirror flags); both sit after
``flip``, so their frame is darktable's displayed orientation, which is mapped to pic's displayed frame (EXIF
orientation applied) through the effective ``flip`` entry (1.6.3). The result is ``approximate`` when geometry
modules before the crop (lens, ashift, enlargecanvas, a rotating/keystoning clipping, ...) move content (pitfall 17)
or when clipping rotates (the crop is then reported as its axis-aligned bound in the unrotated frame).

Writing (``write_crop``) follows 2.2: redo entries beyond ``history_end`` (and their masks) are dropped, one ``crop``
entry is appended with ``num = history_end`` (``enabled="1"`` to apply, ``"0"`` to only suggest), modversion 1 /
24 bytes unless the file already has a crop entry (then its version and size are copied), ratio 0/0 (freehand),
the three ``history_*_hash`` attributes are deleted, timestamps / xmp_version / auto_presets_applied are left alone
and a custom ``iop_order_list`` gets ``crop,0`` if it lacks it. A crop the user made is never replaced unless
``force=True``; pic's own previous entry (identified by ``OwnEntry``, which the caller keeps in pic's namespace) is
replaced.

Freehand 0/0 on purpose: darktable 4.2 ignores the ratio when rendering (checked with darktable-cli), while 5.2's
pipeline enforces ``ratio_d/ratio_n`` with a sign that is relative to the image orientation, and the GUI re-shapes
the box to the ratio whenever it draws. Exact ratios are kept instead by writing pixel-exact edges (``size``).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import math
import os
import re
import struct
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from pic_plugin.core.errors import SidecarError
from pic_plugin.core.geometry import FULL_FRAME, Box, is_full_frame
from pic_plugin.core.orientation import displayed_to_stored, normalize_orientation, stored_to_displayed
from pic_plugin.editors.xmp import NS_RDF, Struct, XmpDocument, new_item_like

NS_DT = "http://darktable.sf.net/"
#: xmp_version values darktable's reader accepts (1.3) and the ones pic appends to (2.2 step 2).
READABLE_XMP_VERSIONS = frozenset({2, 3, 4, 5})
WRITABLE_XMP_VERSIONS = frozenset({4, 5})
NEW_XMP_VERSION = 5
COMPRESS_THRESHOLD = 100  # bytes; darktable's default "only large entries" compresses len > 100
MAX_PARAMS_BYTES = 1 << 20  # a decompressed params blob larger than this is not darktable's
FULL_FRAME_EPS = 1e-5

_HEX_RE = re.compile(r"^(?:[0-9a-f]{2})*$")
_HASH_KEYS = ("history_basic_hash", "history_auto_hash", "history_current_hash")
# Geometry modules placed before crop in every built-in pipe order (1.6.3): they move or resize its frame.
_GEOMETRY_BEFORE_CROP = ("lens", "ashift", "enlargecanvas", "rotatepixels", "scalepixels")


# --- params text encoding (1.4) --------------------------------------------------------------------------------


def encode_params(blob: bytes, compress: Literal["never", "always", "only large entries"] = "only large entries") -> str:
    """darktable's text form of a params blob: lowercase hex, or ``gzNN`` + base64 of a zlib stream."""
    if compress == "always" or (compress == "only large entries" and len(blob) > COMPRESS_THRESHOLD):
        packed = zlib.compress(blob)
        factor = min(len(blob) // len(packed) + 1, 99)
        return f"gz{factor:02d}" + base64.b64encode(packed).decode("ascii")
    return blob.hex()


def decode_params(text: str) -> bytes:
    """Inverse of ``encode_params``. Uppercase hex is refused, as darktable refuses it."""
    if text.startswith("gz"):
        if len(text) < 4 or not text[2:4].isdigit():
            raise SidecarError(f"bad compressed params {text[:12]!r}: no 2-digit factor after 'gz'")
        try:
            packed = base64.b64decode(text[4:], validate=True)
            inflater = zlib.decompressobj()
            blob = inflater.decompress(packed, MAX_PARAMS_BYTES)
            if inflater.unconsumed_tail:
                raise SidecarError(f"compressed params inflate to more than {MAX_PARAMS_BYTES} bytes")
            if not inflater.eof:
                raise SidecarError("compressed params are truncated")
        except (binascii.Error, zlib.error, ValueError) as exc:
            raise SidecarError(f"bad compressed params {text[:12]!r}...: {exc}") from None
        return blob
    if not _HEX_RE.match(text):
        raise SidecarError(f"bad params {text[:16]!r}: darktable accepts only lowercase hex or gzNN+base64")
    return bytes.fromhex(text)


# --- module params ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CropParams:
    """``crop`` params (1.6.1): v1/v3 24 bytes, v2 28 bytes (``aligned``). cw/ch are right/bottom *edges*."""

    cx: float
    cy: float
    cw: float
    ch: float
    ratio_n: int = 0
    ratio_d: int = 0
    aligned: bool = False

    @classmethod
    def decode(cls, version: int, blob: bytes) -> CropParams:
        if len(blob) == 24 and version in (1, 3):
            return cls(*struct.unpack("<4f2i", blob))
        if len(blob) == 28 and version == 2:
            cx, cy, cw, ch, n, d, aligned = struct.unpack("<4f3i", blob)
            return cls(cx, cy, cw, ch, n, d, bool(aligned))
        raise SidecarError(f"crop params version {version} with {len(blob)} bytes is not a layout pic knows")

    def encode(self, version: int = 1) -> bytes:
        head = struct.pack("<4f2i", self.cx, self.cy, self.cw, self.ch, self.ratio_n, self.ratio_d)
        if version == 2:
            return head + struct.pack("<i", int(self.aligned))
        if version in (1, 3):
            return head
        raise SidecarError(f"pic cannot write crop params version {version}")

    @property
    def box(self) -> Box:
        return Box(self.cx, self.cy, self.cw, self.ch)


@dataclass(frozen=True)
class ClippingParams:
    """Deprecated ``clipping`` ("crop and rotate") params (1.7): v2/v3 28 B, v4 76 B, v5 84 B."""

    angle: float  # degrees
    cx: float
    cy: float
    cw: float  # negative: horizontal mirror
    ch: float  # negative: vertical mirror
    k_h: float = 0.0
    k_v: float = 0.0
    keystone_corners: tuple[float, ...] = (0.2, 0.2, 0.8, 0.2, 0.8, 0.8, 0.2, 0.8)
    k_type: int = 0
    k_sym: int = 0
    k_apply: int = 0
    crop_auto: int = 1
    ratio_n: int = -2
    ratio_d: int = -2

    @classmethod
    def decode(cls, version: int, blob: bytes) -> ClippingParams:
        if len(blob) == 28 and version in (2, 3):
            angle, cx, cy, cw, ch, k_h, k_v = struct.unpack("<7f", blob)
            if version == 2:  # bit 0x40000000 of k_h's bytes only flagged the keystone direction
                k_h = struct.unpack("<f", struct.pack("<I", struct.unpack("<I", blob[20:24])[0] & ~0x40000000))[0]
            return cls(angle, cx, cy, cw, ch, k_h, k_v)
        if len(blob) in (76, 84) and version in (4, 5):
            head = struct.unpack("<15f4i", blob[:76])
            ratio = struct.unpack("<2i", blob[76:84]) if len(blob) == 84 else (-2, -2)
            return cls(*head[:7], tuple(head[7:15]), *head[15:19], *ratio)
        raise SidecarError(f"clipping params version {version} with {len(blob)} bytes is not a layout pic knows")

    def encode(self) -> bytes:
        """v5 layout."""
        return struct.pack(
            "<15f6i", self.angle, self.cx, self.cy, self.cw, self.ch, self.k_h, self.k_v, *self.keystone_corners,
            self.k_type, self.k_sym, self.k_apply, self.crop_auto, self.ratio_n, self.ratio_d,
        )

    @property
    def box(self) -> Box:
        return Box(self.cx, self.cy, abs(self.cw), abs(self.ch))

    @property
    def mirror(self) -> tuple[bool, bool]:
        return (self.cw < 0, self.ch < 0)

    @property
    def keystone(self) -> bool:
        return (self.k_apply == 1 and self.k_type in (1, 2, 3)) or self.k_h != 0.0 or self.k_v != 0.0

    @property
    def is_identity(self) -> bool:
        return self.angle == 0.0 and not self.keystone and not any(self.mirror) and _is_full(self.box)


def decode_flip(version: int, blob: bytes) -> int:
    """flip params (v1 relative to EXIF, v2 absolute): darktable orientation *bits*, -1 = use EXIF."""
    if len(blob) != 4 or version not in (1, 2):
        raise SidecarError(f"flip params version {version} with {len(blob)} bytes is not a layout pic knows")
    return struct.unpack("<i", blob)[0]


# darktable orientation bits (FLIP_Y 1, FLIP_X 2, SWAP_XY 4) <-> EXIF numbers (5.2)
EXIF_TO_BITS = {1: 0, 2: 2, 3: 3, 4: 1, 5: 4, 6: 5, 7: 7, 8: 6}
BITS_TO_EXIF = {b: e for e, b in EXIF_TO_BITS.items()}


def merge_flip_v1(exif_bits: int, user_bits: int) -> int:
    """flip v1 -> v2 (flip.c ``merge_two_orientations``): v1 stored a rotation relative to the EXIF one."""
    raw = exif_bits
    if user_bits & 4:  # a user swap exchanges the meaning of the raw FLIP_X / FLIP_Y bits
        raw = (exif_bits & ~3) | ((exif_bits >> 1) & 1) | ((exif_bits << 1) & 2)
    return raw ^ user_bits


# --- history ---------------------------------------------------------------------------------------------------


@dataclass
class HistoryEntry:
    index: int  # position in the document
    num: int | None
    operation: str | None
    enabled: bool
    modversion: int | None
    params_text: str | None
    multi_priority: int
    multi_name: str
    item: Struct
    params: bytes | None = None
    problem: str | None = None  # why darktable would not use this entry

    @property
    def instance(self) -> tuple[str, int]:
        return (self.operation or "", self.multi_priority)


@dataclass
class DarktableHistory:
    xmp_version: int | None
    history_end: int  # as written (not clamped)
    entries: list[HistoryEntry]
    iop_order_version: int | None
    iop_order_list: str | None
    auto_presets_applied: str | None

    @property
    def end(self) -> int:
        """``history_end`` clamped like darktable does."""
        return max(0, min(self.history_end, len(self.entries)))

    def active(self) -> list[HistoryEntry]:
        """The entries darktable replays, in num order (the redo area beyond history_end excluded)."""
        usable = [e for e in self.entries if e.num is not None and e.num < self.end and e.problem is None]
        return sorted(usable, key=lambda e: (e.num, e.index))

    def effective(self) -> dict[tuple[str, int], HistoryEntry]:
        out: dict[tuple[str, int], HistoryEntry] = {}
        for e in self.active():
            out[e.instance] = e
        return out

    def order_position(self, operation: str) -> int | None:
        """Index of ``operation``'s first instance in a custom iop_order_list (None without one)."""
        if not self.iop_order_list:
            return None
        names = self.iop_order_list.split(",")[0::2]
        return names.index(operation) if operation in names else None

    def precedes_crop(self, operation: str) -> bool:
        pos, crop = self.order_position(operation), self.order_position("crop")
        if pos is None or crop is None:
            return True  # every built-in order puts these modules before crop
        return pos < crop


def _int(text: str | None, what: str) -> int | None:
    if text is None:
        return None
    try:
        return int(text.strip())
    except ValueError:
        raise SidecarError(f"darktable:{what} is not an integer: {text[:20]!r}") from None


def read_history(doc: XmpDocument) -> DarktableHistory | None:
    """darktable's data in ``doc`` (None when the sidecar holds nothing of darktable's)."""
    version_text = doc.get(NS_DT, "xmp_version")
    items = doc.array_items(NS_DT, "history")
    if version_text is None and items is None:
        return None
    xmp_version = _int(version_text, "xmp_version")
    entries: list[HistoryEntry] = []
    for i, li in enumerate(items or []):
        item = Struct(li)
        problem = None
        try:
            num = _int(item.get(NS_DT, "num"), "num")
            modversion = _int(item.get(NS_DT, "modversion"), "modversion")
            priority = _int(item.get(NS_DT, "multi_priority"), "multi_priority") or 0
        except SidecarError as exc:
            num, modversion, priority, problem = None, None, 0, str(exc)
        operation = item.get(NS_DT, "operation")
        params_text = item.get(NS_DT, "params")
        if problem is None and (operation is None or params_text is None or modversion is None):
            problem = "missing operation, params or modversion (darktable then drops the whole history)"
        entry = HistoryEntry(
            index=i,
            num=num if num is not None else (0 if problem is None else None),
            operation=operation,
            enabled=(item.get(NS_DT, "enabled") or "0").strip() == "1",
            modversion=modversion,
            params_text=params_text,
            multi_priority=priority,
            multi_name=item.get(NS_DT, "multi_name") or "",
            item=item,
            problem=problem,
        )
        if params_text is not None and problem is None:
            try:
                entry.params = decode_params(params_text)
            except SidecarError as exc:
                entry.problem = str(exc)
        entries.append(entry)
    end_text = doc.get(NS_DT, "history_end")
    history_end = _int(end_text, "history_end") if end_text is not None else len(entries)
    return DarktableHistory(
        xmp_version=xmp_version,
        history_end=history_end if history_end is not None else len(entries),
        entries=entries,
        iop_order_version=_int(doc.get(NS_DT, "iop_order_version"), "iop_order_version"),
        iop_order_list=doc.get(NS_DT, "iop_order_list"),
        auto_presets_applied=doc.get(NS_DT, "auto_presets_applied"),
    )


# --- frames ----------------------------------------------------------------------------------------------------


def frame_orientation(flip: HistoryEntry | None, exif_orientation: int) -> tuple[int, int | None]:
    """(EXIF number of darktable's crop frame relative to the stored raster, effective flip bits or None).

    No flip entry: the module's default (enabled, -1 = EXIF). Disabled: no rotation at all.
    """
    exif = normalize_orientation(exif_orientation)
    if flip is None:
        return exif, None
    if not flip.enabled:
        return 1, None
    if flip.params is None or flip.modversion is None:
        return exif, -1
    bits = decode_flip(flip.modversion, flip.params)
    if bits < 0:
        return exif, bits
    if flip.modversion == 1:
        bits = merge_flip_v1(EXIF_TO_BITS[exif], bits & 7)
    return BITS_TO_EXIF[bits & 7], bits


def frame_to_displayed(box: Box, frame_o: int, exif_o: int) -> Box:
    """darktable frame (after its flip) -> pic's displayed frame (after the EXIF orientation), by content."""
    return stored_to_displayed(displayed_to_stored(box, frame_o), exif_o)


def displayed_to_frame(box: Box, frame_o: int, exif_o: int) -> Box:
    return stored_to_displayed(displayed_to_stored(box, exif_o), frame_o)


def _frame_size(size: tuple[int, int] | None, frame_o: int, exif_o: int) -> tuple[float, float] | None:
    """Pixel size of darktable's crop frame from pic's displayed size."""
    if size is None or size[0] <= 0 or size[1] <= 0:
        return None
    w, h = size
    stored = (h, w) if normalize_orientation(exif_o) >= 5 else (w, h)
    return (stored[1], stored[0]) if frame_o >= 5 else stored


def _rot(x: float, y: float, angle: float) -> tuple[float, float]:
    """darktable's rotation (clipping ``m`` and lightroom.c ``rotate_xy``): (x cos + y sin, -x sin + y cos)."""
    c, s = math.cos(angle), math.sin(angle)
    return (x * c + y * s, -x * s + y * c)


def _is_full(box: Box) -> bool:
    return is_full_frame(box, FULL_FRAME_EPS)


def clipping_content(cp: ClippingParams, sub: Box = FULL_FRAME,
                     size: tuple[float, float] | None = None) -> tuple[Box, bool]:
    """Region of clipping's input (normalized) shown by ``sub`` (normalized box of clipping's output).

    Returns (box, exact). With angle 0 and no keystone the region is exact; otherwise it is the axis-aligned
    bound of the rotated region (keystone ignored), following clipping.c's ``modify_roi_out`` and ``process``.
    """
    w, h = size if size is not None else (1.5, 1.0)
    a = math.radians(cp.angle)
    box = cp.box
    if cp.k_apply == 0 and cp.crop_auto == 1:
        # "old solution": the box is relative to the largest upright rectangle inside the rotated image
        scale, flip = -1.0, 0
        for f in (0, 1):
            rw, rh = (h, w) if f else (w, h)
            s = 1.0
            for px, py in ((-w / 2, -h / 2), (w / 2, -h / 2), (-w / 2, h / 2), (w / 2, h / 2)):
                o = _rot(px, py, a)  # clipping.c: transform() with rt
                for k, bound in ((0, rw / 2), (1, rh / 2)):
                    if abs(o[k]) > 0.001:
                        s = min(s, bound / abs(o[k]))
            if s >= scale:
                scale, flip = s, f
        fw, fh = (h, w) if flip else (w, h)
        x0, x1 = (box.left - 0.5) * scale * fw, (box.right - 0.5) * scale * fw
        y0, y1 = (box.top - 0.5) * scale * fh, (box.bottom - 0.5) * scale * fh
    else:
        xs, ys = [], []
        for px, py in ((-w / 2, -h / 2), (w / 2, -h / 2), (-w / 2, h / 2), (w / 2, h / 2)):
            o = _rot(px, py, a)
            xs.append(o[0])
            ys.append(o[1])
        bx, by, bw, bh = min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)
        x0, x1 = bx + box.left * bw, bx + box.right * bw
        y0, y1 = by + box.top * bh, by + box.bottom * bh
    # sub-box of the output region, then back into the input (mirror first: it is part of clipping's matrix)
    sx0, sx1 = x0 + sub.left * (x1 - x0), x0 + sub.right * (x1 - x0)
    sy0, sy1 = y0 + sub.top * (y1 - y0), y0 + sub.bottom * (y1 - y0)
    mx, my = cp.mirror
    pts = []
    for qx, qy in ((sx0, sy0), (sx1, sy0), (sx0, sy1), (sx1, sy1)):
        ix, iy = _rot(-qx if mx else qx, -qy if my else qy, a)
        pts.append((ix / w + 0.5, iy / h + 0.5))
    xs_n = [p[0] for p in pts]
    ys_n = [p[1] for p in pts]
    out = Box(min(xs_n), min(ys_n), max(xs_n), max(ys_n)).clamped()
    return out, cp.angle == 0.0 and not cp.keystone


def clipping_output_box(cp: ClippingParams, content: Box) -> Box:
    """Inverse of ``clipping_content`` for angle 0 without keystone: a content region -> box in clipping's output."""
    box = cp.box
    mx, my = cp.mirror
    left, right = (1 - content.right, 1 - content.left) if mx else (content.left, content.right)
    top, bottom = (1 - content.bottom, 1 - content.top) if my else (content.top, content.bottom)
    bw, bh = box.right - box.left, box.bottom - box.top
    if bw <= 0 or bh <= 0:
        raise SidecarError("the clipping entry before the crop has an empty box; pic cannot place a crop after it")
    return Box((left - box.left) / bw, (top - box.top) / bh, (right - box.left) / bw, (bottom - box.top) / bh).clamped()


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
        return _is_full(self.crop)

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


def _approximations(hist: DarktableHistory, effective: dict[tuple[str, int], HistoryEntry]) -> list[str]:
    notes = []
    for (op, _), e in effective.items():
        if e.enabled and op in _GEOMETRY_BEFORE_CROP and hist.precedes_crop(op):
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
    fsize = _frame_size(size, frame_o, orientation)
    crop_e = effective.get(("crop", 0))
    clip_e = effective.get(("clipping", 0))
    crop_p = clip_p = None
    notes = _approximations(hist, effective)
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


# --- writing ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OwnEntry:
    """The history entry pic wrote last time (kept in pic's namespace)."""

    num: int
    params_text: str
    enabled: bool

    def matches(self, entry: HistoryEntry) -> bool:
        """Same crop params and state. The num is not compared: darktable renumbers when it prepends
        auto-presets to a sidecar written with auto_presets_applied=0, and identical float32 edges are not
        something a user produces by hand."""
        if entry.operation != "crop" or entry.params is None or entry.enabled != self.enabled:
            return False
        try:
            return decode_params(self.params_text) == entry.params
        except SidecarError:
            return False


@dataclass
class DarktableWrite:
    status: Literal["written", "unchanged", "kept-user-crop"]
    num: int | None = None
    params_text: str | None = None
    enabled: bool = True
    replaced_own: bool = False
    approximate: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def own(self) -> OwnEntry | None:
        if self.num is None or self.params_text is None:
            return None
        return OwnEntry(self.num, self.params_text, self.enabled)


def init_document(doc: XmpDocument, image_name: str | None) -> None:
    """Add darktable's minimal set (AutoLevels' template pattern, 2.2 "New sidecar") to a sidecar without it."""
    doc.set(NS_DT, "xmp_version", str(NEW_XMP_VERSION), "darktable")
    doc.set(NS_DT, "raw_params", "0", "darktable")
    # 0: darktable prepends its defaults and auto-presets on the first darkroom load (our entry moves up)
    doc.set(NS_DT, "auto_presets_applied", "0", "darktable")
    doc.set(NS_DT, "history_end", "0", "darktable")
    # v3.0 (2) exists from darktable 3.0 to 5.x; darktable 4.2 itself writes 2 for a JPEG it imports this way
    doc.set(NS_DT, "iop_order_version", "2", "darktable")
    if image_name is not None and doc.get("http://ns.adobe.com/xap/1.0/mm/", "DerivedFrom") is None:
        doc.set("http://ns.adobe.com/xap/1.0/mm/", "DerivedFrom", image_name, "xmpMM")
    doc.ensure_array(NS_DT, "history", "Seq", "darktable")


def _validate_for_write(doc: XmpDocument, hist: DarktableHistory) -> None:
    if hist.xmp_version is None:
        raise SidecarError("darktable history without darktable:xmp_version: darktable could not read it, "
                           "pic does not append to it")
    if hist.xmp_version not in WRITABLE_XMP_VERSIONS:
        raise SidecarError(f"darktable:xmp_version {hist.xmp_version} is not supported "
                           f"(pic appends only to versions {sorted(WRITABLE_XMP_VERSIONS)}, darktable 3.0 and later)")
    desc = doc.description_for(NS_DT)
    prefix = desc.lookup_prefix(NS_DT)
    if prefix not in (None, "darktable"):
        raise SidecarError(f"darktable's namespace is bound to prefix {prefix!r}, not 'darktable' "
                           "(darktable itself recognises only the literal xmlns:darktable declaration)")
    for e in hist.entries:
        if e.problem is not None:
            raise SidecarError(f"darktable history entry #{e.index + 1} is broken ({e.problem}); pic does not touch it")


def _pixel_exact(value_lo: float, value_hi: float, extent: float) -> tuple[float, float]:
    """float32 edges for which darktable's float arithmetic yields exactly the intended pixel edges.

    darktable computes ``x = (int)(W * cx)`` and ``width = (int)(W * (cw - cx))`` in float32, so 0.1 * 600 may
    give 59 and (0.7 - 0.1) * 600 359. When the requested edges fall on whole pixels, nudge them up by a few ulps.
    """
    f32 = np.float32
    w = f32(extent)
    x0, x1 = value_lo * extent, value_hi * extent
    if abs(x0 - round(x0)) > 1e-3 or abs(x1 - round(x1)) > 1e-3:
        return value_lo, value_hi
    t0, tw = round(x0), round(x1) - round(x0)
    # Start from the whole-pixel edges themselves (the request is within 1/1000 px of them), then nudge.
    lo, hi = f32(t0 / extent), f32((t0 + tw) / extent)
    for _ in range(64):
        if int(w * lo) >= t0:
            break
        lo = np.nextafter(lo, f32(2))
    for _ in range(64):
        if int(w * (hi - lo)) >= tw or hi >= f32(1):
            break
        hi = np.nextafter(hi, f32(2))
    return float(lo), float(min(hi, f32(1)))


def _remove_redo(doc: XmpDocument, hist: DarktableHistory) -> list[str]:
    end = hist.end
    notes = []
    container = doc.array_container(NS_DT, "history")
    dropped = [e for e in hist.entries if e.num is not None and e.num >= end]
    if container is not None:
        for e in dropped:
            container.remove_child(e.item.node)
    if dropped:
        notes.append(f"dropped {len(dropped)} undone entries beyond history_end {end}, as darktable does on a new edit")
    masks = doc.array_container(NS_DT, "masks_history")
    if masks is not None:
        for li in [li for li in masks.elements() if li.is_(NS_RDF, "li")]:
            mask_num = _int(Struct(li).get(NS_DT, "mask_num"), "mask_num")
            if mask_num is not None and mask_num >= end:
                masks.remove_child(li)
    hist.entries = [e for e in hist.entries if e not in dropped]
    hist.history_end = end
    return notes


def _ensure_crop_in_order(doc: XmpDocument, hist: DarktableHistory) -> None:
    """2.2 step 8: a custom pipe order must list crop, or darktable would not place the module."""
    if hist.iop_order_version != 0 or not hist.iop_order_list:
        return
    parts = hist.iop_order_list.split(",")
    pairs = list(zip(parts[0::2], parts[1::2], strict=False))
    if ("crop", "0") in pairs:
        return
    for anchor, after in (("toneequal", True), ("graduatednd", False), ("clipping", True), ("flip", True)):
        idx = next((i for i, (op, _) in enumerate(pairs) if op == anchor), None)
        if idx is not None:
            pairs.insert(idx + 1 if after else idx, ("crop", "0"))
            doc.set(NS_DT, "iop_order_list", ",".join(f"{op},{inst}" for op, inst in pairs))
            return
    raise SidecarError("custom iop_order_list without crop and without an anchor module to place it after")


def _template(hist: DarktableHistory) -> HistoryEntry | None:
    """An entry whose spelling (attribute/element style, blendop fields) the new entry copies."""
    for e in reversed(hist.entries):
        if e.operation == "flip":
            return e
    return hist.entries[-1] if hist.entries else None


def _user_framing(effective: dict[tuple[str, int], HistoryEntry], own: OwnEntry | None) -> HistoryEntry | None:
    """The enabled entry that frames the image the user's way: a non-full crop pic did not write, or a clipping
    that crops, rotates or corrects keystone (a pure mirror is not framing)."""
    crop_e = effective.get(("crop", 0))
    if (crop_e is not None and crop_e.enabled and crop_e.params is not None and crop_e.modversion is not None
            and not (own is not None and own.matches(crop_e))):
        with contextlib.suppress(SidecarError):
            if not _is_full(CropParams.decode(crop_e.modversion, crop_e.params).box):
                return crop_e
    clip_e = effective.get(("clipping", 0))
    if clip_e is not None and clip_e.enabled and clip_e.params is not None and clip_e.modversion is not None:
        with contextlib.suppress(SidecarError):
            cp = ClippingParams.decode(clip_e.modversion, clip_e.params)
            if not _is_full(cp.box) or cp.angle != 0.0 or cp.keystone:
                return clip_e
    return None


def write_crop(
    doc: XmpDocument,
    crop: Box,
    orientation: int,
    *,
    mode: Literal["apply", "suggest"] = "apply",
    force: bool = False,
    own: OwnEntry | None = None,
    size: tuple[int, int] | None = None,
    image_name: str | None = None,
) -> DarktableWrite:
    """Append pic's crop (``crop`` in pic's displayed frame) to the darktable history in ``doc`` (edited in place).

    ``own`` is pic's previous entry (from pic's namespace): if it is still the effective crop it is replaced;
    any other enabled, non-full-frame crop is the user's and is kept unless ``force``.
    """
    if mode not in ("apply", "suggest"):
        raise ValueError(f"mode must be 'apply' or 'suggest', not {mode!r}")
    if not crop.is_valid():
        raise SidecarError(f"invalid crop {tuple(crop)}: need 0 <= left < right <= 1 and 0 <= top < bottom <= 1")
    hist = read_history(doc)
    if hist is None:
        init_document(doc, image_name)
        hist = read_history(doc)
        assert hist is not None
    else:
        _validate_for_write(doc, hist)
        if doc.array_container(NS_DT, "history") is None:
            doc.ensure_array(NS_DT, "history", "Seq", "darktable")
    enabled = mode == "apply"
    notes: list[str] = []

    effective = hist.effective()
    crop_entry = effective.get(("crop", 0))
    is_own = own is not None and crop_entry is not None and own.matches(crop_entry)
    users = _user_framing(effective, own)
    if users is not None and not force:
        return DarktableWrite("kept-user-crop", users.num, users.params_text, users.enabled,
                              notes=[f"the user's {users.operation} entry (num {users.num}) is kept"])
    if _is_full(crop) and not is_own and users is None:
        # The whole frame, and no crop of pic's to undo: darktable already shows the whole frame, and an entry
        # would only mark the photo as edited in the lighttable (pic leaves most photos of an unknown user whole).
        return DarktableWrite("unchanged", enabled=enabled, notes=["the whole frame: no crop entry needed"])

    # darktable's crop frame: pic's displayed frame through the effective flip (and a mirroring clipping)
    frame_o, _ = frame_orientation(effective.get(("flip", 0)), orientation)
    box = displayed_to_frame(crop, frame_o, orientation)
    clip_e = effective.get(("clipping", 0))
    if clip_e is not None and clip_e.enabled and clip_e.params is not None and clip_e.modversion is not None:
        cp = ClippingParams.decode(clip_e.modversion, clip_e.params)
        if not cp.is_identity:
            box = clipping_output_box(cp, box)
            if cp.angle != 0.0 or cp.keystone:
                notes.append("clipping rotates or corrects keystone before the crop: placement is approximate")
    notes += _approximations(hist, effective)
    fsize = _frame_size(size, frame_o, orientation)
    if fsize is not None:
        left, right = _pixel_exact(box.left, box.right, fsize[0])
        top, bottom = _pixel_exact(box.top, box.bottom, fsize[1])
        box = Box(left, top, right, bottom)
    if box.right - box.left < 0.1 or box.bottom - box.top < 0.1 or box.left > 0.9 or box.top > 0.9:
        notes.append("darktable clamps crop edges to cx,cy <= 0.9 and cw,ch >= 0.1: a very small crop near an edge "
                     "renders differently")

    # copy version and size from a crop entry darktable wrote in this file (1.6.5), else the portable v1
    version = 1
    for e in reversed(hist.entries):
        if (e.operation == "crop" and e.params is not None and e.modversion in (1, 2, 3)
                and len(e.params) == (28 if e.modversion == 2 else 24)):
            version = e.modversion
            break
    blob = CropParams(box.left, box.top, box.right, box.bottom, 0, 0, False).encode(version)
    params_text = encode_params(blob)

    if is_own and crop_entry is not None and crop_entry.params == blob and crop_entry.enabled == enabled:
        return DarktableWrite("unchanged", crop_entry.num, crop_entry.params_text, enabled, notes=notes)

    notes += _remove_redo(doc, hist)
    end = hist.end
    replaced = False
    if is_own and crop_entry is not None and crop_entry.num == end - 1 and crop_entry in hist.entries:
        container = doc.array_container(NS_DT, "history")
        assert container is not None
        container.remove_child(crop_entry.item.node)
        hist.entries.remove(crop_entry)
        end -= 1
        replaced = True
    elif is_own:
        notes.append("pic's previous entry is not the last one: a new entry overrides it")

    template = _template(hist)
    container = doc.ensure_array(NS_DT, "history", "Seq", "darktable")
    item = new_item_like(container, template.item.node if template else None)
    item.set(NS_DT, "num", str(end), "darktable")
    item.set(NS_DT, "operation", "crop")
    item.set(NS_DT, "enabled", "1" if enabled else "0")
    item.set(NS_DT, "modversion", str(version))
    item.set(NS_DT, "params", params_text)
    item.set(NS_DT, "multi_name", "")
    if any(e.item.has(NS_DT, "multi_name_hand_edited") for e in hist.entries):
        item.set(NS_DT, "multi_name_hand_edited", "0")
    item.set(NS_DT, "multi_priority", "0")
    if template is not None:
        bv, bp = template.item.get(NS_DT, "blendop_version"), template.item.get(NS_DT, "blendop_params")
        if bv is not None and bp is not None:  # crop has no blending: any valid blend params do
            item.set(NS_DT, "blendop_version", bv)
            item.set(NS_DT, "blendop_params", bp)
    doc.set(NS_DT, "history_end", str(end + 1))
    for key in _HASH_KEYS:  # a stale current hash would mark the image "unaltered"/"synced" wrongly (pitfall 9)
        doc.remove(NS_DT, key)
    _ensure_crop_in_order(doc, hist)
    return DarktableWrite("written", end, params_text, enabled, replaced_own=replaced,
                          approximate=any("approximate" in n for n in notes), notes=notes)


# --- file names ------------------------------------------------------------------------------------------------


def sidecar_path(image: Path, duplicate: int = 0) -> Path:
    """``IMG.ext.xmp``, or ``IMG_NN.ext.xmp`` for duplicate N > 0 (1.1)."""
    if duplicate <= 0:
        return image.with_name(image.name + ".xmp")
    name = image.name
    stem, dot, ext = name.rpartition(".")
    base = f"{stem}_{duplicate:02d}.{ext}" if dot else f"{name}_{duplicate:02d}"
    return image.with_name(base + ".xmp")


def duplicate_sidecars(image: Path) -> list[tuple[int, Path]]:
    """Existing sidecars of the image and its duplicates, (version, path), version 0 first."""
    name = image.name
    stem, dot, ext = name.rpartition(".")
    pattern = re.compile(re.escape(stem) + r"_(\d+)\." + re.escape(ext) + r"\.xmp\Z" if dot
                         else re.escape(name) + r"_(\d+)\.xmp\Z", re.DOTALL)
    found: list[tuple[int, Path]] = []
    main = sidecar_path(image)
    if main.exists():
        found.append((0, main))
    try:
        names: Iterable[str] = os.listdir(image.parent)
    except OSError:
        return found
    for entry in sorted(names):
        m = pattern.match(entry)
        # IMG_01.JPG.xmp may also be the sidecar of a real file IMG_01.JPG rather than a duplicate of IMG.JPG
        if m and len(m.group(1)) >= 2 and not image.with_name(entry[: -len(".xmp")]).exists():
            found.append((int(m.group(1)), image.with_name(entry)))
    return sorted(found)
