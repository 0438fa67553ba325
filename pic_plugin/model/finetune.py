"""Fine-tuning the shared PIC network to one user from k of their crops.

The shared network is frozen; the user latent starts from the attributes + the crops' encoding and gets a free
offset, together with a small linear adapter, fitted to the user's crops with an L2 pull toward the prior (offset
and adapter 0). Seconds on a CPU for k = 50 with cached features. The user's framing rule is fitted to the same
crops (``framing_rule``).
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch

from pic_plugin.analysis import candidate_features as cf
from pic_plugin.analysis.candidates import generate
from pic_plugin.analysis.features import ImageAnalysis
from pic_plugin.analysis.suggest import box_ious, suggest
from pic_plugin.core.geometry import FREE, Box, iou
from pic_plugin.model.framing_rule import RuleSample, fit_rule
from pic_plugin.model.network import PicNet, PicScorer, UserModel, active_rule, attribute_tokens

#: Sharpness of the soft targets: a candidate 0.05 IoU worse than the best gets 1/e of its weight.
TARGET_TEMPERATURE = 0.05


#: The factors of the framing rule's weight fine-tuning chooses from (``choose_rule_scale``), and what a factor
#: above 1 must gain in mean IoU on the user's crops.
RULE_SCALES = (1.0, 3.0)
RULE_SCALE_GAIN = 0.005
RULE_SCALE_MIN_CROPS = 10  # with 5 crops the choice overfits them (README: "Never worse than the user's own habit")


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run torch with ``n`` threads inside the block. Fine-tuning works on small matrices: one thread is fastest,
    and on a busy machine two threads can be ten times slower than one (threads wait for each other)."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def soft_listwise(scores: torch.Tensor, ious: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Cross-entropy between softmax(scores) and softmax(IoU / T), per row (mask: 1 = candidate present)."""
    if mask is not None:
        scores = scores.masked_fill(mask == 0, -1e4)
        ious = ious.masked_fill(mask == 0, -1e4)
    target = torch.softmax(ious / TARGET_TEMPERATURE, dim=-1)
    return -(target * torch.log_softmax(scores, dim=-1)).sum(-1)



@dataclass
class FinetuneConfig:
    steps: int = 80
    lr: float = 0.05
    z_pull: float = 0.3  # L2 pull of the latent offset toward the prior (chosen on the validation fold)
    adapter_pull: float = 3.0
    candidates: int = 256  # per crop: the nearest by IoU and a random rest
    top: int = 64
    seed: int = 0


@dataclass
class UserExample:
    """One of the user's crops with the photo's features (e.g. from the catalog's cache)."""

    analysis: ImageAnalysis
    crop: Box
    weight: float = 1.0
    ctx: cf.PhotoContext | None = None
    pool: np.ndarray | None = None  # candidate boxes to rank (default: free candidates of the photo)


def finetune(
    net: PicNet,
    examples: Sequence[UserExample],
    attributes: dict[str, Any] | None = None,
    config: FinetuneConfig | None = None,
    prior: str = "",
) -> UserModel:
    """Fit one user's latent offset and adapter to their crops (k = len(examples); k = 0 -> the prior)."""
    with torch_threads(1):
        return _finetune(net, examples, attributes, config, prior)


def _finetune(
    net: PicNet,
    examples: Sequence[UserExample],
    attributes: dict[str, Any] | None,
    config: FinetuneConfig | None,
    prior: str,
) -> UserModel:
    cfg = config or FinetuneConfig()
    t0 = time.time()
    rng = np.random.default_rng(cfg.seed)
    g = cf.GEOMETRY_DIM
    tokens = attribute_tokens(attributes)
    with torch.no_grad():
        z_attr = net.attribute_latent([tokens])[0]
    if not examples:
        return UserModel(
            z=z_attr.numpy(),
            adapter=np.zeros(g, dtype=np.float32),
            attributes=dict(attributes or {}),
            k=0,
            prior=prior,
            metrics={"seconds": round(time.time() - t0, 3)},
            rule=active_rule(None, attributes),
        )
    contents, geometries, ious, weights, crop_geo = [], [], [], [], []
    rule_samples: list[RuleSample] = []
    for ex in examples:
        ctx = ex.ctx or cf.photo_context(ex.analysis)
        rule_samples.append(RuleSample(ctx.subject.box, ex.analysis.size, ex.crop, ex.weight))
        pool = ex.pool if ex.pool is not None else generate(ex.analysis.size, FREE).boxes
        target = np.asarray(ex.crop, dtype=np.float32)
        iou = box_ious(pool, target)
        order = np.argsort(-iou)
        top = order[: cfg.top]
        rest = order[cfg.top :]
        rand = rng.choice(rest, size=min(len(rest), cfg.candidates - len(top)), replace=False)
        idx = np.concatenate([top, rand])
        feats = cf.compute(ctx, np.concatenate([pool[idx], target[None]]))
        contents.append(torch.from_numpy(feats.content[:-1]))
        geometries.append(torch.from_numpy(feats.geometry[:-1]))
        crop_geo.append(torch.from_numpy(feats.geometry[-1]))
        ious.append(torch.from_numpy(iou[idx].astype(np.float32)))
        weights.append(ex.weight)
    n = max(len(c) for c in contents)
    k = len(examples)
    content = torch.zeros(k, n, net.content_dim)
    geometry = torch.zeros(k, n, g)
    iou_t = torch.zeros(k, n)
    mask = torch.zeros(k, n)
    for i in range(k):
        m = len(contents[i])
        content[i, :m], geometry[i, :m], iou_t[i, :m], mask[i, :m] = contents[i], geometries[i], ious[i], 1
    w = torch.tensor(weights, dtype=torch.float32)
    w = w / w.sum()
    with torch.no_grad():
        content, geometry = net.standardize(content, geometry)
        objective = net.objective_score(content, geometry)
        support = (torch.stack(crop_geo) - net.geometry_mean) / net.geometry_std
        z0 = z_attr + net.crops_latent(support[None], torch.ones(1, k))[0]
    offset = torch.zeros(net.z_dim, requires_grad=True)
    adapter = torch.zeros(g, requires_grad=True)
    opt = torch.optim.Adam([offset, adapter], lr=cfg.lr)

    def support_loss() -> torch.Tensor:
        scores = objective + net.subjective_score(geometry, (z0 + offset).expand(k, -1)) + (geometry * adapter).sum(-1)
        return (soft_listwise(scores, iou_t, mask) * w).sum()

    with torch.no_grad():
        initial = float(support_loss())
    for _ in range(cfg.steps):
        data = support_loss()
        # Bayesian pull: the data term is a mean over crops, so the prior weighs 1/k of it.
        loss = data + (cfg.z_pull * offset.pow(2).sum() + cfg.adapter_pull * adapter.pow(2).sum()) / k
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        final = float(support_loss())
    crops_rule = fit_rule(rule_samples)
    model = UserModel(
        z=(z0 + offset).detach().numpy().astype(np.float32),
        adapter=adapter.detach().numpy().astype(np.float32),
        attributes=dict(attributes or {}),
        k=k,
        prior=prior,
        metrics={
            "seconds": round(time.time() - t0, 3),
            "support_loss": round(final, 4),
            "support_loss_before": round(initial, 4),
            # the smallest crop the user made themselves (weight 1: not pic's own suggestion left in place, which
            # would feed pic's choices back): the scorer's floor on crop size (model.min_area)
            "min_crop_area": round(min((ex.crop.area for ex in examples if ex.weight >= 1.0), default=1.0), 4),
        },
        rule=active_rule(crops_rule, attributes),
        crops_rule=crops_rule,
    )
    model.rule_scale = choose_rule_scale(net, model, examples)
    model.metrics["rule_scale"] = model.rule_scale
    return model


def choose_rule_scale(net: PicNet, model: UserModel, examples: Sequence[UserExample]) -> float:
    """The weight of the user's framing rule (a factor of ``RULE_SCALES``) that reproduces their own crops best.

    The hedge against the network: where the suggestions of the fitted model frame the user's own photos worse
    than a stronger pull toward their rule does, their habit wins. Both sides are measured on the same crops the
    fit saw, and the rule is the low-capacity side (its kind chosen leaving one crop out), so a factor above 1 is
    taken only when it gains more than ``RULE_SCALE_GAIN``. Needs ``RULE_SCALE_MIN_CROPS`` crops; fine-tuning on
    k = 50 crops takes about k x 30 ms more.
    """
    rule = model.rule
    if rule is None or rule.source != "crops" or len(examples) < RULE_SCALE_MIN_CROPS:
        return 1.0
    weights = np.asarray([ex.weight for ex in examples], dtype=np.float64)
    weights = weights / max(weights.sum(), 1e-9)
    means = []
    for scale in RULE_SCALES:
        trial = replace(model, rule_scale=scale)
        scorer = PicScorer(net, trial)
        ious = [iou(suggest(ex.analysis, scorer, FREE, top_k=1).crop, ex.crop) for ex in examples]
        means.append(float(np.dot(weights, ious)))
    best = int(np.argmax(means))
    return RULE_SCALES[best] if means[best] > means[0] + RULE_SCALE_GAIN else 1.0
