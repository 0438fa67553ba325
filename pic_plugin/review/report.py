"""``pic report --html DIR``: a static contact sheet of a batch's suggestions, for sharing or archiving.

``DIR/index.html`` is plain HTML + CSS (no script, nothing loaded from outside, relative links only) with one
card per photo: a thumbnail with the crop burnt in (outside dimmed, the crop outlined) beside the cropped
result, the crop in pixels and ratio ("410 x 512, 4:5", or "no crop suggested" for the whole frame), the
alternatives as small pictures of their own, the subject pic framed (a thin yellow outline), the review status; the user's own crops are shown as theirs. ``DIR/thumbs/`` holds the images, ``DIR/
suggestions.jsonl`` the same data in the JSON-lines contract of DESIGN section 3. Thumbnails come from the
shared cache (``thumbnails.py``), so a report after a review decodes nothing again.
"""

from __future__ import annotations

import html
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw

from pic_plugin.core import jsontext
from pic_plugin.core.atomic import atomic_path, write_bytes_atomic
from pic_plugin.core.errors import PicError
from pic_plugin.core.geometry import Box, pixel_words
from pic_plugin.imaging.thumbnails import GRID_SIZE, ThumbnailCache
from pic_plugin.library.catalog import Catalog
from pic_plugin.library.pipeline import UNCROPPED_AREA

DIM = 0.45  # brightness kept outside the crop
CROP_COLOUR = (255, 255, 255)
DECIDED_COLOUR = (95, 206, 122)
SUBJECT_COLOUR = (255, 204, 51)  # the review page's subject outline colour

CSS = """
body { margin: 0; background: #1b1c1e; color: #e8e8e8; font: 14px/1.35 system-ui, sans-serif; }
header { padding: .6em 1em; background: #111214; border-bottom: 1px solid #333; }
h1 { font-size: 18px; margin: 0 0 .2em; }
header p { margin: 0; color: #9a9ea4; }
main { display: grid; grid-template-columns: repeat(auto-fill, minmax(340px, 1fr)); gap: 12px; padding: 12px; align-items: start; }
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
.pair { display: grid; grid-template-columns: 3fr 2fr; gap: 6px; align-items: center; }
.pair img + img { max-height: 220px; width: auto; max-width: 100%; margin: auto; }
.alts { display: flex; flex-wrap: wrap; gap: 8px; align-items: end; margin-top: 5px; }
.alt { display: flex; flex-direction: column; align-items: center; font-size: 11px; color: #9a9ea4; }
.alt img { width: auto; height: 56px; }
"""


@dataclass
class ReportEntry:
    image_id: int
    path: str
    content_key: str
    size: tuple[int, int]
    suggestion: dict[str, Any]
    user_crop: Box | None = None
    user_source: str = ""  # where the user's crop comes from: "review", "darktable", "crs", "digikam", ...

    @property
    def crop(self) -> Box:
        """The crop the sheet shows: the user's own when there is one, else pic's suggestion."""
        return Box(*(self.user_crop or self.suggestion["crop"]))

    @property
    def keeps_full_frame(self) -> bool:
        return self.crop.area >= UNCROPPED_AREA


@dataclass
class ReportResult:
    index: Path
    photos: int
    failed: list[tuple[str, str]]


def entries(catalog: Catalog, paths: Iterable[Path], user: str | None, ratio: str) -> list[ReportEntry]:
    """The catalog's suggestions for the photos under ``paths`` (photos without one are left out)."""
    from pic_plugin.library.scan import iter_images

    # The user's own crops (review decisions and the crops harvested from their editors), newest last.
    own: dict[str, dict[str, Any]] = {}
    if user is not None:
        for row in catalog.user_crops(user):
            if float(row["weight"]) > 0:
                own[row["content_key"]] = row
    out = []
    for path in iter_images(list(paths)):
        rec = catalog.image(path)
        if rec is None or rec.error or not rec.content_key:
            continue
        sugg = catalog.suggestion(rec.id, user, ratio)
        if sugg is None:
            continue
        row = own.get(rec.content_key)
        mine = row["crop"] if row is not None else None
        source = str(row["source"]) if row is not None else ""
        out.append(
            ReportEntry(rec.id, rec.path, rec.content_key, (rec.width or 0, rec.height or 0), sugg, mine, source)
        )
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
        stem = f"thumbs/{item.image_id:06d}"
        try:
            base = Image.open(thumbnails.get(Path(item.path), item.content_key, size)).convert("RGB")
            _save_atomic(base if item.keeps_full_frame else overlay(base, item), out_dir / f"{stem}.jpg")
            shots = {"before": f"{stem}.jpg"}
            if not item.keeps_full_frame:
                shots["after"] = f"{stem}-after.jpg"
                _save_atomic(base.crop(_px(item.crop, *base.size)), out_dir / shots["after"])
            # Alternatives as small pictures of their own: drawn over the photo they made an unreadable grid.
            alternatives = [] if item.user_crop is not None else item.suggestion["alternatives"]
            for n, alt in enumerate(alternatives, 1):
                _save_atomic(base.crop(_px(Box(*alt["crop"]), *base.size)), out_dir / f"{stem}-alt{n}.jpg")
                shots[f"alt{n}"] = f"{stem}-alt{n}.jpg"
        except (PicError, OSError) as exc:
            failed.append((item.path, str(exc)))
            cards.append(f'<figure><figcaption><span class="name">{_esc(name)}</span>'
                         f'<span class="error">{_esc(str(exc))}</span></figcaption></figure>')
            continue
        cards.append(_card(item, name, shots, base.size))
        lines.append(jsontext.dumps(_json_line(item, out_dir)))
    doc = (
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; img-src 'self'; "
        "style-src 'unsafe-inline'\">"
        f"<title>{_esc(title)}</title><style>{CSS}</style></head><body>"
        f"<header><h1>{_esc(title)}</h1><p>{_esc(header_line(items))}</p><p>Each photo as it is, with the crop "
        "outlined (outside dimmed), and after the crop; other crops pic considered are shown small below it. "
        "All the data: <a href=\"suggestions.jsonl\">suggestions.jsonl</a>.</p></header>"
        f"<main>{''.join(cards)}</main></body></html>\n"
    )
    _write_text(out_dir / "suggestions.jsonl", "\n".join(lines) + ("\n" if lines else ""))
    index = out_dir / "index.html"
    _write_text(index, doc)
    return ReportResult(index, len(items) - len(failed), failed)


def header_line(items: list[ReportEntry]) -> str:
    """The sheet in a photographer's words: how many photos pic crops, leaves whole, and the user cropped."""
    own = sum(1 for i in items if i.user_crop is not None and i.user_source != "review")
    pics = [i for i in items if i.user_crop is None or i.user_source == "review"]
    whole = sum(1 for i in pics if i.suggestion["crop"].area >= UNCROPPED_AREA)
    reviewed = sum(1 for i in pics if i.suggestion["status"] != "suggested")
    parts = [f"{len(items)} photos", f"pic suggests a crop for {len(pics) - whole}", f"no crop for {whole}"]
    if own:
        parts.append(f"{own} you cropped yourself")
    parts.append(f"{reviewed} of {len(pics)} suggestions reviewed")
    return ", ".join(parts) + "."


def overlay(img: Image.Image, item: ReportEntry) -> Image.Image:
    """``img`` (upright thumbnail) with the crop burnt in: outside dimmed, the crop outlined."""
    w, h = img.size
    x0, y0, x1, y1 = _px(item.crop, w, h)
    dimmed = Image.eval(img, lambda v: int(v * DIM))
    mask = Image.new("L", img.size, 0)
    ImageDraw.Draw(mask).rectangle([x0, y0, x1 - 1, y1 - 1], fill=255)
    out = Image.composite(img, dimmed, mask)
    draw = ImageDraw.Draw(out)
    line = max(1, round(min(w, h) / 160))
    colour = DECIDED_COLOUR if item.user_crop is not None else CROP_COLOUR
    draw.rectangle([x0, y0, x1 - 1, y1 - 1], outline=colour, width=line + 1)
    subject = item.suggestion.get("subject")
    if subject is not None:  # what pic framed: a thin outline, under the crop's in weight
        sx0, sy0, sx1, sy1 = _px(subject, w, h)
        draw.rectangle([sx0, sy0, sx1 - 1, sy1 - 1], outline=SUBJECT_COLOUR, width=line)
    return out


def _px(box: Box, w: int, h: int) -> tuple[int, int, int, int]:
    return Box(*box).to_pixels((w, h))


STATUS_WORDS = {"suggested": "to review", "accepted": "accepted", "adjusted": "adjusted", "rejected": "rejected"}
SOURCE_WORDS = {"darktable": "in darktable", "crs": "in Lightroom", "digikam": "in digiKam", "review": "on review"}


def _card(item: ReportEntry, name: str, shots: dict[str, str], size: tuple[int, int]) -> str:
    s = item.suggestion
    status = s["status"]
    if item.user_crop is not None and item.user_source != "review":
        what = f"Your crop {SOURCE_WORDS.get(item.user_source, '')}: {pixel_words(item.crop, item.size)}"
        chip = '<span class="status accepted">yours</span>'
    else:
        if item.keeps_full_frame:
            what = f"No crop suggested: keep the full frame ({pixel_words(item.crop, item.size)})"
        else:
            what = f"Crop to {pixel_words(item.crop, item.size)}"
            if s["score"] is not None and item.user_crop is None:
                what += f" · pic's confidence {round(float(s['score']) * 100)}%"
        chip = f'<span class="status {_esc(status)}">{_esc(STATUS_WORDS.get(status, status))}</span>'
    if s.get("subject") is not None:
        what += f" · subject: {s.get('subject_kind') or 'outlined'}"
    pictures = f'<img src="{_esc(shots["before"])}" width="{size[0]}" height="{size[1]}" loading="lazy" ' \
               f'alt="{_esc(name)} before" title="before">'
    if "after" in shots:
        pictures = f'<div class="pair">{pictures}<img src="{_esc(shots["after"])}" loading="lazy" ' \
                   f'alt="{_esc(name)} after" title="after"></div>'
    alts = [
        f'<span class="alt"><img src="{_esc(shots[f"alt{n}"])}" loading="lazy" alt="other crop {n}">'
        f'{_esc(pixel_words(Box(*alt["crop"]), item.size))}</span>'
        for n, alt in enumerate(s["alternatives"], 1)
        if f"alt{n}" in shots
    ]
    other = f'<div class="alts"><span class="meta">other crops:</span>{"".join(alts)}</div>' if alts else ""
    return (
        f"<figure>{pictures}<figcaption><span class=\"name\">{_esc(name)}</span>"
        f'<span class="meta">{_esc(what)} {chip}</span>{other}</figcaption></figure>'
    )


def _json_line(item: ReportEntry, out_dir: Path) -> dict[str, Any]:
    s = item.suggestion
    out = {
        # Relative to the report's folder, like its links: the sheet can be shared without the photos' full paths.
        "path": os.path.relpath(os.path.abspath(item.path), os.path.abspath(out_dir)),
        "crop": s["crop"].as_list(),
        "score": round(float(s["score"] or 0.0), 4),
        "ratio": s["ratio"],
        "alternatives": s["alternatives"],
        "user": s["user"] or None,
        "model": s["model"],
        "size": list(item.size),
        "subject": s["subject"].as_list() if s.get("subject") is not None else None,
        "subject_kind": s.get("subject_kind"),
        "status": s["status"],
    }
    if item.user_crop is not None:
        out["user_crop"] = item.user_crop.as_list()
        out["user_crop_source"] = item.user_source
    return out


def _esc(text: str) -> str:
    # Names may hold any character (quotes, newlines, undecodable bytes as surrogates): escape, never trust.
    return html.escape(text.encode("utf-8", "backslashreplace").decode("utf-8"), quote=True)


def _write_text(path: Path, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8", "backslashreplace"))


def _save_atomic(img: Image.Image, path: Path) -> None:
    with atomic_path(path) as tmp:
        img.save(tmp, "JPEG", quality=85)
