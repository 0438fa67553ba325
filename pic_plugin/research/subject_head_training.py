"""Training pic's subject head on human masks and on an offline teacher's pseudo-masks, and measuring it.

The head (``analysis.heads.FeatureHead``) learns from two kinds of targets:

- **human masks** of the main subject (SOD, RITM Berkeley, RITM COCO-MVal: ~500 masks on ~400 photos), binary;
- **teacher pseudo-masks** (``scripts/make_teacher_masks.py``: ISNet's foreground probability, kept soft) on
  every other photo it may train on, so the head sees ~800 photos of far more kinds than the human masks hold.

A photo with a human mask trains on that mask, never on the teacher's. ``leave_out`` drops every photo of one
annotation source (SOD and RITM Berkeley share BSDS photos: a photo is dropped when any left-out mask is on it),
human and teacher targets alike, so the left-out source is truly unseen (``scripts/measure_subject_loso.py``).

Backbone taps are cached on disk (``build/subject-taps/``): they only depend on the photo and the frozen
backbone, and every fold reuses them.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from pic_plugin.analysis import backbone
from pic_plugin.analysis.heads import FeatureHead, backbone_input
from pic_plugin.imaging.decode import decode
from pic_plugin.research.datasets import REPO_ROOT, SubjectPhoto

TAPS_CACHE = REPO_ROOT / "build" / "subject-taps"
TEACHER_DIR = REPO_ROOT / "build" / "teacher-masks"
TAPS_RECIPE = "taps-1"  # bump when backbone_input or the backbone change


@dataclass(frozen=True)
class Target:
    """One training photo and the mask it learns from."""

    image: Path  # the real photo file
    mask: Path
    soft: bool  # a teacher's probability (kept soft) rather than a human's binary mask
    sources: frozenset[str]  # annotation sources whose masks are on this photo (empty for teacher-only photos)


def photo_key(path: Path) -> str:
    return str(Path(path).resolve())


def annotation_source(photo: SubjectPhoto) -> str:
    """The annotation set of a mask: the folder under photos/ (SOD and RITM Berkeley share BSDS images)."""
    parts = photo.mask.parts
    return parts[parts.index("photos") + 1] if "photos" in parts else photo.mask.parent.name


def teacher_masks(teacher_dir: Path = TEACHER_DIR) -> dict[str, Path]:
    """Real photo path -> the teacher's mask, from the teacher run's manifest (empty when there is none)."""
    manifest_path = teacher_dir / "manifest.json"
    if not manifest_path.is_file():
        return {}
    manifest = json.loads(manifest_path.read_text())
    photos_dir = Path(manifest["photos_dir"])
    out: dict[str, Path] = {}
    for key, entry in manifest["photos"].items():
        mask = teacher_dir / entry["mask"]
        if mask.is_file():
            out[photo_key(photos_dir / key)] = mask
    return out


def build_targets(
    human: Sequence[SubjectPhoto],
    teacher: dict[str, Path],
    *,
    human_filter: Callable[[SubjectPhoto], bool] = lambda p: True,
    leave_out: str | None = None,
    exclude: Iterable[str] = (),
) -> list[Target]:
    """Training targets: each kept human mask, and a teacher mask for every other photo that has one.

    ``human_filter`` picks which human masks may train (e.g. the ``train`` split); a photo whose human masks are
    all filtered out does not fall back to the teacher (its photo is held out, not merely unlabelled).
    ``leave_out`` drops every photo that holds a mask of that source; ``exclude`` drops photos by key.
    """
    by_photo: dict[str, list[SubjectPhoto]] = {}
    for p in human:
        by_photo.setdefault(photo_key(p.image), []).append(p)
    dropped = set(exclude)
    if leave_out is not None:
        dropped |= {k for k, ps in by_photo.items() if any(annotation_source(p) == leave_out for p in ps)}
    targets: list[Target] = []
    for key, photos in sorted(by_photo.items()):
        if key in dropped:
            continue
        sources = frozenset(annotation_source(p) for p in photos)
        for p in photos:
            if human_filter(p):
                targets.append(Target(Path(key), p.mask, False, sources))
    for key, mask in sorted(teacher.items()):
        if key not in dropped and key not in by_photo:
            targets.append(Target(Path(key), mask, True, frozenset()))
    return targets


class TapCache:
    """Backbone taps per (photo, flip), computed once and kept on disk as float16."""

    def __init__(self, root: Path = TAPS_CACHE) -> None:
        self.root = root
        self._net: torch.nn.Module | None = None

    def _path(self, image: Path, flip: bool) -> Path:
        digest = hashlib.sha1(f"{TAPS_RECIPE}:{photo_key(image)}".encode()).hexdigest()[:20]
        return self.root / f"{digest}{'-flip' if flip else ''}.pt"

    def taps(self, image: Path, flip: bool = False) -> list[torch.Tensor]:
        path = self._path(image, flip)
        if path.is_file():
            return [t.float() for t in torch.load(path, weights_only=True)]
        if self._net is None:
            self._net = backbone.load_backbone()
        pixels = decode(image).pixels
        if flip:
            pixels = pixels[:, ::-1]
        with torch.no_grad():
            taps = [t.contiguous() for t in self._net(backbone_input(np.ascontiguousarray(pixels)))]
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        torch.save([t.half() for t in taps], tmp)
        tmp.replace(path)
        return [t.half().float() for t in taps]  # the same values a later cache hit gives


def mask_target(mask: Path, soft: bool, flip: bool, size: tuple[int, int]) -> torch.Tensor:
    """The mask as an h8 x w8 target (area-averaged; human masks binarized first)."""
    m = np.asarray(Image.open(mask).convert("L"), dtype=np.float32) / 255.0
    if not soft:
        m = (m >= 0.5).astype(np.float32)
    if flip:
        m = m[:, ::-1]
    t = torch.from_numpy(np.ascontiguousarray(m))[None, None]
    return F.adaptive_avg_pool2d(t, size)[0, 0]


SUBJECT_BRANCH = ("detail8.", "subject.")  # FeatureHead's parameters that only the subject map depends on


def dice_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    p = torch.sigmoid(logits)
    return 1 - (2 * (p * target).sum() + 1) / (p.sum() + target.sum() + 1)


def load_examples(
    targets: Sequence[Target], cache: TapCache, flips: bool = True
) -> list[tuple[list[torch.Tensor], torch.Tensor, float]]:
    """(taps, target, weight) for each target, and its mirror image when ``flips``."""
    out = []
    for t in targets:
        for flip in (False, True) if flips else (False,):
            taps = cache.taps(t.image, flip)
            h8, w8 = taps[0].shape[-2:]
            out.append((taps, mask_target(t.mask, t.soft, flip, (h8, w8)), 1.0))
    return out


def train_head(
    examples: Sequence[tuple[list[torch.Tensor], torch.Tensor, float]],
    epochs: int = 15,
    seed: int = 0,
    log: Callable[[str], None] = print,
    keep_map: FeatureHead | None = None,
) -> FeatureHead:
    """The feature head trained from scratch on ``examples`` (BCE + Dice per photo, AdamW, cosine schedule).

    ``keep_map``: start from that head and train only its subject branch (``detail8``, ``subject``); the reduced
    CNN map (``reduce*``) stays frozen as it is, so what the prior scores (it was trained on that map) does not move
    while the subject improves.
    """
    random.seed(seed)
    torch.manual_seed(seed)
    head = FeatureHead()
    if keep_map is not None:
        head.load_state_dict(keep_map.state_dict())
        for name, param in head.named_parameters():
            param.requires_grad_(name.startswith(SUBJECT_BRANCH))
    opt = torch.optim.AdamW([q for q in head.parameters() if q.requires_grad], lr=3e-3, weight_decay=1e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
    order = list(range(len(examples)))
    for epoch in range(epochs):
        head.train()
        random.shuffle(order)
        total = 0.0
        for i in order:
            taps, target, weight = examples[i]
            _, logits = head(taps)
            loss = weight * (F.binary_cross_entropy_with_logits(logits[0], target) + dice_loss(logits[0], target))
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item()
        sched.step()
        if epoch % 5 == 4 or epoch == epochs - 1:
            log(f"  epoch {epoch + 1}/{epochs}: train loss {total / max(1, len(order)):.4f}")
    head.eval()
    return head


def subject_map(head: FeatureHead, taps: list[torch.Tensor]) -> np.ndarray:
    """The head's subject probability (h8 x w8), as ``extract.analyze`` computes it."""
    with torch.inference_mode():
        _, logits = head(taps)
    return torch.sigmoid(logits[0]).numpy().astype(np.float32)
