"""digiKam: a suggestion as metadata digiKam shows and filters on.

digiKam has no crop it could apply from metadata (FORMATS.md 3.2) and turns any MWG region into a face (3.3), so
pic marks the image with a *tag* and keeps the rectangle in its own namespace:

* ``digiKam:TagsList`` (``rdf:Seq`` of tag paths, ``/``-separated): ``pic/suggested``. digiKam reads this first
  and shows the tag in its tag tree, so "show images tagged pic/suggested" is a normal tag filter;
* ``lr:hierarchicalSubject`` (``rdf:Bag``, ``|``-separated): ``pic|suggested``, for the other programs (and
  darktable, which shows it as a tag too);
* pic's record (``pic:Crop`` and the rest, ``picns``): the crop, score and ratio.

digiKam reads the tags of an image from the **first non-empty** of its tag fields, in the order of its default
metadata settings (``DMetadataSettingsContainer::defaultTagValues`` + ``DMetadata::getItemTagsPath``):
``digiKam:TagsList`` (``/``), ``MicrosoftPhoto:LastKeywordXMP`` (``/``), ``lr:hierarchicalSubject`` (``|``; or
``lr:HierarchicalSubject``), ``mediapro:CatalogSets`` (``|``), ``acdsee:categories``, ``dc:subject`` (flat keywords),
then IPTC / EXIF keywords of the image itself. So adding ``pic/suggested`` to an *empty* ``TagsList`` would hide the
user's tags held in a later field: before adding pic's tag, ``TagsList`` is seeded with the tags digiKam reads now
(``digikam_tag_paths``). ACDSee's XML categories and embedded IPTC / EXIF keywords are not read by pic; a sidecar
whose only tags are there gets pic's tag in ``TagsList`` and keeps them in their own field.

Existing tags are kept in every field; a tag already there is not added twice. The sidecar is the one digiKam reads: ``IMG.ext.xmp``
by default, ``IMG.xmp`` with digiKam's "sidecar file names are compatible with commercial programs".
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Literal

from pic_plugin.core.errors import ConcurrentChangeError, SidecarError
from pic_plugin.core.suggestion import Suggestion
from pic_plugin.editors import crs, darktable, picns
from pic_plugin.editors.xmp import XmpDocument, new_item_like, parse_xmp, read_bytes, write_sidecar_atomic

NS_DIGIKAM = "http://www.digikam.org/ns/1.0/"
NS_LR = "http://ns.adobe.com/lightroom/1.0/"
NS_MICROSOFT_PHOTO = "http://ns.microsoft.com/photo/1.0/"
NS_MEDIAPRO = "http://ns.iview-multimedia.com/mediapro/1.0/"
NS_DC = "http://purl.org/dc/elements/1.1/"
SUGGESTED_TAG = ("pic", "suggested")

#: digiKam's XMP tag fields in its reading order: (namespace, property, separator of the tag path).
DIGIKAM_TAG_FIELDS: tuple[tuple[str, str, str], ...] = (
    (NS_DIGIKAM, "TagsList", "/"),
    (NS_MICROSOFT_PHOTO, "LastKeywordXMP", "/"),
    (NS_LR, "hierarchicalSubject", "|"),
    (NS_LR, "HierarchicalSubject", "|"),  # digiKam's alternative spelling of the same field
    (NS_MEDIAPRO, "CatalogSets", "|"),
    (NS_DC, "subject", "/"),
)

SidecarNaming = Literal["ext", "base"]


def sidecar_path(image: Path, naming: SidecarNaming = "ext") -> Path:
    """``IMG.ext.xmp`` (digiKam's default, shared with darktable) or ``IMG.xmp`` (the "compatible" setting)."""
    return darktable.sidecar_path(image) if naming == "ext" else crs.sidecar_path(image)


def tag_values(doc: XmpDocument) -> tuple[list[str], list[str]]:
    """(digiKam:TagsList, lr:hierarchicalSubject) as written in ``doc``."""
    def values(ns: str, name: str) -> list[str]:
        return [li.text() for li in doc.array_items(ns, name) or []]

    return values(NS_DIGIKAM, "TagsList"), values(NS_LR, "hierarchicalSubject")


def digikam_tag_paths(doc: XmpDocument) -> list[str]:
    """The tag paths (``/``-separated) digiKam reads from ``doc``: those of the first non-empty tag field."""
    for ns, name, separator in DIGIKAM_TAG_FIELDS:
        values = [t for li in doc.array_items(ns, name) or [] if (t := li.text().strip())]
        if values:
            return [v.replace(separator, "/") for v in values]
    return []


def add_tag(doc: XmpDocument, path: tuple[str, ...] = SUGGESTED_TAG) -> bool:
    """Add the tag ``path`` (e.g. ``("pic", "suggested")``) in both spellings; True if anything changed.

    An empty ``TagsList`` first gets the tags digiKam reads from the later fields, so they stay visible there.
    """
    changed = False
    if not [li for li in doc.array_items(NS_DIGIKAM, "TagsList") or [] if li.text().strip()]:
        user_tags = digikam_tag_paths(doc)
        if user_tags:
            container = doc.ensure_array(NS_DIGIKAM, "TagsList", "Seq", "digiKam")
            for text in dict.fromkeys(user_tags):
                item = new_item_like(container, None)
                item.node.children = [text]
            changed = True
    for ns, name, kind, prefix, text in (
        (NS_DIGIKAM, "TagsList", "Seq", "digiKam", "/".join(path)),
        (NS_LR, "hierarchicalSubject", "Bag", "lr", "|".join(path)),
    ):
        container = doc.ensure_array(ns, name, kind, prefix)
        if any(li.text() == text for li in container.elements()):
            continue
        item = new_item_like(container, None)
        item.node.children = [text]
        changed = True
    return changed


def write_digikam_suggestion(
    image: Path, suggestion: Suggestion, orientation: int, naming: SidecarNaming = "ext", retries: int = 3
) -> Path:
    """Tag ``image`` ``pic/suggested`` and record the suggestion in the sidecar digiKam reads. Returns its path.

    Read-modify-write with the XMP layer's concurrency check (digiKam or darktable may write the same file).
    """
    path = sidecar_path(image, naming)
    if os.path.abspath(path) == os.path.abspath(image):
        raise SidecarError(f"{os.fsdecode(path)}: the sidecar name is the image itself; refusing to write")
    for attempt in range(retries + 1):
        data, stamp = read_bytes(path)
        doc = parse_xmp(data, source=os.fsdecode(path)) if data is not None else XmpDocument.new()
        add_tag(doc)
        previous = picns.read_record(doc)
        record = picns.PicRecord.from_suggestion(suggestion, orientation, "suggested")
        if previous is not None:  # keep what pic applied in darktable / crs earlier
            record.darktable, record.crs = previous.darktable, previous.crs
        picns.write_record(doc, record)
        try:
            write_sidecar_atomic(path, doc.to_bytes(), stamp)
            return path
        except ConcurrentChangeError:
            if attempt == retries:
                raise
            time.sleep(0.05 * (attempt + 1))
    return path  # pragma: no cover
