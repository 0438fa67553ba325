"""``pic report --html DIR``: a static contact sheet of a batch's suggestions, for sharing or archiving.

``DIR/index.html`` is plain HTML + CSS (no script, nothing loaded from outside, relative links only) with one
card per photo: a thumbnail with the crop burnt in (outside dimmed, the suggestion outlined, alternatives
dashed), the ratio, the confidence and the review status. ``DIR/thumbs/`` holds the images, ``DIR/
suggestions.jsonl`` the same data in the JSON-lines contract of DESIGN section 3. Thumbnails come from the
shared cache (``thumbnails.py``), so a report after a review decodes nothing again.
"""

from __future__ import annotations

import html
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw

from pic_plugin.core.atomic import atomic_path, write_bytes_atomic
from pic_plugin.core.errors import PicError
from pic_plugin.core.geometry import Box
from pic_plugin.imaging.thumbnails import GRID_SIZE, ThumbnailCache
from pic_plugin.library.catalog import Catalog

DIM = 0.45  # brightness kept outside the crop
CROP_COLOUR = (255, 255, 255)
DECIDED_COLOUR = (95, 206, 122)
ALT_COLOUR = (255, 204, 51)

CSS = """
body { margin: 0; background: #1b1c1e; color: #e8e8e8; font: 14px/1.35 system-ui, sans-serif; }
header { padding: .6em 1em; background: #111214; border-bottom: 1px solid #333; }
h1 { font-size: 18px; margin: 0 0 .2em; }
header p { margin: 0; color: #9a9ea4; }
main { display: grid; grid-template-columns: repeat(auto-fill, minmax(240px, 1fr)); gap: 12px; padding: 12px; align-items: start; }
a { color: #ffcc33; }
figure { margin: 0; background: #26282b; border-radius: 6px; padding: 6px; }
img { width: 100%; height: auto; display: block; border-radius: 3px; }
figcaption { padding-top: 5px; }
.name { display: block; overflow-wrap: anywhere; }
.meta { color: #9a9ea4; font-size: 12px; }
.status { border-radius: 3px; padding: 0 .35em; font-size: 11px; background: #3a3d41; }
.accepted, .adjusted { background: #2c5a37; }
.rejected { background: #6a2b2b; }
.error { color: #ef6b6b; }
"""


@dataclass
class ReportEntry:
    image_id: int
    path: str
    content_key: str
    size: tuple[int, int]
    suggestion: dict[str, Any]
    user_crop: Box | None = None


@dataclass
class ReportResult:
    index: Path
    photos: int
    failed: list[tuple[str, str]]


def entries(catalog: Catalog, paths: Iterable[Path], user: str | None, ratio: str) -> list[ReportEntry]:
    """The catalog's suggestions for the photos under ``paths`` (photos without one are left out)."""
    from pic_plugin.library.scan import iter_images

    out = []
    for path in iter_images(list(paths)):
        rec = catalog.image(path)
        if rec is None or rec.error or not rec.content_key:
            continue
        sugg = catalog.suggestion(rec.id, user, ratio)
        if sugg is None:
            continue
        mine = None
        if user is not None and sugg["status"] in ("accepted", "adjusted"):
            row = catalog.user_crop(user, rec.content_key, "review")
            mine = row["crop"] if row is not None and row["weight"] > 0 else None
        out.append(ReportEntry(rec.id, rec.path, rec.content_key, (rec.width or 0, rec.height or 0), sugg, mine))
    return out


def write_report(
    items: list[ReportEntry],
    out_dir: Path,
    thumbnails: ThumbnailCache | None = None,
    title: str = "pic contact sheet",
    size: int = GRID_SIZE,
) -> ReportResult:
    """Write ``out_dir/index.html``, ``thumbs/`` and ``suggestions.jsonl``. Originals are only read."""
    thumbnails = thumbnails or ThumbnailCache()
    out_dir.mkdir(parents=True, exist_ok=True)
    thumbs = out_dir / "thumbs"
    thumbs.mkdir(exist_ok=True)
    cards: list[str] = []
    lines: list[str] = []
    failed: list[tuple[str, str]] = []
    for item in items:
        name = os.path.basename(item.path)
        rel = f"thumbs/{item.image_id:06d}.jpg"
        try:
            base = Image.open(thumbnails.get(Path(item.path), item.content_key, size)).convert("RGB")
            _save_atomic(overlay(base, item), out_dir / rel)
        except (PicError, OSError) as exc:
            failed.append((item.path, str(exc)))
            cards.append(f'<figure><figcaption><span class="name">{_esc(name)}</span>'
                         f'<span class="error">{_esc(str(exc))}</span></figcaption></figure>')
            continue
        cards.append(_card(item, name, rel, base.size))
        lines.append(json.dumps(_json_line(item), ensure_ascii=False))
    decided = sum(1 for i in items if i.suggestion["status"] != "suggested")
    doc = (
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; img-src 'self'; "
        "style-src 'unsafe-inline'\">"
        f"<title>{_esc(title)}</title><style>{CSS}</style></head><body>"
        f"<header><h1>{_esc(title)}</h1><p>{len(items)} photos, {decided} reviewed. The white frame is pic's "
        "crop (green: the one you accepted or adjusted), dashed yellow frames are the alternatives; the "
        "percentage is pic's confidence. Data: <a href=\"suggestions.jsonl\">suggestions.jsonl</a>.</p></header>"
        f"<main>{''.join(cards)}</main></body></html>\n"
    )
    _write_text(out_dir / "suggestions.jsonl", "\n".join(lines) + ("\n" if lines else ""))
    index = out_dir / "index.html"
    _write_text(index, doc)
    return ReportResult(index, len(items) - len(failed), failed)


def overlay(img: Image.Image, item: ReportEntry) -> Image.Image:
    """``img`` (upright thumbnail) with the crop burnt in: outside dimmed, outlines for crop and alternatives."""
    w, h = img.size
    crop = item.user_crop or item.suggestion["crop"]
    x0, y0, x1, y1 = _px(crop, w, h)
    dimmed = Image.eval(img, lambda v: int(v * DIM))
    mask = Image.new("L", img.size, 0)
    ImageDraw.Draw(mask).rectangle([x0, y0, x1 - 1, y1 - 1], fill=255)
    out = Image.composite(img, dimmed, mask)
    draw = ImageDraw.Draw(out)
    line = max(1, round(min(w, h) / 160))
    for alt in item.suggestion["alternatives"]:
        _dashed(draw, _px(Box(*alt["crop"]), w, h), ALT_COLOUR, line)
    colour = DECIDED_COLOUR if item.suggestion["status"] in ("accepted", "adjusted") else CROP_COLOUR
    draw.rectangle([x0, y0, x1 - 1, y1 - 1], outline=colour, width=line + 1)
    return out


def _px(box: Box, w: int, h: int) -> tuple[int, int, int, int]:
    return Box(*box).to_pixels((w, h))


def _dashed(draw: ImageDraw.ImageDraw, rect: tuple[int, int, int, int], colour: tuple[int, int, int], width: int) -> None:
    x0, y0, x1, y1 = rect
    x1, y1 = x1 - 1, y1 - 1
    dash = 6 * width
    for a, b, fixed, horizontal in ((x0, x1, y0, True), (x0, x1, y1, True), (y0, y1, x0, False), (y0, y1, x1, False)):
        for s in range(a, b, 2 * dash):
            e = min(s + dash, b)
            draw.line([(s, fixed), (e, fixed)] if horizontal else [(fixed, s), (fixed, e)], fill=colour, width=width)


def _card(item: ReportEntry, name: str, rel: str, size: tuple[int, int]) -> str:
    s = item.suggestion
    status = s["status"]
    score = f"{round(float(s['score']) * 100)}%" if s["score"] is not None else "–"
    crop = item.user_crop or s["crop"]
    numbers = ", ".join(f"{v:.3f}" for v in crop)
    label = "to review" if status == "suggested" else status
    return (
        f'<figure><img src="{_esc(rel)}" width="{size[0]}" height="{size[1]}" loading="lazy" alt="{_esc(name)}">'
        f'<figcaption><span class="name">{_esc(name)}</span><span class="meta">{_esc(s["ratio"])} · '
        f'confidence {score} · <span class="status {_esc(status)}">{_esc(label)}</span> · [{numbers}]</span>'
        "</figcaption></figure>"
    )


def _json_line(item: ReportEntry) -> dict[str, Any]:
    s = item.suggestion
    out = {
        "path": item.path,
        "crop": s["crop"].as_list(),
        "score": round(float(s["score"] or 0.0), 4),
        "ratio": s["ratio"],
        "alternatives": s["alternatives"],
        "user": s["user"] or None,
        "model": s["model"],
        "size": list(item.size),
        "status": s["status"],
    }
    if item.user_crop is not None:
        out["user_crop"] = item.user_crop.as_list()
    return out


def _esc(text: str) -> str:
    # Names may hold any character (quotes, newlines, undecodable bytes as surrogates): escape, never trust.
    return html.escape(text.encode("utf-8", "backslashreplace").decode("utf-8"), quote=True)


def _write_text(path: Path, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8", "backslashreplace"))


def _save_atomic(img: Image.Image, path: Path) -> None:
    with atomic_path(path) as tmp:
        img.save(tmp, "JPEG", quality=85)
