"""Loaders for the data pic trains and evaluates on.

``shared_data_dir()`` finds the development data (``../shared/data`` beside the checkout, or
``$PIC_SHARED_DATA``). Nothing from it ships in the package: the photos are mostly research-only.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from pic_plugin.core.geometry import Box

REPO_ROOT = Path(__file__).resolve().parents[2]


def shared_data_dir() -> Path | None:
    """The shared development data folder, or None when this checkout has none."""
    env = os.environ.get("PIC_SHARED_DATA")
    candidates = [Path(env)] if env else []
    candidates.append(REPO_ROOT.parent / "shared" / "data")
    for c in candidates:
        if (c / "photos").is_dir():
            return c
    return None


def stable_fold(key: str, folds: int = 5) -> int:
    """A fixed fold for ``key`` (same on every machine and Python run)."""
    return int(hashlib.sha1(key.encode()).hexdigest()[:8], 16) % folds


@dataclass(frozen=True)
class SubjectPhoto:
    """A real photo with a human-annotated main-subject mask."""

    image: Path
    mask: Path
    size: tuple[int, int]  # (W, H) as stored (these photos carry no EXIF rotation)
    subject_box: Box  # normalized tight box of the mask
    area_fraction: float
    group: str  # photos of the same scene share a group (BSDS ids appear in two mask sets)

    @property
    def split(self) -> str:
        """'test' for a fixed ~20% of scenes, else 'train'. Every model here trains on 'train' only."""
        return "test" if stable_fold(self.group) == 0 else "train"


def resolve_link_file(path: Path) -> Path:
    """Follow a symbolic link that was stored as a tiny text file holding its relative target."""
    try:
        if path.is_file() and path.stat().st_size < 512:
            target = path.read_bytes().decode("utf-8").strip()
            if target and "\n" not in target and not target.startswith("\x89"):
                resolved = (path.parent / target).resolve()
                if resolved.is_file():
                    return resolved
    except (OSError, UnicodeDecodeError):
        pass
    return path


def subject_photos(root: Path | None = None) -> list[SubjectPhoto]:
    """All photos with human subject masks (SOD, RITM Berkeley, RITM COCO), in a fixed order."""
    root = root or shared_data_dir()
    if root is None:
        return []
    photos_dir = root / "photos"
    table = json.loads((photos_dir / "derived_subject_boxes.json").read_text())
    out: list[SubjectPhoto] = []
    for source in sorted(table):
        for key, info in sorted(table[source].items()):
            # Most sets are keyed by image; RITM Berkeley by mask (one image can have two masks).
            image, mask = (info["image"], key) if "image" in info else (key, info["mask"])
            w, h = info["size_wh"]
            x0, y0, x1, y1 = info["box_x1y1x2y2"]
            stem = Path(image).stem
            # SOD and RITM Berkeley annotate the same BSDS photos: group by photo, not by mask set.
            group = f"coco:{stem.split('_')[-1]}" if source.startswith("ritm-coco") else f"bsds:{stem}"
            out.append(
                SubjectPhoto(
                    image=resolve_link_file(photos_dir / image),
                    mask=photos_dir / mask,
                    size=(int(w), int(h)),
                    subject_box=Box(x0 / w, y0 / h, x1 / w, y1 / h),
                    area_fraction=float(info["area_fraction"]),
                    group=group,
                )
            )
    return out


# --- public cropping datasets (annotation files; images only where the user owns them) -----------------------
#
# Boxes are returned in pixels as (x1, y1, x2, y2) of the image the annotation was made on; ``normalized`` turns
# them into pic's Box when the image size is known.


@dataclass
class ScoredCrops:
    """One image of a dataset with scored candidate crops (GAICD: mean opinion score 1-5 of 7 raters)."""

    name: str
    boxes: list[tuple[float, float, float, float]]  # pixels, x1 y1 x2 y2
    scores: list[float]
    image: Path | None = None  # the image file, when present
    size: tuple[int, int] | None = None  # (W, H) when known
    split: str | None = None

    def normalized(self, size: tuple[int, int] | None = None) -> list[Box]:
        w, h = size or self.size or (0, 0)
        if not w or not h:
            raise ValueError(f"{self.name}: image size unknown; pass size=")
        return [Box(x1 / w, y1 / h, x2 / w, y2 / h).clamped() for x1, y1, x2, y2 in self.boxes]

    @property
    def best(self) -> tuple[float, float, float, float]:
        return self.boxes[max(range(len(self.scores)), key=self.scores.__getitem__)]


def _find(root: Path, *names: str) -> Path | None:
    for name in names:
        for candidate in (root / name, root / "annotations" / name):
            if candidate.exists():
                return candidate
    return None


def load_gaicd(root: Path) -> dict[str, ScoredCrops]:
    """GAICD scored crops, from either layout:

    - JSON (``bcmi_image_crop.json`` / ``image_crop.json``: ``{"name.jpg": {"bbox": [[x1,y1,x2,y2]...], "score":
      [...]}}``, or the ``{"image_size_wh", "bbox_x1y1x2y2", "mos"}`` variant), with the split from
      ``*original_data_split.json`` when present;
    - the original release: ``annotations/{train,test}/NAME.txt`` (or ``annotations/NAME.txt``), one crop per line
      ``y1 x1 y2 x2 MOS`` (GAIC's row-first order; MOS -2 marks an invalid crop), images in
      ``images/{train,test}/NAME.jpg``.
    Images are attached when found under ``root/images``.
    """
    root = Path(root)
    out: dict[str, ScoredCrops] = {}
    json_file = _find(root, "bcmi_image_crop.json", "image_crop.json") if root.is_dir() else root
    if json_file is not None and json_file.suffix == ".json":
        data = json.loads(json_file.read_text())
        split_file = _find(json_file.parent, "bcmi_original_data_split.json", "original_data_split.json")
        split_of: dict[str, str] = {}
        if split_file is not None:
            for split, names in json.loads(split_file.read_text()).items():
                split_of.update({n: split for n in names})
        for name, item in data.items():
            boxes = item.get("bbox", item.get("bbox_x1y1x2y2"))
            scores = item.get("score", item.get("mos"))
            size = tuple(item["image_size_wh"]) if "image_size_wh" in item else None
            pixel_boxes = [(float(b[0]), float(b[1]), float(b[2]), float(b[3])) for b in boxes]
            out[name] = ScoredCrops(name, pixel_boxes, [float(v) for v in scores], size=size, split=split_of.get(name))
    else:
        ann = root / "annotations"
        for txt in sorted(ann.rglob("*.txt")) if ann.is_dir() else []:
            boxes, scores = [], []
            for line in txt.read_text().splitlines():
                parts = line.split()
                if len(parts) < 5 or float(parts[4]) == -2:
                    continue
                y1, x1, y2, x2, mos = map(float, parts[:5])
                boxes.append((x1, y1, x2, y2))
                scores.append(mos)
            split = txt.parent.name if txt.parent != ann else None
            out[txt.stem + ".jpg"] = ScoredCrops(txt.stem + ".jpg", boxes, scores, split=split)
    for name, item in out.items():
        for folder in (root / "images", root / "images" / (item.split or ""), root.parent / "images"):
            if (folder / name).is_file():
                item.image = folder / name
                if item.size is None:
                    from PIL import Image

                    with Image.open(item.image) as im:
                        item.size = im.size
                break
    return out


@dataclass
class ExpertCrop:
    """One image with one reference crop (FCDB's expert crop)."""

    name: str
    box: tuple[float, float, float, float]  # pixels, x1 y1 x2 y2
    split: str | None = None
    url: str | None = None


def load_fcdb(root: Path) -> list[ExpertCrop]:
    """FCDB: ``cropping_{training,testing}_set.json`` (``crop`` = [x, y, w, h] on the Flickr image at ``url``),
    or the ``bcmi_image_crop.json`` form (``{"name.jpg": [x1, y1, x2, y2]}``)."""
    root = Path(root)
    out: list[ExpertCrop] = []
    for split, file_name in (("train", "cropping_training_set.json"), ("test", "cropping_testing_set.json")):
        f = _find(root, file_name)
        if f is None:
            continue
        for item in json.loads(f.read_text()):
            x, y, w, h = map(float, item["crop"])
            name = str(item.get("url", "")).rsplit("/", 1)[-1] or str(item["flickr_photo_id"])
            out.append(ExpertCrop(name, (x, y, x + w, y + h), split, item.get("url")))
    if not out:
        f = _find(root, "bcmi_image_crop.json", "image_crop.json")
        if f is not None:
            split_of: dict[str, str] = {}
            split_file = _find(f.parent, "bcmi_data_split.json", "data_split.json")
            if split_file is not None:
                for split, names in json.loads(split_file.read_text()).items():
                    split_of.update({n: split for n in names})
            for name, box in json.loads(f.read_text()).items():
                out.append(ExpertCrop(name, tuple(map(float, box)), split_of.get(name)))  # type: ignore[arg-type]
    return out


def load_flms(root: Path) -> dict[str, list[tuple[float, float, float, float]]]:
    """FLMS: up to 10 workers' crops per image (``bcmi_image_crop.json``: ``{"name.jpg": [[x1,y1,x2,y2], ...]}``)."""
    f = _find(Path(root), "bcmi_image_crop.json", "image_crop.json") if Path(root).is_dir() else Path(root)
    if f is None:
        raise FileNotFoundError(f"no FLMS crop file under {root}")
    return {name: [tuple(map(float, b)) for b in boxes] for name, boxes in json.loads(f.read_text()).items()}  # type: ignore[misc]


@dataclass
class PerUserImage:
    """One image of the personalized-cropping paper's per-user CSV: candidate crops and the user's choices."""

    user: str
    name: str
    boxes: list[tuple[float, float, float, float]]  # pixels, x1 y1 x2 y2 (CPC's 24 candidates)
    scores: list[float]  # 4 / 3 / 2 = the user's 1st / 2nd / 3rd choice (inferred; 0 = not chosen)
    order_pre: list[int]
    order_final: list[int]

    @property
    def chosen(self) -> tuple[float, float, float, float] | None:
        """The user's first choice (highest score), or None when the user chose nothing."""
        if not self.scores or max(self.scores) <= 0:
            return None
        return self.boxes[max(range(len(self.scores)), key=self.scores.__getitem__)]


def load_pic_user_csv(path: Path, user: str | None = None) -> list[PerUserImage]:
    """The paper's per-user CSV (``name,bbox,score,order_pre,order_final``; bbox = "[x1, y1, x2, y2]")."""
    import csv

    path = Path(path)
    user = user or path.stem.removesuffix("_train").removesuffix("_test")
    images: dict[str, PerUserImage] = {}
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        missing = {"name", "bbox", "score"} - set(reader.fieldnames or [])
        if missing:
            raise ValueError(f"{path}: not a per-user crop CSV (missing columns {sorted(missing)})")
        for row in reader:
            box = json.loads(row["bbox"])
            if len(box) != 4:
                raise ValueError(f"{path}: bad bbox {row['bbox']!r}")
            item = images.setdefault(row["name"], PerUserImage(user, row["name"], [], [], [], []))
            item.boxes.append(tuple(map(float, box)))  # type: ignore[arg-type]
            item.scores.append(float(row["score"]))
            item.order_pre.append(int(float(row.get("order_pre") or 0)))
            item.order_final.append(int(float(row.get("order_final") or 0)))
    return list(images.values())
