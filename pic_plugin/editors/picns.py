"""pic's own XMP namespace: the suggestion, its alternatives and what pic applied where.

Namespace ``http://ns.pic-crop.org/1.0/``, prefix ``pic``. One record per sidecar, as attributes of an
``rdf:Description`` (the alternatives as an ``rdf:Seq`` of structures), e.g.::

    <rdf:Description rdf:about="" xmlns:pic="http://ns.pic-crop.org/1.0/"
     pic:Version="1"
     pic:Crop="0.1 0.05 0.9 0.95"          left top right bottom, normalized, pic's displayed frame
     pic:Score="0.42"
     pic:Ratio="4:5"                        "free", "original" or W:H
     pic:Model="composition-0.3"
     pic:User="anna"                        absent when the suggestion is not personalized
     pic:Created="2026-05-06T10:11:12Z"     ISO 8601, UTC
     pic:ImageSize="4000 6000"              displayed size in pixels the crop was computed on
     pic:Orientation="6"                    the EXIF orientation pic applied
     pic:State="applied"                    "suggested" (nothing enabled in an editor) or "applied"
     pic:DarktableNum="12"                  the darktable history entry pic wrote ...
     pic:DarktableParams="cdcccc3d..."      ... its params text ...
     pic:DarktableEnabled="False"           ... and whether it was enabled (suggest-only writes it disabled)
     pic:CrsCrop="0.05 0.1 0.95 0.9">       the crs:Crop* corners pic wrote (stored frame)
     <pic:Alternatives><rdf:Seq>
       <rdf:li pic:Crop="0.2 0.1 0.8 0.9" pic:Score="0.21"/>
     </rdf:Seq></pic:Alternatives>
    </rdf:Description>

Numbers are written with Python's shortest round-trip ``repr`` so they read back exactly. Exiv2 (and so digiKam's
metadata layer) lists the record without any registration: ``exiv2 -pa`` prints ``Xmp.pic.Crop``,
``Xmp.pic.Alternatives[1]/pic:Score`` and so on (checked with exiv2 0.27).
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime

from pic_plugin.core.errors import SidecarError
from pic_plugin.core.geometry import Box
from pic_plugin.core.suggestion import Suggestion
from pic_plugin.editors.darktable import OwnEntry
from pic_plugin.editors.xmp import Struct, XmpDocument, new_item_like

NS_PIC = "http://ns.pic-crop.org/1.0/"
PREFIX = "pic"
RECORD_VERSION = "1"

_SIMPLE = (
    "Version", "Crop", "Score", "Ratio", "Model", "User", "Created", "ImageSize", "Orientation", "State",
    "DarktableNum", "DarktableParams", "DarktableEnabled", "CrsCrop",
)


@dataclass
class PicRecord:
    crop: Box
    score: float = 0.0
    ratio: str = "free"
    model: str = ""
    user: str | None = None
    created: str = ""
    size: tuple[int, int] | None = None
    orientation: int | None = None
    state: str = "suggested"
    alternatives: list[tuple[Box, float]] = field(default_factory=list)
    darktable: OwnEntry | None = None
    crs: Box | None = None

    @classmethod
    def from_suggestion(cls, s: Suggestion, orientation: int, state: str = "suggested") -> PicRecord:
        return cls(
            crop=s.crop,
            score=float(s.score),
            ratio=s.ratio,
            model=s.model,
            user=s.user,
            created=iso_timestamp(s.created),
            size=(int(s.size[0]), int(s.size[1])) if s.size else None,
            orientation=orientation,
            state=state,
            alternatives=[(a.crop, float(a.score)) for a in s.alternatives],
        )


def iso_timestamp(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def format_box(box: Box) -> str:
    return " ".join(repr(float(v)) for v in box)


def parse_box(text: str) -> Box:
    parts = text.split()
    if len(parts) != 4:
        raise SidecarError(f"pic crop {text[:40]!r} is not four numbers")
    try:
        values = [float(p) for p in parts]
    except ValueError:
        raise SidecarError(f"pic crop {text[:40]!r} is not four numbers") from None
    if not all(math.isfinite(v) for v in values):
        raise SidecarError(f"pic crop {text[:40]!r} is not finite")
    return Box(*values)


def _float(text: str | None, default: float = 0.0) -> float:
    if text is None:
        return default
    try:
        v = float(text)
    except ValueError:
        raise SidecarError(f"pic number {text[:20]!r} is not a number") from None
    return v if math.isfinite(v) else default


def read_record(doc: XmpDocument) -> PicRecord | None:
    """pic's record in ``doc``, None if there is none. A damaged record raises ``SidecarError``."""
    crop_text = doc.get(NS_PIC, "Crop")
    crs_text = doc.get(NS_PIC, "CrsCrop")
    if crop_text is None and crs_text is None and doc.get(NS_PIC, "DarktableParams") is None:
        return None
    rec = PicRecord(crop=parse_box(crop_text) if crop_text is not None else Box(0.0, 0.0, 1.0, 1.0))
    rec.score = _float(doc.get(NS_PIC, "Score"))
    rec.ratio = doc.get(NS_PIC, "Ratio") or "free"
    rec.model = doc.get(NS_PIC, "Model") or ""
    rec.user = doc.get(NS_PIC, "User")
    rec.created = doc.get(NS_PIC, "Created") or ""
    rec.state = doc.get(NS_PIC, "State") or "suggested"
    size = (doc.get(NS_PIC, "ImageSize") or "").split()
    if len(size) == 2 and all(p.isdigit() for p in size):
        rec.size = (int(size[0]), int(size[1]))
    orient = doc.get(NS_PIC, "Orientation")
    if orient is not None and orient.strip().isdigit():
        rec.orientation = int(orient)
    num, params = doc.get(NS_PIC, "DarktableNum"), doc.get(NS_PIC, "DarktableParams")
    if num is not None and params is not None:
        with contextlib.suppress(ValueError):
            rec.darktable = OwnEntry(int(num), params, (doc.get(NS_PIC, "DarktableEnabled") or "True") == "True")
    if crs_text is not None:
        rec.crs = parse_box(crs_text)
    for li in doc.array_items(NS_PIC, "Alternatives") or []:
        item = Struct(li)
        alt = item.get(NS_PIC, "Crop")
        if alt is not None:
            rec.alternatives.append((parse_box(alt), _float(item.get(NS_PIC, "Score"))))
    return rec


def remove_record(doc: XmpDocument) -> None:
    for name in _SIMPLE:
        doc.remove(NS_PIC, name)
    doc.remove_property_element(NS_PIC, "Alternatives")


def write_record(doc: XmpDocument, rec: PicRecord) -> None:
    """Replace pic's record in ``doc`` with ``rec`` (foreign properties are not touched)."""
    remove_record(doc)

    def put(name: str, value: str | None) -> None:
        if value is not None:
            doc.set(NS_PIC, name, value, PREFIX)

    put("Version", RECORD_VERSION)
    put("Crop", format_box(rec.crop))
    put("Score", repr(float(rec.score)))
    put("Ratio", rec.ratio)
    put("Model", rec.model)
    put("User", rec.user)
    put("Created", rec.created)
    put("ImageSize", f"{rec.size[0]} {rec.size[1]}" if rec.size else None)
    put("Orientation", str(rec.orientation) if rec.orientation is not None else None)
    put("State", rec.state)
    if rec.darktable is not None:
        put("DarktableNum", str(rec.darktable.num))
        put("DarktableParams", rec.darktable.params_text)
        put("DarktableEnabled", "True" if rec.darktable.enabled else "False")
    if rec.crs is not None:
        put("CrsCrop", format_box(rec.crs))
    if rec.alternatives:
        container = doc.ensure_array(NS_PIC, "Alternatives", "Seq", PREFIX)
        for box, score in rec.alternatives:
            item = new_item_like(container, None)
            item.set(NS_PIC, "Crop", format_box(box), PREFIX)
            item.set(NS_PIC, "Score", repr(float(score)), PREFIX)


def write_crs_marker(doc: XmpDocument, stored: Box) -> None:
    """In a Lightroom sidecar pic records only which crs crop it wrote (the full record lives in IMG.ext.xmp)."""
    doc.set(NS_PIC, "Version", RECORD_VERSION, PREFIX)
    doc.set(NS_PIC, "CrsCrop", format_box(stored), PREFIX)

