"""Remake the darktable sidecars of the demo's example photographer, Ada (pic_plugin/data/demo/*.jpg.xmp).

Ada is fictional. Her crops (below) are 4:5 portrait crops chosen for this demo: for six photos the 4:5 box
around pic's subject estimate, each looked at and kept because it frames the subject the way a person would;
for portrait_hat.jpg a crop placed by hand (the estimate's box cut off the hat). pic writes them as darktable
crop entries, then the real darktable (under Xvfb, a throw-away config) imports the folder and rewrites every
sidecar itself, with its default modules, its XMP toolkit and its timestamps: those are the files shipped.
Check that darktable renders them at 4:5: darktable-cli IMG.jpg IMG.jpg.xmp out.png.

    python scripts/make_demo_sidecars.py        # needs darktable and xvfb-run (Debian: apt-get install darktable xvfb)
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image, ImageOps

from pic_plugin.core.geometry import Box
from pic_plugin.core.orientation import read_exif_orientation
from pic_plugin.editors.user_crop import write_user_crop

DEMO = Path(__file__).resolve().parents[1] / "pic_plugin" / "data" / "demo"
#: Ada's crops, normalized (left, top, right, bottom) in the displayed frame.
CROPS = {
    "beach_couple.jpg": (0.1562, 0.1327, 0.6188, 1.0),
    "cat_upside_down.jpg": (0.1657, 0.0, 0.6979, 1.0),
    "coffee.jpg": (0.1833, 0.0, 0.7167, 1.0),
    "lighthouse_coast.jpg": (0.2458, 0.0, 0.7792, 1.0),
    "rafting.jpg": (0.1583, 0.0, 0.6917, 1.0),
    "sailboat.jpg": (0.0958, 0.0, 0.6292, 1.0),
    "portrait_hat.jpg": (0.0, 0.0, 1.0, 0.8333),
}


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="pic-demo-") as tmp:
        work = Path(tmp)
        photos, cfg = work / "photos", work / "cfg"
        photos.mkdir()
        cfg.mkdir()
        for name, crop in CROPS.items():
            shutil.copyfile(DEMO / name, photos / name)
            with Image.open(photos / name) as im:
                size = ImageOps.exif_transpose(im).size
            write_user_crop(photos / name, Box(*crop), read_exif_orientation(photos / name), targets=("darktable",),
                            size=size)
        # "on import": darktable writes each sidecar as soon as it has read it.
        (cfg / "darktablerc").write_text("write_sidecar_files=on import\nrun_crawler_on_start=FALSE\n")
        marker = work / "imported"
        lua = f'local dt = require "darktable"; local f = io.open("{marker}", "w"); f:write(#dt.database); f:close()'
        proc = subprocess.Popen(
            ["xvfb-run", "-a", "darktable", "--configdir", str(cfg), "--library", str(cfg / "library.db"),
             "--luacmd", lua, str(photos)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )
        try:
            deadline = time.monotonic() + 300
            while not marker.exists() and time.monotonic() < deadline and proc.poll() is None:
                time.sleep(0.5)
            time.sleep(2)  # the last sidecar is written after the import finishes
        finally:
            # darktable 4.2 does not quit promptly on request: end the process group this script started.
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(30)
        if not marker.exists():
            print("darktable did not import the photos", file=sys.stderr)
            return 1
        for name in CROPS:
            text = (photos / f"{name}.xmp").read_text()
            if "XMP Core" not in text:
                print(f"{name}: darktable did not rewrite the sidecar", file=sys.stderr)
                return 1
            (DEMO / f"{name}.xmp").write_text(text)
            print(f"{name}.xmp")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
