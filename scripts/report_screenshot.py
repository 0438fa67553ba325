"""The contact sheet of the demo, photographed in a real browser: docs/report.jpg.

    make demo && python scripts/report_screenshot.py [--report build/demo-report] [--chromium /usr/bin/chromium]

Opens the static ``index.html`` that ``pic report --html`` wrote (file://, nothing served) in Debian's chromium
driven by Playwright, and saves a full-width screenshot of its first screens.
"""

from __future__ import annotations

import argparse
from pathlib import Path

ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--report", type=Path, default=Path("build/demo-report"))
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    parser.add_argument("--out", type=Path, default=Path("docs/report.jpg"))
    parser.add_argument("--height", type=int, default=1500)
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=args.chromium, args=ARGS)
        page = browser.new_page(viewport={"width": 1440, "height": args.height})
        page.goto((args.report / "index.html").resolve().as_uri())
        page.wait_for_load_state("networkidle")
        page.screenshot(path=str(args.out))
        browser.close()
    print(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
