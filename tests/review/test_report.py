"""``pic report --html``: a static contact sheet (plain HTML + images), safe with any file name."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image

from conftest import jpeg_bytes, make_photo
from pic_cli.main import cli

NAMES = ["a b.jpg", "<img src=x onerror=alert(1)>.jpg", "it's \"q\" $HOME & co.jpg", "new\nline.jpg"]


def test_report_is_a_static_sheet_with_the_crops_drawn(tmp_path: Path, catalog_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    photos = tmp_path / "photos"
    photos.mkdir()
    for i, name in enumerate(NAMES):
        (photos / name).write_bytes(jpeg_bytes(make_photo(seed=i)))
    (photos / "broken.jpg").write_bytes(b"not a jpeg")
    before = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in photos.iterdir()}
    out = tmp_path / "sheet"
    result = CliRunner().invoke(cli, ["report", str(photos), "--html", str(out), "--catalog", str(catalog_path),
                                      "-j", "1", "--ratio", "4:5"])
    assert result.exit_code == 1, result.output  # the broken file is reported, the sheet is still written
    assert "broken.jpg" in result.stderr
    assert f"4 photos in {out / 'index.html'}" in result.stdout

    html = (out / "index.html").read_text()
    assert "<script" not in html and "http://" not in html and "https://" not in html
    assert "&lt;img src=x onerror=alert(1)&gt;.jpg" in html and "onerror=alert(1)>" not in html
    assert "it&#x27;s &quot;q&quot; $HOME &amp; co.jpg" in html
    sources = re.findall(r'<img src="([^"]+)"', html)
    assert all(src.startswith("thumbs/") for src in sources)
    images = [src for src in sources if "-" not in src]  # the "before" pictures (after: -after, others: -altN)
    assert len(images) == 4 and len([src for src in sources if src.endswith("-after.jpg")]) == 4
    # Crops in pixels and ratio, never as normalized numbers; the header in words, not flags.
    assert len(re.findall(r"Crop to \d+ x \d+, 4:5", html)) == 4 and "0.0" not in html.replace("0.0.", "")
    assert "4 photos, pic suggests a crop for 4, no crop for 0, 0 of 4 suggestions reviewed." in html
    lines = [json.loads(x) for x in (out / "suggestions.jsonl").read_text().splitlines()]
    assert sorted(Path(r["path"]).name for r in lines) == sorted(NAMES)
    # Paths relative to the report's folder (shareable); they lead back to the photos from there.
    assert all(not Path(r["path"]).is_absolute() and (out / r["path"]).is_file() for r in lines)
    assert all(r["ratio"] == "4:5" and r["status"] == "suggested" for r in lines)
    # what pic framed, as in pic suggest --json (make_photo's one bright blob: a subject every time)
    assert all(len(r["subject"]) == 4 and "subject_kind" in r for r in lines)
    assert html.count("subject: ") == 4

    # The crop is burnt in: outside it the thumbnail is dimmed, inside it is not.
    row = next(r for r in lines if Path(r["path"]).name == "a b.jpg")
    sheet = Image.open(out / images[sorted(NAMES).index("a b.jpg")]).convert("L")
    left, top, right, bottom = row["crop"]
    w, h = sheet.size
    inside = sheet.getpixel((int((left + right) / 2 * w), int((top + bottom) / 2 * h)))
    assert left > 0.05 or right < 0.95  # a 4:5 crop of a 3:2 photo leaves a side out
    xs = int(left * w / 2) if left > 0.05 else int((1 + right) / 2 * w)
    outside = sheet.getpixel((xs, int((top + bottom) / 2 * h)))
    original = Image.open(photos / "a b.jpg").convert("L").resize((w, h))
    assert outside < 0.6 * original.getpixel((xs, int((top + bottom) / 2 * h))) + 2
    assert inside > 0.8 * original.getpixel((int((left + right) / 2 * w), int((top + bottom) / 2 * h))) - 10
    colour = Image.open(out / images[sorted(NAMES).index("a b.jpg")]).convert("RGB")
    sl, st, sr, sb = row["subject"]  # the subject's outline in the review page's yellow
    edge = colour.getpixel((int((sl + sr) / 2 * w), min(h - 1, int(st * h))))
    assert edge[0] > 200 and edge[1] > 170 and edge[2] < 120, edge

    # Nothing was written next to the photos.
    assert {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in photos.iterdir()} == before


def test_full_frame_reads_no_crop_suggested_and_own_crops_are_theirs(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from pic_plugin.core.geometry import Box
    from pic_plugin.review.report import ReportEntry, write_report

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    photo = tmp_path / "whole.jpg"
    photo.write_bytes(jpeg_bytes(make_photo(seed=3)))
    alt = [{"crop": [0.1, 0.1, 0.9, 0.9], "score": 0.01}]
    whole = {"crop": Box(0.0, 0.0, 1.0, 1.0), "score": 0.98, "ratio": "free", "alternatives": alt, "user": None,
             "model": "m", "status": "suggested"}
    mine = dict(whole, crop=Box(0.2, 0.0, 0.7333, 1.0))
    items = [ReportEntry(1, str(photo), "k", (3000, 2000), whole),
             ReportEntry(2, str(photo), "k", (3000, 2000), mine, Box(0.2, 0.0, 0.7333, 1.0), "darktable")]
    out = tmp_path / "sheet"
    write_report(items, out)
    html = (out / "index.html").read_text()
    first, second = html.split("<figure>")[1:]
    assert "No crop suggested: keep the full frame (3000 x 2000, 3:2)" in first
    assert "confidence" not in first and "-after.jpg" not in first  # no white frame, no percentage, no "after"
    assert "other crops:" in first and "2400 x 1600, 3:2" in first
    # The whole frame is shown as it is: not dimmed anywhere.
    sheet = Image.open(out / "thumbs" / "000001.jpg").convert("L")
    original = Image.open(photo).convert("L").resize(sheet.size)
    assert abs(sheet.getpixel((2, 2)) - original.getpixel((2, 2))) < 12
    assert "Your crop in darktable: 1600 x 2000, 4:5" in second and "other crops" not in second
    assert "2 photos, pic suggests a crop for 0, no crop for 1, 1 you cropped yourself" in html
