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
    images = re.findall(r'<img src="([^"]+)"', html)
    assert len(images) == 4 and all(src.startswith("thumbs/") for src in images)
    lines = [json.loads(x) for x in (out / "suggestions.jsonl").read_text().splitlines()]
    assert sorted(Path(r["path"]).name for r in lines) == sorted(NAMES)
    assert all(r["ratio"] == "4:5" and r["status"] == "suggested" for r in lines)

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

    # Nothing was written next to the photos.
    assert {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in photos.iterdir()} == before
