"""darktable's history params: the text encoding (hex or ``gz``, FORMATS.md 1.4) and the byte layouts of the
``crop``, ``clipping`` and ``flip`` modules (1.6, 1.7)."""

from __future__ import annotations

import base64
import binascii
import re
import struct
import zlib
from dataclasses import dataclass
from fractions import Fraction
from typing import Literal

from pic_plugin.core.errors import SidecarError
from pic_plugin.core.geometry import Box, is_full_frame

NS_DT = "http://darktable.sf.net/"
#: xmp_version values darktable's reader accepts (1.3) and the ones pic appends to (2.2 step 2).
READABLE_XMP_VERSIONS = frozenset({2, 3, 4, 5})
WRITABLE_XMP_VERSIONS = frozenset({4, 5})
NEW_XMP_VERSION = 5
COMPRESS_THRESHOLD = 100  # bytes; darktable's default "only large entries" compresses len > 100
MAX_PARAMS_BYTES = 1 << 20  # a decompressed params blob larger than this is not darktable's
FULL_FRAME_EPS = 1e-5

_HEX_RE = re.compile(r"^(?:[0-9a-f]{2})*$")
HASH_KEYS = ("history_basic_hash", "history_auto_hash", "history_current_hash")
# Geometry modules placed before crop in every built-in pipe order (1.6.3): they move or resize its frame.
GEOMETRY_BEFORE_CROP = ("lens", "ashift", "enlargecanvas", "rotatepixels", "scalepixels")


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


def is_full(box: Box) -> bool:
    """The whole frame, to darktable's float precision."""
    return is_full_frame(box, FULL_FRAME_EPS)


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
        return self.angle == 0.0 and not self.keystone and not any(self.mirror) and is_full(self.box)


def crop_ratio_lock(ratio: str | None, box: Box, frame: tuple[float, float] | None) -> tuple[int, int]:
    """(ratio_n, ratio_d) that lock the crop module to the ratio pic cropped in, as the GUI stores a lock (1.6.2).

    ``ratio``: the suggestion's ratio name (``free``, ``original``, ``W:H``); ``box`` in darktable's crop frame of
    pixel size ``frame``. darktable keeps ``d >= n`` (long:short) and gives ``ratio_d`` a negative sign when the crop
    turns the other way than the frame (crop.c ``_aspect_ratio_get`` / ``_aspect_apply``: a portrait frame inverts the
    aspect, a negative d inverts it again). Free, unknown or malformed ratios are freehand 0/0.
    """
    if ratio is None or frame is None or frame[0] <= 0 or frame[1] <= 0:
        return 0, 0
    crop_w = (box.right - box.left) * frame[0]
    crop_h = (box.bottom - box.top) * frame[1]
    turned = (crop_w > crop_h) != (frame[0] >= frame[1]) and abs(crop_w - crop_h) > 0.5
    sign = -1 if turned else 1
    if ratio == "original":
        return 0, sign  # n = 0, |d| = 1: "original image"
    parts = ratio.split(":")
    if len(parts) != 2:
        return 0, 0
    try:
        w, h = (Fraction(p.strip()).limit_denominator(10000) for p in parts)
    except (ValueError, ZeroDivisionError):
        return 0, 0
    if w <= 0 or h <= 0:
        return 0, 0
    value = w / h if w >= h else h / w
    d, n = value.numerator, value.denominator
    if d > 2**31 - 1:
        return 0, 0
    return n, sign * d if d != n else d


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


