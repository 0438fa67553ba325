"""Training the PIC prior on many users' tasks (fine-tuning to one user is ``model.finetune``).

Prior (``train_prior``), jointly over many simulated users (``personas``) on real photos with human subject
masks, in episodes: a user, a support set of k of their crops (k = 0 included: the generic prior), a query set
of other photos. The user latent is built from the support set (and, sometimes, some of the user's profile
attributes); the loss on the query photos is listwise over candidates (soft targets from IoU with the user's
crop) plus a pairwise ranking term. Two self-supervised terms train the objective branch on real pixels:
- VFN (Chen et al. 2017): on well-composed photographs the photographer's full frame beats sub-windows of it
  (content head only, so the frame's geometry cannot be the shortcut);
- subject keeping: on photos with subject masks, crops that keep the annotated subject beat crops that cut it.

Only the ``train`` split of ``datasets.subject_photos()`` (and the unannotated well-composed photos) is used
here; the ``test`` split is for ``evaluation``.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from pic_plugin.analysis import candidate_features as cf
from pic_plugin.analysis.candidates import generate
from pic_plugin.analysis.features import ImageAnalysis
from pic_plugin.analysis.suggest import box_ious
from pic_plugin.core.geometry import FREE, Box
from pic_plugin.model.finetune import (
    soft_listwise,
)
from pic_plugin.model.network import PicNet, attribute_tokens
from pic_plugin.research.datasets import ScoredCrops, SubjectPhoto, shared_data_dir, stable_fold
from pic_plugin.research.feature_store import FeatureStore
from pic_plugin.research.personas import Persona, broad_family, design_family

PAIR_MARGIN = 1.0
#: Support-set sizes drawn for training episodes (0 = the generic prior).
EPISODE_K = (0, 0, 1, 2, 3, 5, 5, 8, 10, 10, 15, 20, 30, 50)
MAX_K = 50


def flip_box(box: Box) -> Box:
    return Box(1 - box.right, box.top, 1 - box.left, box.bottom)


# --- photos with precomputed candidate features -------------------------------------------------------------


@dataclass
class PhotoItem:
    """A training (or evaluation) photo with its candidates' features computed once."""

    key: str  # unique per photo and mirroring; persona crops are seeded by it
    path: Path
    flip: bool
    size: tuple[int, int]
    subject: Box  # annotated subject box (mirrored with the photo); only for making persona crops and metrics
    group: str
    analysis: ImageAnalysis
    ctx: cf.PhotoContext
    boxes: np.ndarray  # N x 4 free candidates
    content: torch.Tensor  # N x content_dim (float16, raw)
    geometry: torch.Tensor  # N x GEOMETRY_DIM (float16, raw)
    aspects: np.ndarray  # N pixel aspect of each candidate

    def features(self, boxes: np.ndarray) -> cf.CandidateFeatures:
        return cf.compute(self.ctx, boxes)


def photo_item(
    photo: SubjectPhoto, store: FeatureStore, flip: bool = False, subject_map: np.ndarray | None = None
) -> PhotoItem:
    """``subject_map``: replaces the analysis' subject map (out-of-fold maps for training photos)."""
    analysis = store.analysis(photo.image, flip=flip)
    if subject_map is not None:
        analysis = replace(analysis, subject=subject_map)
    ctx = cf.photo_context(analysis)
    pool = generate(analysis.size, FREE)
    feats = cf.compute(ctx, pool.boxes)
    w, h = analysis.size
    aspects = (pool.boxes[:, 2] - pool.boxes[:, 0]) * w / np.maximum((pool.boxes[:, 3] - pool.boxes[:, 1]) * h, 1e-9)
    key = f"{photo.image.name}|{photo.mask.name}" + ("|flip" if flip else "")
    return PhotoItem(
        key=key,
        path=photo.image,
        flip=flip,
        size=analysis.size,
        subject=flip_box(photo.subject_box) if flip else photo.subject_box,
        group=photo.group,
        analysis=analysis,
        ctx=ctx,
        boxes=pool.boxes,
        content=torch.from_numpy(feats.content).half(),
        geometry=torch.from_numpy(feats.geometry).half(),
        aspects=aspects.astype(np.float32),
    )


# --- out-of-fold subject maps ---------------------------------------------------------------------------------


def out_of_fold_subject_maps(
    photos: Sequence[SubjectPhoto],
    folds: int = 4,
    epochs: int = 12,
    seed: int = 0,
    teacher: bool = False,
    log: Callable[[str], None] = print,
    branch: bool = False,
) -> dict[tuple[str, bool], np.ndarray]:
    """Subject maps of the training photos from feature heads that never saw them (stacking).

    The shipped feature head was trained on these photos' masks, so its subject maps are much better on them than
    on new photos (box IoU 0.73 vs 0.58 on the test split). A prior trained on those maps would trust the subject
    map more than it deserves. Here ``folds`` heads are trained as ``scripts/train_feature_head.py`` does (same
    loss and schedule, the teacher's pseudo-masks of the unannotated photos too when ``teacher``), each without
    one fold of scenes, and each photo gets the map of the head that did not see it. Only the subject map is
    replaced; the CNN map stays the shipped head's (the one used at suggestion time). ``branch`` (with ``teacher``):
    each fold's head is first trained on the human masks alone, then only its subject branch on the teacher's masks
    too, its CNN map kept (as the shipped head was made: ``train_feature_head.py --keep-map``).
    Returns {(image path, mirrored): h8 x w8 map}.
    """
    from pic_plugin.research.datasets import subject_photos
    from pic_plugin.research.subject_head_training import (
        TapCache,
        build_targets,
        load_examples,
        photo_key,
        subject_map,
        teacher_masks,
        train_head,
    )

    pseudo = teacher_masks() if teacher else {}
    if teacher and not pseudo:
        raise FileNotFoundError("no teacher masks: run scripts/make_teacher_masks.py --unannotated-only")
    annotated = {photo_key(p.image) for p in subject_photos()} | {photo_key(p.image) for p in photos}
    pseudo = {k: v for k, v in pseudo.items() if k not in annotated}  # never a test photo's pseudo-mask
    cache = TapCache()
    fold_of = {photo_key(p.image): stable_fold("oof:" + p.group, folds) for p in photos}
    t0 = time.time()
    out: dict[tuple[str, bool], np.ndarray] = {}
    for f in range(folds):
        held = {k for k, v in fold_of.items() if v == f}
        targets = build_targets(photos, pseudo, exclude=held)
        if branch:
            human_head = train_head(load_examples(build_targets(photos, {}, exclude=held), cache), epochs=epochs,
                                    seed=seed + f, log=lambda s: None)
            head = train_head(load_examples(targets, cache), epochs=epochs, seed=seed + f, log=lambda s: None,
                              keep_map=human_head)
        else:
            head = train_head(load_examples(targets, cache), epochs=epochs, seed=seed + f, log=lambda s: None)
        for p in photos:
            if fold_of[photo_key(p.image)] == f:
                for flip in (False, True):
                    out.setdefault((str(p.image), flip), subject_map(head, cache.taps(p.image, flip)))
        log(f"  out-of-fold subject maps: fold {f + 1}/{folds} done, {len(targets)} targets ({time.time() - t0:.0f}s)")
    return out


def load_or_make_oof_maps(
    photos: Sequence[SubjectPhoto], store: FeatureStore, log: Callable[[str], None] = print, **kwargs: Any
) -> dict[tuple[str, bool], np.ndarray]:
    """``out_of_fold_subject_maps`` cached next to the feature store (keyed by the photo list and settings)."""
    import hashlib

    sig = hashlib.sha1(repr((sorted(str(p.mask) for p in photos), sorted(kwargs.items()))).encode()).hexdigest()[:12]
    file = store.cache_dir / f"oof-subject-{sig}.npz"
    if file.exists():
        with np.load(file, allow_pickle=False) as z:
            return {(str(z[f"path{i}"]), bool(z[f"flip{i}"])): z[f"map{i}"] for i in range(int(z["n"]))}
    maps = out_of_fold_subject_maps(photos, log=log, **kwargs)
    arrays: dict[str, np.ndarray] = {"n": np.array(len(maps))}
    for i, ((path, flip), m) in enumerate(maps.items()):
        arrays[f"path{i}"], arrays[f"flip{i}"], arrays[f"map{i}"] = np.array(path), np.array(flip), m
    store.cache_dir.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(file, **arrays)
    return maps


def validation_fold(photo: SubjectPhoto) -> bool:
    """A fixed ~20% of the train split's scenes, held out while choosing training settings."""
    return stable_fold("validation:" + photo.group) == 0


@dataclass
class PersonaCrops:
    """Every training persona's crop of every training photo, and the geometry features of those crops."""

    personas: list[Persona]
    boxes: np.ndarray  # P x M x 4
    geometry: torch.Tensor  # P x M x GEOMETRY_DIM (raw, float32)
    tokens: list[list[int]]  # attribute tokens of each persona


def persona_crops(personas: list[Persona], items: list[PhotoItem]) -> PersonaCrops:
    p, m = len(personas), len(items)
    boxes = np.zeros((p, m, 4), dtype=np.float32)
    geometry = np.zeros((p, m, cf.GEOMETRY_DIM), dtype=np.float32)
    for j, item in enumerate(items):
        for i, persona in enumerate(personas):
            boxes[i, j] = persona.crop(item.subject, item.size, item.key)
        geometry[:, j] = cf.compute(item.ctx, boxes[:, j]).geometry
    tokens = [attribute_tokens(pp.attributes()) for pp in personas]
    return PersonaCrops(personas, boxes, torch.from_numpy(geometry), tokens)


# --- self-supervised objective data ---------------------------------------------------------------------------


def well_composed_paths(root: Path | None = None) -> list[Path]:
    """Curated photographs whose own framing counts as a good crop (500px selection, Commons quality photos)."""
    root = root or shared_data_dir()
    if root is None:
        return []
    out: list[Path] = []
    for folder in ("smartcrop-500px", "wikimedia-commons-zelex"):
        d = root / "photos" / folder
        if d.is_dir():
            out += sorted(p for p in d.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    # Not photographs (an engraving, a painting, a satellite and a Hubble image): their framing teaches nothing.
    skip = {"007", "015", "019", "027"}
    return [p for p in out if not (p.parent.name == "wikimedia-commons-zelex" and p.stem in skip)]


@dataclass
class ViewPairs:
    """Per photo: the full frame's features and those of perturbed sub-windows (worse by assumption)."""

    full: torch.Tensor  # M x content_dim
    windows: torch.Tensor  # M x W x content_dim


def view_pairs(paths: list[Path], store: FeatureStore, windows: int = 24, seed: int = 0) -> ViewPairs:
    rng = np.random.default_rng(seed)
    full, subs = [], []
    for path in paths:
        for flip in (False, True):
            ctx = cf.photo_context(store.analysis(path, flip=flip))
            boxes = [np.array([0.0, 0.0, 1.0, 1.0])]
            for _ in range(windows):
                # VFN's perturbations: a sub-window of 50-90% of each side, anywhere in the frame.
                sw, sh = rng.uniform(0.5, 0.9), rng.uniform(0.5, 0.9)
                x0, y0 = rng.uniform(0, 1 - sw), rng.uniform(0, 1 - sh)
                boxes.append(np.array([x0, y0, x0 + sw, y0 + sh]))
            content = cf.compute(ctx, np.asarray(boxes)).content
            full.append(content[0])
            subs.append(content[1:])
    return ViewPairs(torch.from_numpy(np.stack(full)), torch.from_numpy(np.stack(subs)))


# --- datasets of users who own them: GAICD scored crops, the PIC paper's per-user crops ---------------------


@dataclass
class ScoredItem:
    """An image with human-scored crops (GAICD): the generic score should rank them as the raters did."""

    name: str
    content: torch.Tensor  # N x content_dim
    geometry: torch.Tensor  # N x GEOMETRY_DIM
    scores: torch.Tensor  # N mean opinion scores


def scored_items(sets: Sequence[ScoredCrops], store: FeatureStore) -> list[ScoredItem]:
    out = []
    for item in sets:
        if item.image is None:
            continue
        analysis = store.analysis(item.image)
        boxes = np.asarray(item.normalized(analysis.size), dtype=np.float32)
        feats = cf.compute(cf.photo_context(analysis), boxes)
        out.append(
            ScoredItem(
                item.name,
                torch.from_numpy(feats.content),
                torch.from_numpy(feats.geometry),
                torch.tensor(item.scores, dtype=torch.float32),
            )
        )
    return out


def scored_loss(net: PicNet, items: Sequence[ScoredItem], rng: np.random.Generator, n: int = 4) -> torch.Tensor:
    """Listwise loss of the generic score (z = 0) against the raters' scores (MOS 0.25 apart ~ e-fold)."""
    losses = []
    for i in rng.choice(len(items), size=min(n, len(items)), replace=False):
        item = items[int(i)]
        c, g = net.standardize(item.content, item.geometry)
        s = net(c, g, torch.zeros(net.z_dim))
        target = torch.softmax(item.scores / 0.25, dim=0)
        losses.append(-(target * torch.log_softmax(s, dim=0)).sum())
    return torch.stack(losses).mean()


@dataclass
class UserTask:
    """A real user's crops (e.g. the PIC paper's per-user CSV with the images): one more task for the prior."""

    name: str
    items: list[PhotoItem]
    crops: np.ndarray  # len(items) x 4 normalized
    geometry: torch.Tensor  # len(items) x GEOMETRY_DIM: features of the user's own crops


def user_tasks_from_csv(
    files: Sequence[Path], images: Path, store: FeatureStore, log: Callable[[str], None] = print
) -> list[UserTask]:
    """Users of per-user CSV files whose images are in ``images`` (the first choice of each image is the crop)."""
    from pic_plugin.research.datasets import load_pic_user_csv

    by_user: dict[str, list[tuple[Path, tuple[float, float, float, float]]]] = {}
    missing = 0
    for f in files:
        for row in load_pic_user_csv(Path(f)):
            image = Path(images) / row.name
            chosen = row.chosen
            if chosen is None:
                continue
            if not image.is_file():
                missing += 1
                continue
            by_user.setdefault(row.user, []).append((image, chosen))
    if missing:
        log(f"per-user data: {missing} images not found under {images}; skipped")
    tasks = []
    for user, rows in sorted(by_user.items()):
        if len(rows) < 2:
            continue
        items, crops = [], []
        for image, (x1, y1, x2, y2) in rows:
            photo = SubjectPhoto(image, image, (0, 0), Box(0, 0, 1, 1), 1.0, f"user:{image.name}")
            item = photo_item(photo, store)
            w, h = item.size
            crops.append([x1 / w, y1 / h, x2 / w, y2 / h])
            items.append(item)
        arr = np.clip(np.asarray(crops, dtype=np.float32), 0, 1)
        geo = np.stack([cf.compute(it.ctx, arr[i : i + 1]).geometry[0] for i, it in enumerate(items)])
        tasks.append(UserTask(user, items, arr, torch.from_numpy(geo)))
    return tasks


# --- the prior ------------------------------------------------------------------------------------------------


@dataclass
class PriorConfig:
    steps: int = 2500
    batch: int = 32  # episodes per step
    queries: int = 2  # query photos per episode
    top: int = 96  # candidates nearest the user's crop kept in each query list
    random_candidates: int = 320  # plus this many drawn at random
    ratio_mode: float = 0.3  # share of query lists restricted to the user's favourite ratio (``--ratio``)
    lr: float = 3e-3
    weight_decay: float = 1e-4
    pair_weight: float = 0.5
    vfn_weight: float = 0.2
    keep_weight: float = 0.2
    attribute_rate: float = 0.5  # share of episodes that see some of the user's attributes
    scored_weight: float = 0.2  # GAICD-style scored crops, when given
    real_user_rate: float = 0.3  # share of episodes drawn from real users' tasks, when given
    design_personas: int = 600
    broad_personas: int = 600
    hidden: int = 64  # width of the branches' MLPs
    z_dim: int = 8  # size of the user latent
    seed: int = 0
    teacher_masks: bool = False  # out-of-fold subject heads learn from the teacher's pseudo-masks too
    teacher_branch: bool = False  # ... only in their subject branch, the CNN map kept (train_feature_head.py --keep-map)
    log_every: int = 250
    extra: dict[str, Any] = field(default_factory=dict)


def training_personas(config: PriorConfig) -> list[Persona]:
    # Seeds 11.. and 21..: never the evaluation's (``evaluation.EVAL_SEED``).
    return design_family(config.design_personas, seed=11, prefix="train-design") + broad_family(
        config.broad_personas, seed=21
    )


def set_standardization(net: PicNet, items: list[PhotoItem]) -> None:
    content = torch.cat([it.content[::7].float() for it in items])
    geometry = torch.cat([it.geometry[::7].float() for it in items])
    net.content_mean.copy_(content.mean(0))
    net.content_std.copy_(content.std(0).clamp_min(1e-3))
    net.geometry_mean.copy_(geometry.mean(0))
    net.geometry_std.copy_(geometry.std(0).clamp_min(1e-3))


def pairwise_loss(scores: torch.Tensor, ious: torch.Tensor, top: int) -> torch.Tensor:
    """The best ``top`` candidates (by IoU) must beat clearly worse ones (IoU lower by 0.1+) by a margin."""
    best_s, best_i = scores[..., :top], ious[..., :top]
    rest_s, rest_i = scores[..., top:], ious[..., top:]
    hi = best_s[..., :8].unsqueeze(-1)
    lo = rest_s.unsqueeze(-2)
    valid = (best_i[..., :8].unsqueeze(-1) - rest_i.unsqueeze(-2)) > 0.1
    loss = F.softplus(PAIR_MARGIN - (hi - lo)) * valid
    return loss.sum() / valid.sum().clamp_min(1)


class EpisodeSampler:
    def __init__(self, items: list[PhotoItem], crops: PersonaCrops, config: PriorConfig, rng: np.random.Generator):
        self.items, self.crops, self.cfg, self.rng = items, crops, config, rng
        # Mirrored twins share a base photo: never both in one episode.
        bases: dict[str, list[int]] = {}
        for i, it in enumerate(items):
            bases.setdefault(it.key.removesuffix("|flip"), []).append(i)
        self.bases = list(bases.values())

    def photos(self, n: int) -> list[int]:
        picks = self.rng.choice(len(self.bases), size=n, replace=False)
        return [int(self.rng.choice(self.bases[b])) for b in picks]

    def query_list(self, item: PhotoItem, target: np.ndarray, persona: Persona | None) -> tuple[np.ndarray, np.ndarray]:
        """Candidate indices (nearest the target first, then random ones) and their IoU with the target.

        Sometimes restricted to the persona's favourite ratio, as when the user asks ``--ratio`` (real users:
        their favourite ratio is unknown, so never)."""
        cfg = self.cfg
        pool = np.arange(len(item.boxes))
        if persona is not None and self.rng.random() < cfg.ratio_mode:
            aspect = persona.aspect_for(item.size, favourite=True)
            same = pool[np.abs(np.log(item.aspects / aspect)) < 0.02]
            if len(same) >= 16:
                pool = same
        ious = box_ious(item.boxes[pool], target)
        n_top = min(cfg.top, len(pool) // 2)
        order = np.argsort(-ious)
        top = order[:n_top]
        rest = order[n_top:]
        n_rand = min(cfg.random_candidates, len(rest))
        rand = self.rng.choice(rest, size=n_rand, replace=False) if n_rand else rest[:0]
        idx = np.concatenate([top, rand])
        return pool[idx], ious[idx]


@dataclass
class EpisodeBatch:
    """B episodes: each a user latent's inputs (attributes, support crops) and Q query candidate lists."""

    content: torch.Tensor  # B x Q x L x content_dim (raw)
    geometry: torch.Tensor  # B x Q x L x GEOMETRY_DIM (raw)
    ious: torch.Tensor  # B x Q x L: IoU of each candidate with the user's crop of that photo
    mask: torch.Tensor  # B x Q x L: 1 = a candidate
    support: torch.Tensor  # B x MAX_K x GEOMETRY_DIM (raw): the user's crops of the support photos
    support_mask: torch.Tensor  # B x MAX_K
    tokens: list[list[int]]  # attribute tokens per episode


def make_batch(
    sampler: EpisodeSampler, personas: Sequence[Persona], user_tasks: Sequence[UserTask] = ()
) -> EpisodeBatch:
    cfg, rng, crops, items = sampler.cfg, sampler.rng, sampler.crops, sampler.items
    b, q, length = cfg.batch, cfg.queries, cfg.top + cfg.random_candidates
    content_dim = items[0].content.shape[1]
    out = EpisodeBatch(
        torch.zeros(b, q, length, content_dim),
        torch.zeros(b, q, length, cf.GEOMETRY_DIM),
        torch.zeros(b, q, length),
        torch.zeros(b, q, length),
        torch.zeros(b, MAX_K, cf.GEOMETRY_DIM),
        torch.zeros(b, MAX_K),
        [],
    )
    for e in range(b):
        k = int(rng.choice(EPISODE_K))
        if user_tasks and rng.random() < cfg.real_user_rate:
            _real_episode(e, user_tasks, k, q, sampler, out)
            out.tokens.append([])
            continue
        p = int(rng.integers(len(personas)))
        k = min(k, len(sampler.bases) - q)  # small photo sets (tests)
        photos = sampler.photos(k + q)
        sup, qry = photos[:k], photos[k:]
        if k:
            out.support[e, :k] = crops.geometry[p, sup]
            out.support_mask[e, :k] = 1
        # Some episodes see part of the user's profile: attributes and crops must add up.
        keep_some = rng.random() < cfg.attribute_rate
        out.tokens.append([t for t in crops.tokens[p] if keep_some and rng.random() < 0.6])
        for j, m in enumerate(qry):
            idx, iou = sampler.query_list(items[m], crops.boxes[p, m], personas[p])
            _fill(out, e, j, items[m], idx, iou)
    return out


def _fill(batch: EpisodeBatch, e: int, j: int, item: PhotoItem, idx: np.ndarray, iou: np.ndarray) -> None:
    n = len(idx)
    ti = torch.from_numpy(idx)
    batch.content[e, j, :n] = item.content[ti].float()
    batch.geometry[e, j, :n] = item.geometry[ti].float()
    batch.ious[e, j, :n] = torch.from_numpy(iou)
    batch.mask[e, j, :n] = 1


def episode_loss(net: PicNet, batch: EpisodeBatch, top: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(listwise, pairwise) loss of the query lists, each scored with its episode's user latent."""
    content, geometry = net.standardize(batch.content, batch.geometry)
    support = (batch.support - net.geometry_mean) / net.geometry_std
    z = net.attribute_latent(batch.tokens) + net.crops_latent(support, batch.support_mask)
    scores = net(content, geometry, z.unsqueeze(1).expand(-1, batch.ious.shape[1], -1))
    listwise = soft_listwise(scores, batch.ious, batch.mask).mean()
    pair = pairwise_loss(scores.masked_fill(batch.mask == 0, 0), batch.ious.masked_fill(batch.mask == 0, -1), top)
    return listwise, pair


def train_prior(
    items: list[PhotoItem],
    views: ViewPairs | None,
    config: PriorConfig,
    log: Callable[[str], None] = print,
    validate: Callable[[PicNet], dict[str, float]] | None = None,
    scored: Sequence[ScoredItem] = (),
    user_tasks: Sequence[UserTask] = (),
) -> tuple[PicNet, dict[str, Any]]:
    """Train the shared network on episodes of the training personas over ``items`` (and real ``user_tasks``)."""
    torch.manual_seed(config.seed)
    random.seed(config.seed)
    rng = np.random.default_rng(config.seed)
    t0 = time.time()
    personas = training_personas(config)
    crops = persona_crops(personas, items)
    log(f"persona crops: {len(personas)} personas x {len(items)} photos in {time.time() - t0:.0f}s")
    net = PicNet(z_dim=config.z_dim, hidden=config.hidden)
    set_standardization(net, items)
    opt = torch.optim.AdamW(net.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=config.lr, total_steps=config.steps, pct_start=0.05)
    sampler = EpisodeSampler(items, crops, config, rng)
    keep_sets = [_keep_pairs(it) for it in items]
    history: list[dict[str, float]] = []
    running: dict[str, float] = {}
    for step in range(config.steps):
        net.train()
        batch = make_batch(sampler, personas, user_tasks)
        listwise, pair = episode_loss(net, batch, config.top)
        loss = listwise + config.pair_weight * pair
        parts = {"listwise": listwise.item(), "pair": pair.item()}
        if views is not None and config.vfn_weight > 0:
            sel = torch.from_numpy(rng.choice(len(views.full), size=8, replace=False))
            full = (views.full[sel] - net.content_mean) / net.content_std
            sub = (views.windows[sel] - net.content_mean) / net.content_std
            vfn = F.softplus(PAIR_MARGIN - (net.content_score(full).unsqueeze(-1) - net.content_score(sub))).mean()
            loss = loss + config.vfn_weight * vfn
            parts["vfn"] = vfn.item()
        if scored and config.scored_weight > 0:
            sc = scored_loss(net, scored, rng)
            loss = loss + config.scored_weight * sc
            parts["scored"] = sc.item()
        if config.keep_weight > 0:
            keep = _keep_loss(net, items, keep_sets, rng)
            loss = loss + config.keep_weight * keep
            parts["keep"] = keep.item()
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 5.0)
        opt.step()
        sched.step()
        for key, v in parts.items():
            running[key] = 0.98 * running.get(key, v) + 0.02 * v
        if (step + 1) % config.log_every == 0 or step + 1 == config.steps:
            row = {
                "step": step + 1,
                "seconds": round(time.time() - t0, 1),
                **{k: round(v, 4) for k, v in running.items()},
            }
            if validate is not None:
                net.eval()
                row.update(validate(net))
            history.append(row)
            log(str(row))
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return net, {
        "history": history,
        "seconds": round(time.time() - t0, 1),
        "personas": len(personas),
        "photos": len(items),
    }


def _real_episode(
    e: int, tasks: Sequence[UserTask], k: int, q: int, sampler: EpisodeSampler, out: EpisodeBatch
) -> None:
    """Fill episode ``e`` from a real user's task (support and queries are that user's own crops)."""
    rng = sampler.rng
    task = tasks[int(rng.integers(len(tasks)))]
    n = len(task.items)
    q = min(q, n - 1)
    k = min(k, n - q)
    order = rng.permutation(n)
    sup, qry = order[:k], order[k : k + q]
    if k:
        out.support[e, :k] = task.geometry[torch.from_numpy(sup)]
        out.support_mask[e, :k] = 1
    for j, m in enumerate(qry):
        item = task.items[int(m)]
        idx, iou = sampler.query_list(item, task.crops[int(m)], None)
        _fill(out, e, j, item, idx, iou)


def _keep_pairs(item: PhotoItem) -> tuple[np.ndarray, np.ndarray]:
    """Candidates that keep >= 95% of the annotated subject box, and candidates that keep < 75% of it."""
    s = np.asarray(item.subject, dtype=np.float32)
    ix = np.clip(np.minimum(item.boxes[:, 2], s[2]) - np.maximum(item.boxes[:, 0], s[0]), 0, None)
    iy = np.clip(np.minimum(item.boxes[:, 3], s[3]) - np.maximum(item.boxes[:, 1], s[1]), 0, None)
    kept = ix * iy / max(float((s[2] - s[0]) * (s[3] - s[1])), 1e-6)
    return np.flatnonzero(kept >= 0.95), np.flatnonzero(kept < 0.75)


def _keep_loss(net: PicNet, items: list[PhotoItem], keep_sets: list, rng: np.random.Generator) -> torch.Tensor:
    losses = []
    for m in rng.choice(len(items), size=8, replace=False):
        good, bad = keep_sets[m]
        if len(good) == 0 or len(bad) == 0:
            continue
        gi = torch.from_numpy(rng.choice(good, size=32))
        bi = torch.from_numpy(rng.choice(bad, size=32))
        item = items[m]
        c, g = net.standardize(item.content[torch.cat([gi, bi])].float(), item.geometry[torch.cat([gi, bi])].float())
        s = net.objective_score(c, g)
        losses.append(F.softplus(PAIR_MARGIN - (s[:32] - s[32:])).mean())
    return torch.stack(losses).mean() if losses else torch.zeros(())


def validation_callback(
    items: list[PhotoItem], n_personas: int = 16, seed: int = 999, queries_from: int = 40
) -> Callable[[PicNet], dict[str, float]]:
    """Mean IoU of the best-scored candidate on held-out photos for held-out personas, at k = 0 and k = 10
    (crops encoding only, no fine-tuning): the curve printed while training, never a training signal."""
    personas = design_family(n_personas, seed=seed, prefix="validation")
    crops = persona_crops(personas, items)

    def validate(net: PicNet) -> dict[str, float]:
        out = {}
        for k in (0, 10):
            res = []
            for pi in range(len(personas)):
                order = np.random.default_rng(pi).permutation(len(items))
                sup, qry = order[:k], order[queries_from:]
                with torch.no_grad():
                    if k:
                        s = (crops.geometry[pi, sup] - net.geometry_mean) / net.geometry_std
                        z = net.crops_latent(s[None], torch.ones(1, k))[0]
                    else:
                        z = torch.zeros(net.z_dim)
                    for m in qry:
                        it = items[m]
                        c, g = net.standardize(it.content.float(), it.geometry.float())
                        best = it.boxes[int(net(c, g, z).argmax())]
                        res.append(box_ious(best[None], crops.boxes[pi, m])[0])
            out[f"val_iou_k{k}"] = round(float(np.mean(res)), 4)
        return out

    return validate


# --- per-user fine-tuning -------------------------------------------------------------------------------------


