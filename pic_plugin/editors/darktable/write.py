"""darktable sidecars (``IMG.ext.xmp``, duplicates ``IMG_NN.ext.xmp``): append pic's crop.

Layouts and rules are FORMATS.md section 1 (format) and 2.2 (the append recipe); section numbers below refer to it.

Writing (``write_crop``) follows 2.2: redo entries beyond ``history_end`` (and their masks) are dropped, one ``crop``
entry is appended with ``num = history_end`` (``enabled="1"`` to apply, ``"0"`` to only suggest), modversion 1 /
24 bytes unless the file already has a crop entry (then its version and size are copied), the suggestion's ratio
as the crop module's lock (``crop_ratio_lock``; 0/0 freehand for a free crop),
the three ``history_*_hash`` attributes are deleted, timestamps / xmp_version / auto_presets_applied are left alone
and a custom ``iop_order_list`` gets ``crop,0`` if it lacks it. A crop the user made is never replaced unless
``force=True``; pic's own previous entry (identified by ``OwnEntry``, which the caller keeps in pic's namespace) is
replaced.

The ratio lock: without it the crop module shows "freehand" and dragging a handle loses the ratio the user asked
for. darktable 4.2 ignores the lock when rendering (checked with darktable-cli), 5.2's pipeline enforces
``ratio_d/ratio_n`` with a sign relative to the frame's orientation, and the GUI re-shapes the box to the ratio when
it draws: so the sign follows crop.c exactly, and the edges are pixel-exact (``size``), which makes the re-shaping a
no-op.
"""

from __future__ import annotations

import contextlib
import struct
from dataclasses import dataclass, field
from typing import Literal

from pic_plugin.core.errors import SidecarError, UnsupportedSidecarError
from pic_plugin.core.geometry import Box
from pic_plugin.editors.darktable.frames import (
    clipping_output_box,
    displayed_to_frame,
    frame_orientation,
    frame_size,
)
from pic_plugin.editors.darktable.history import DarktableHistory, HistoryEntry, int_attr, read_history
from pic_plugin.editors.darktable.params import (
    HASH_KEYS,
    NEW_XMP_VERSION,
    NS_DT,
    WRITABLE_XMP_VERSIONS,
    ClippingParams,
    CropParams,
    crop_ratio_lock,
    decode_params,
    encode_params,
    is_full,
)
from pic_plugin.editors.darktable.read import approximations
from pic_plugin.editors.xmp import NS_RDF, Struct, XmpDocument, new_item_like

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
    status: Literal["written", "unchanged", "kept-user-crop", "removed", "skipped"]
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
        raise UnsupportedSidecarError("darktable history without darktable:xmp_version: darktable could not read it, "
                           "pic does not append to it")
    if hist.xmp_version not in WRITABLE_XMP_VERSIONS:
        raise UnsupportedSidecarError(f"darktable:xmp_version {hist.xmp_version} is not supported "
                           f"(pic appends only to versions {sorted(WRITABLE_XMP_VERSIONS)}, darktable 3.0 and later)")
    desc = doc.description_for(NS_DT)
    prefix = desc.lookup_prefix(NS_DT)
    if prefix not in (None, "darktable"):
        raise UnsupportedSidecarError(f"darktable's namespace is bound to prefix {prefix!r}, not 'darktable' "
                           "(darktable itself recognises only the literal xmlns:darktable declaration)")
    for e in hist.entries:
        if e.problem is not None:
            raise UnsupportedSidecarError(f"darktable history entry #{e.index + 1} is broken ({e.problem}); pic does not touch it")


def _pixel_exact(value_lo: float, value_hi: float, extent: float) -> tuple[float, float]:
    """float32 edges for which darktable's float arithmetic yields exactly the intended pixel edges.

    darktable computes ``x = (int)(W * cx)`` and ``width = (int)(W * (cw - cx))`` in float32, so 0.1 * 600 may
    give 59 and (0.7 - 0.1) * 600 359. When the requested edges fall on whole pixels, nudge them up by a few ulps.
    """
    w = _f32(extent)
    x0, x1 = value_lo * extent, value_hi * extent
    if abs(x0 - round(x0)) > 1e-3 or abs(x1 - round(x1)) > 1e-3:
        return value_lo, value_hi
    t0, tw = round(x0), round(x1) - round(x0)
    # Start from the whole-pixel edges themselves (the request is within 1/1000 px of them), then nudge.
    lo, hi = _f32(t0 / extent), _f32((t0 + tw) / extent)
    for _ in range(64):
        if int(_f32(w * lo)) >= t0:
            break
        lo = _next_f32(lo)
    for _ in range(64):
        if int(_f32(w * _f32(hi - lo))) >= tw or hi >= 1.0:
            break
        hi = _next_f32(hi)
    return lo, min(hi, 1.0)


def _f32(x: float) -> float:
    """``x`` rounded to float32 (the product or difference of two float32 values is exact in a double, so rounding
    it once gives what darktable's float arithmetic gives)."""
    return struct.unpack("<f", struct.pack("<f", x))[0]


def _next_f32(x: float) -> float:
    """The next float32 above ``x`` (x >= 0), like ``nextafter(x, 2.0f)``."""
    (bits,) = struct.unpack("<I", struct.pack("<f", x))
    return struct.unpack("<f", struct.pack("<I", bits + 1))[0]


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
            mask_num = int_attr(Struct(li).get(NS_DT, "mask_num"), "mask_num")
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
            if not is_full(CropParams.decode(crop_e.modversion, crop_e.params).box):
                return crop_e
    clip_e = effective.get(("clipping", 0))
    if clip_e is not None and clip_e.enabled and clip_e.params is not None and clip_e.modversion is not None:
        with contextlib.suppress(SidecarError):
            cp = ClippingParams.decode(clip_e.modversion, clip_e.params)
            if not is_full(cp.box) or cp.angle != 0.0 or cp.keystone:
                return clip_e
    return None


def _same_params(text: str, blob: bytes) -> bool:
    try:
        return decode_params(text) == blob
    except SidecarError:
        return False


def drop_own_entry(doc: XmpDocument, own: OwnEntry) -> bool:
    """Take pic's own crop entry out of the history when it is the last entry (nothing built on it); True if it was.

    For a photo darktable has not loaded yet, whose crop must come from elsewhere (a Lightroom crop it imports)."""
    hist = read_history(doc)
    if hist is None or not hist.entries:
        return False
    last = max(hist.entries, key=lambda e: e.num if e.num is not None else -1)
    if last.num != hist.end - 1 or not own.matches(last):
        return False
    container = doc.array_container(NS_DT, "history")
    if container is None:
        return False
    container.remove_child(last.item.node)
    doc.set(NS_DT, "history_end", str(hist.end - 1))
    for key in HASH_KEYS:
        doc.remove(NS_DT, key)
    return True


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
    ratio: str | None = None,
) -> DarktableWrite:
    """Append pic's crop (``crop`` in pic's displayed frame) to the darktable history in ``doc`` (edited in place).

    ``own`` is pic's previous entry (from pic's namespace): if it is still the effective crop it is replaced;
    any other enabled, non-full-frame crop is the user's and is kept unless ``force``. ``ratio`` (the
    suggestion's ratio name) becomes the crop module's ratio lock.
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
    if own is not None and not force and not any(
            e.operation == "crop" and e.params is not None and _same_params(own.params_text, e.params)
            for e in hist.entries):
        # pic wrote an entry here and it is gone: darktable rewrote the sidecar from its database, or the user
        # removed it. That is their decision; appending it again would fight darktable over the file.
        return DarktableWrite("removed", enabled=enabled,
                              notes=["pic's earlier crop entry is no longer in the history (removed in darktable): "
                                     "not written again (--force does)"])
    if is_full(crop) and not is_own and users is None:
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
    notes += approximations(hist, effective)
    fsize = frame_size(size, frame_o, orientation)
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
    ratio_n, ratio_d = crop_ratio_lock(ratio, box, fsize)
    blob = CropParams(box.left, box.top, box.right, box.bottom, ratio_n, ratio_d, False).encode(version)
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
    for key in HASH_KEYS:  # a stale current hash would mark the image "unaltered"/"synced" wrongly (pitfall 9)
        doc.remove(NS_DT, key)
    _ensure_crop_in_order(doc, hist)
    return DarktableWrite("written", end, params_text, enabled, replaced_own=replaced,
                          approximate=any("approximate" in n for n in notes), notes=notes)


