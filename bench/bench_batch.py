#!/usr/bin/env python3
"""Seconds per 24-megapixel JPEG: pic against smartcrop.py, libvips attention smartcrop and decode alone.

All on the same files, in the same run, one core each (torch, OpenCV and libvips limited to one thread),
so the ratios compare the work, not the threading. Then ``pic batch --jobs N`` end to end (catalog, workers)
for throughput on all cores. The test photos are real photographs (``../shared/data`` Wikimedia set, or the
bundled demo photos) upscaled to 6000 x 4000 with a little grain so that they decode like camera JPEGs.

    python bench/bench_batch.py [--files 8] [--keep DIR]

Needs the ``bench`` extra (smartcrop, pyvips) and Debian's libvips.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ["VIPS_CONCURRENCY"] = "1"  # before pyvips loads libvips
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from pic_plugin.analysis.extract import set_single_threaded, tune_allocator  # noqa: E402
from pic_plugin.analysis.suggest import suggest  # noqa: E402
from pic_plugin.core.geometry import FREE  # noqa: E402
from pic_plugin.imaging.decode import decode  # noqa: E402
from pic_plugin.library.analyze import analyze_file  # noqa: E402
from pic_plugin.model import scorers  # noqa: E402
from pic_plugin.research.datasets import shared_data_dir  # noqa: E402

SIZE = (6000, 4000)


def source_photos() -> list[Path]:
    root = shared_data_dir()
    if root is not None:
        photos = sorted((root / "photos" / "wikimedia-commons-zelex").glob("*.jpg"))
        if photos:
            return photos
    return sorted((Path(__file__).resolve().parent.parent / "pic_plugin" / "data" / "demo").glob("*.jpg"))


def make_files(folder: Path, n: int) -> list[Path]:
    rng = np.random.default_rng(0)
    out = []
    for i, src in enumerate(source_photos()[:n]):
        img = Image.open(src).convert("RGB")
        size = SIZE if img.width >= img.height else SIZE[::-1]
        big = np.asarray(img.resize(size, Image.Resampling.LANCZOS), dtype=np.int16)
        grain = rng.normal(0, 3, size=big.shape[:2] + (1,)).astype(np.int16)
        path = folder / f"bench_{i:02d}.jpg"
        Image.fromarray(np.clip(big + grain, 0, 255).astype(np.uint8)).save(path, quality=92)
        out.append(path)
    return out


def per_image(fn, files: list[Path]) -> float:  # type: ignore[no-untyped-def]
    fn(files[0])  # warm-up (model loading, caches)
    times = []
    for f in files:
        t0 = time.perf_counter()
        fn(f)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--files", type=int, default=8)
    ap.add_argument("--keep", type=Path, help="Keep the generated 24 MP files in this folder.")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    args = ap.parse_args()

    import pyvips
    import smartcrop

    set_single_threaded()
    tune_allocator()  # process-wide: every contender below runs with the same allocator settings
    folder = args.keep or Path(tempfile.mkdtemp(prefix="pic-bench-"))
    folder.mkdir(parents=True, exist_ok=True)
    files = sorted(folder.glob("bench_*.jpg")) or make_files(folder, args.files)
    scorer = scorers.load()  # the default: the learned pic scorer (generic prior)
    baseline = scorers.load("composition")
    print(f"{len(files)} JPEGs of {SIZE[0]}x{SIZE[1]} ({sum(f.stat().st_size for f in files) / len(files) / 1e6:.1f} MB each) in {folder}")

    def pic(f: Path) -> None:  # what a batch worker does for a new photo (no catalog cache)
        suggest(analyze_file(f).analysis, scorer, FREE)

    def pic_fast(f: Path) -> None:  # pic batch --fast: no object detector
        suggest(analyze_file(f, fast=True).analysis, scorer, FREE)

    def pic_composition(f: Path) -> None:  # the same with the explicit composition baseline
        suggest(analyze_file(f).analysis, baseline, FREE)

    def decode_only(f: Path) -> None:  # the same reduced-size decode pic does, and nothing else
        decode(f, oversize=1.5)

    def vips_attention(f: Path) -> None:
        pyvips.Image.thumbnail(str(f), 512, height=512, crop="attention").write_to_buffer(".jpg")

    cropper = smartcrop.SmartCrop()

    def smartcrop_py(f: Path) -> None:
        with Image.open(f) as im:
            cropper.crop(im.convert("RGB"), 100, 100)

    results = {
        "reduced-size decode alone (pic_plugin.imaging.decode)": per_image(decode_only, files),
        "pic (decode + CNN + faces + objects + scoring), 1 core": per_image(pic, files),
        "pic --fast (no object detector), 1 core": per_image(pic_fast, files),
        "pic --scorer composition, 1 core": per_image(pic_composition, files),
        "libvips thumbnail --smartcrop attention, 1 thread": per_image(vips_attention, files),
        "smartcrop.py, 1 core": per_image(smartcrop_py, files[: max(2, len(files) // 2)]),
    }
    width = max(map(len, results))
    for name, sec in results.items():
        print(f"{name:<{width}}  {sec * 1000:8.1f} ms/image")
    pic_s = results["pic (decode + CNN + faces + objects + scoring), 1 core"]
    fast_s = results["pic --fast (no object detector), 1 core"]
    print()
    print(f"pic / decode alone : {pic_s / results['reduced-size decode alone (pic_plugin.imaging.decode)']:.2f}x  (target <= 3x)")
    print(f"pic / libvips      : {pic_s / results['libvips thumbnail --smartcrop attention, 1 thread']:.2f}x  (target < 1x)")
    print(f"pic / smartcrop.py : {pic_s / results['smartcrop.py, 1 core']:.2f}x")
    print(f"pic --fast / libvips: {fast_s / results['libvips thumbnail --smartcrop attention, 1 thread']:.2f}x")

    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pic_cli.main", "batch", str(folder), "--no-write", "--jobs", str(args.jobs),
               "--catalog", os.path.join(tmp, "bench.db")]
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        wall = time.perf_counter() - t0
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        rerun = time.perf_counter() - t0
    print(f"pic batch --jobs {args.jobs} end to end (process start, catalog, workers): {wall / len(files) * 1000:.0f} ms/image, "
          f"{wall:.1f}s total; unchanged re-run {rerun:.2f}s total")
    return 0


if __name__ == "__main__":
    sys.exit(main())
