"""darktable style files (``.dtstyle``): how pic hands a crop to a running darktable.

darktable 4.x's Lua API cannot edit an image's history directly, but it can import a style file
(``dt.styles.import``) and apply it (``dt.styles.apply``): darktable then *appends* the style's items to the
image's history, so every earlier edit stays (FORMATS.md 2.1). The Lua plugin asks pic for one style per image
and applies it. A style made from the image before the change (``image:create_style`` + ``dt.styles.export``)
tells pic what the crop was, so pic can refuse to replace the user's own crop and write the style that puts the
old crop back ("undo").

The layout below is what darktable 4.2 itself exports (checked by exporting a real style under Xvfb): one
``<plugin>`` per history item, ``<module>`` holding the module's params *version*, params in darktable's text
encoding (lowercase hex or ``gzNN`` base64), no whitespace between elements. ``<iop_list>`` is optional on import
(without it the image's own pipe order is used), so pic leaves it out.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape

from defusedxml import ElementTree as SafeET

from pic_plugin.core.atomic import write_bytes_atomic
from pic_plugin.core.errors import PicError
from pic_plugin.core.geometry import Box
from pic_plugin.editors.darktable.params import CropParams, crop_ratio_lock, encode_params

#: darktable 4.2's default blend params (blendop version 11). ``crop`` has no blending and ignores them, but the
#: style reader expects both fields; older/newer versions convert them with their legacy code.
DEFAULT_BLENDOP_PARAMS = "gz14eJxjYIAACQYYOOHEgAZY0QVwggZ7CB6pfNoAAE8gGQg="
DEFAULT_BLENDOP_VERSION = 11
CROP_MODVERSION = 1  # the portable 24-byte layout (FORMATS.md 1.6.5)
MAX_STYLE_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True)
class StyleItem:
    """One history item of a style, fields named as in the ``.dtstyle`` file."""

    num: int
    operation: str
    modversion: int
    op_params: str
    enabled: bool = True
    blendop_params: str = DEFAULT_BLENDOP_PARAMS
    blendop_version: int = DEFAULT_BLENDOP_VERSION
    multi_priority: int = 0
    multi_name: str = ""


@dataclass(frozen=True)
class Style:
    name: str
    description: str
    items: tuple[StyleItem, ...]

    def effective(self, operation: str, multi_priority: int = 0) -> StyleItem | None:
        """The item that decides ``operation``'s state: the last one by ``num`` (darktable replays in order)."""
        found = [i for i in self.items if i.operation == operation and i.multi_priority == multi_priority]
        return max(found, key=lambda i: i.num) if found else None

    def operations(self) -> set[str]:
        return {i.operation for i in self.items}


def crop_item(box: Box, enabled: bool = True, num: int = 0, ratio: str | None = None,
              frame: tuple[float, float] | None = None) -> StyleItem:
    """A ``crop`` v1 item for ``box`` (normalized edges in darktable's crop frame of pixel size ``frame``).

    ``ratio`` (the suggestion's ratio name) becomes the crop module's ratio lock, with the sign convention of
    ``crop_ratio_lock``; without a ratio (or frame size) the item is freehand 0/0 (never ``-1/-1``, which forces a
    square in some versions: FORMATS.md pitfall 2).
    """
    if not box.is_valid():
        raise PicError(f"invalid crop {box.as_list()}")
    ratio_n, ratio_d = crop_ratio_lock(ratio, box, frame)
    params = CropParams(box.left, box.top, box.right, box.bottom, ratio_n, ratio_d).encode(CROP_MODVERSION)
    return StyleItem(num, "crop", CROP_MODVERSION, encode_params(params), enabled)


def render_style(style: Style) -> bytes:
    """The ``.dtstyle`` document, byte-compatible in layout with darktable 4.2's own export."""
    parts = [
        '<?xml version="1.0" encoding="UTF-8"?>\n<darktable_style version="1.0"><info>',
        f"<name>{escape(style.name)}</name><description>{escape(style.description)}</description></info><style>",
    ]
    for it in style.items:
        parts.append(
            f"<plugin><num>{it.num}</num><module>{it.modversion}</module><operation>{escape(it.operation)}</operation>"
            f"<op_params>{escape(it.op_params)}</op_params><enabled>{int(it.enabled)}</enabled>"
            f"<blendop_params>{escape(it.blendop_params)}</blendop_params>"
            f"<blendop_version>{it.blendop_version}</blendop_version><multi_priority>{it.multi_priority}</multi_priority>"
            f"<multi_name>{escape(it.multi_name)}</multi_name></plugin>"
        )
    parts.append("</style></darktable_style>\n")
    return "".join(parts).encode("utf-8")


def write_style(path: Path, style: Style) -> Path:
    """Write ``style`` to ``path`` atomically (temp file + rename in the same folder)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_bytes_atomic(path, render_style(style))


def make_style(name: str, description: str, items: Iterable[StyleItem]) -> Style:
    """A style whose items are renumbered 0..n-1 in the given order (the order darktable appends them)."""
    numbered = tuple(
        StyleItem(n, i.operation, i.modversion, i.op_params, i.enabled, i.blendop_params, i.blendop_version,
                  i.multi_priority, i.multi_name)
        for n, i in enumerate(items)
    )
    return Style(name, description, numbered)


def _int(text: str | None, what: str) -> int:
    try:
        return int((text or "").strip())
    except ValueError:
        raise PicError(f"style item has a bad {what}: {text!r}") from None


def read_style(path: Path) -> Style:
    """Parse a ``.dtstyle`` file (darktable's export or pic's own) with a hardened XML parser."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise PicError(f"cannot read style {path}: {exc.strerror or exc}") from exc
    if len(data) > MAX_STYLE_BYTES:
        raise PicError(f"style {path} is larger than {MAX_STYLE_BYTES} bytes")
    try:
        root = SafeET.fromstring(data)
    except Exception as exc:  # defusedxml raises several types for hostile or broken XML
        raise PicError(f"style {path} is not a darktable style: {exc}") from exc
    if root.tag != "darktable_style":
        raise PicError(f"style {path} is not a darktable style (root <{root.tag}>)")
    items = []
    for plugin in root.iterfind("style/plugin"):
        items.append(
            StyleItem(
                num=_int(plugin.findtext("num"), "num"),
                operation=(plugin.findtext("operation") or "").strip(),
                modversion=_int(plugin.findtext("module"), "module version"),
                op_params=(plugin.findtext("op_params") or "").strip(),
                enabled=(plugin.findtext("enabled") or "0").strip() == "1",
                blendop_params=(plugin.findtext("blendop_params") or "").strip(),
                blendop_version=_int(plugin.findtext("blendop_version") or "0", "blendop version"),
                multi_priority=_int(plugin.findtext("multi_priority") or "0", "multi_priority"),
                multi_name=plugin.findtext("multi_name") or "",
            )
        )
    return Style(root.findtext("info/name") or "", root.findtext("info/description") or "", tuple(items))
