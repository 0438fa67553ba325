"""Make docs/review.png (and docs/review-large.png): the review page on the demo photos, in headless Chromium.

    python scripts/review_screenshot.py [--chromium /usr/bin/chromium] [--out docs]

Copies the demo photos to a temporary folder, runs the `pic review` pipeline on them (suggestions, nothing
written), serves the page on 127.0.0.1, and drives Debian's chromium with Playwright: accepts one suggestion's
first alternative with the keyboard (N, Enter), adjusts another by dragging a handle in the large view, then
takes the screenshots. Images are palette PNGs, well under 300 KB each.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from importlib import resources
from pathlib import Path

from PIL import Image

from pic_plugin.imaging.thumbnails import ThumbnailCache
from pic_plugin.library.batch import run_batch
from pic_plugin.library.catalog import Catalog
from pic_plugin.library.options import BatchOptions
from pic_plugin.review.server import ReviewServer
from pic_plugin.review.session import ReviewOptions, ReviewSession

ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]


def _wait(page, js: str, timeout: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not page.evaluate(js):
        if time.monotonic() > deadline:
            raise TimeoutError(js)
        time.sleep(0.05)


def _save_small(src: Path, dst: Path, width: int) -> None:
    img = Image.open(src).convert("RGB")
    if img.width > width:
        img = img.resize((width, round(img.height * width / img.width)), Image.Resampling.LANCZOS)
    img.quantize(colors=160, method=Image.Quantize.MEDIANCUT).save(dst, optimize=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    parser.add_argument("--out", type=Path, default=Path("docs"))
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        photos = tmp / "Photos"
        photos.mkdir()
        for item in (resources.files("pic_plugin") / "data" / "demo").iterdir():
            if item.name.endswith(".jpg"):
                with resources.as_file(item) as src:
                    shutil.copyfile(src, photos / item.name)
        with Catalog(tmp / "catalog.db") as catalog:
            run_batch([photos], BatchOptions(user="anna", write=False, jobs=1), catalog)
            session = ReviewSession.for_paths(catalog, [photos], ReviewOptions(user="anna"))
            server = ReviewServer(session, thumbnails=ThumbnailCache(tmp / "thumbs")).start()
            try:
                with sync_playwright() as p:
                    browser = p.chromium.launch(executable_path=args.chromium, args=ARGS)
                    page = browser.new_page(viewport={"width": 1280, "height": 860})
                    page.goto(server.url)
                    _wait(page, "() => document.body.dataset.ready === '1'")
                    _wait(page, "() => [...document.images].filter(i => i.closest('.card'))"
                                ".every(i => i.complete && i.naturalWidth > 0)")
                    page.keyboard.press("ArrowRight")  # cat: take pic's second idea
                    page.keyboard.press("n")
                    page.keyboard.press("Enter")
                    page.wait_for_selector("figure.card.accepted")
                    page.keyboard.press("ArrowRight")  # lighthouse: drag the crop a little tighter
                    page.keyboard.press("Space")
                    _wait(page, "() => document.getElementById('large-img').naturalWidth > 0")
                    h = page.locator("#editor .handle[data-h='ne']").bounding_box()
                    x, y = h["x"] + h["width"] / 2, h["y"] + h["height"] / 2
                    page.mouse.move(x, y)
                    page.mouse.down()
                    page.mouse.move(x - 40, y + 50, steps=6)
                    page.mouse.up()
                    args.out.mkdir(parents=True, exist_ok=True)
                    page.screenshot(path=str(tmp / "large.png"))
                    page.keyboard.press("Enter")
                    page.keyboard.press("Escape")
                    page.wait_for_selector("figure.card.adjusted")
                    page.keyboard.press("?")
                    page.evaluate("window.scrollTo(0, 0)")
                    time.sleep(0.3)
                    page.screenshot(path=str(tmp / "grid.png"))
                    browser.close()
            finally:
                server.stop()
        _save_small(tmp / "grid.png", args.out / "review.png", 1280)
        _save_small(tmp / "large.png", args.out / "review-large.png", 960)
    for name in ("review.png", "review-large.png"):
        print(f"{args.out / name}: {(args.out / name).stat().st_size // 1024} KB")


if __name__ == "__main__":
    main()
