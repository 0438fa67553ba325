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

from .geometry import Box

REPO_ROOT = Path(__file__).resolve().parent.parent


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
