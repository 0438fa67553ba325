"""The PIC model ("Crop the Way You Like", made a product model): a scorer of candidate crops for one user.

score(crop) = objective(crop) + subjective(crop, z_u) + adapter_u . geometry(crop) - face-cut penalty

- Objective branch (the same for everyone): GAIC-style RoI + RoD pooled CNN features and explicit composition
  statistics (``candidate_features``) -> an MLP, plus a content-only head on the RoI features that was also
  trained self-supervised on well-composed photographs (VFN: the photographer's frame beats its sub-windows).
- Individual preference module: a user latent ``z_u`` = embedding of the user's profile attributes (optional)
  + an encoding of the user's example crops (mean over the crops, shrunk toward 0 when there are few) + a free
  offset fitted to those crops by ``finetune.finetune``. The subjective score is conditioned on each candidate:
  an MLP over [candidate geometry, z_u, (A geometry) * (B z_u)], so it works for any image size and ratio.
- Per-user adapter: a linear correction on the candidate's geometry, fitted with a strong pull toward 0
  (habits outside what the prior has seen, e.g. an unusually loose framer).
- A cut face costs FACE_CUT_PENALTY: too rare in our training data to be learned, never acceptable.

With no attributes and no crops, z_u = 0 and the adapter is 0: the generic prior. Weights of the shared part
ship in ``data/pic_prior.pt`` (``scripts/train_prior.py``); a user's part is a few hundred numbers in the
catalog's ``models`` table (``UserModel.to_bytes``).
"""

from __future__ import annotations

import json
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from pic_plugin.analysis import candidate_features as cf
from pic_plugin.analysis.composition import STAT_NAMES
from pic_plugin.analysis.features import FEATURE_CHANNELS, ImageAnalysis
from pic_plugin.analysis.suggest import Anchor
from pic_plugin.core.geometry import Ratio
from pic_plugin.model.framing_rule import GENERIC_RULE, FramingRule, rule_from_attributes
from pic_plugin.model.version import PRIOR_FILE, USER_FORMAT, write_info

Z_DIM = 8
HIDDEN = 64
FACE_CUT_PENALTY = 25.0
#: Crops smaller than this share of the frame are not suggested (see ``min_area``), unless the user crops tighter.
MIN_CROP_AREA = 0.1
TOO_SMALL_PENALTY = 50.0
#: Weight of the user's framing rule (``framing_rule``): a candidate gains its IoU with the rule's crop times
#: RULE_WEIGHT x k / (k + RULE_K0) for a rule fitted to k crops, PROFILE_RULE_WEIGHT for the rule the profile
#: describes (replaced by the crops' rule once there are PROFILE_RULE_UNTIL crops), GENERIC_RULE_WEIGHT for the
#: generic rule (a fixed ratio asked by somebody pic knows nothing about). All well below FACE_CUT_PENALTY, so a
#: rule never buys a cut face. Chosen on the validation fold of the training photos (scripts in the README);
#: RULE_WEIGHT 10 rather than the 3 that suited the DESIGN family alone: for users unlike those the latent space
#: was trained on, the fitted rule is what keeps fine-tuning from pulling the crops away from their habit.
RULE_WEIGHT = 10.0
RULE_K0 = 2.0
PROFILE_RULE_WEIGHT = 7.5
PROFILE_RULE_UNTIL = 5
GENERIC_RULE_WEIGHT = 2.0
#: The generic prior (nobody pic knows: no crops, no profile rule) keeps the subject: a candidate that leaves out
#: more than 1 - SUBJECT_KEEP of the subject map's mass loses a penalty x the shortfall. A photographer who has
#: taught pic nothing should not get a cut subject; one who crops tighter teaches it. Free-form, any shape may
#: hold the whole subject, so keeping it is strict (SUBJECT_KEEP_PENALTY_FREE); with an imposed ratio the shape
#: may not allow it and the generic rule already frames the subject, so it is milder (SUBJECT_KEEP_PENALTY).
#: Chosen on the validation fold (``scripts/tune_rule_weights.py --part keep``, README).
SUBJECT_KEEP = 0.97
SUBJECT_KEEP_PENALTY = 5.0
SUBJECT_KEEP_PENALTY_FREE = 20.0
_KEEP = STAT_NAMES.index("keep")
#: A crop whose edge passes this close to a face (normalized units) also counts as cutting it: the exact-ratio
#: snapping after the choice (``geometry.snap_to_ratio``) can move an edge by a pixel or two on small images.
FACE_MARGIN = 0.01

#: Profile attributes the preference module understands (``pic profile --set KEY=VALUE``). Other keys are kept
#: in the profile but do not move z_u.
ATTRIBUTE_VALUES: dict[str, tuple[str, ...]] = {
    "ratio": ("original", "1:1", "4:5", "5:4", "3:2", "2:3", "4:3", "3:4", "16:9", "9:16", "2:1", "1:2"),
    "framing": ("tight", "medium", "loose"),
    "placement": ("centred", "left", "right", "high", "low", "high-left", "high-right", "low-left", "low-right"),
    "orientation": ("follow", "fixed"),  # does the favourite ratio turn with the photo (3:2 -> 2:3)?
}
ATTRIBUTE_ALIASES = {"centered": "centred", "center": "centred", "centre": "centred", "thirds": "left"}
VOCAB: tuple[str, ...] = tuple(f"{k}={v}" for k, values in ATTRIBUTE_VALUES.items() for v in values)


def attribute_tokens(attributes: dict[str, Any] | None) -> list[int]:
    """Vocabulary ids of the attributes the model knows (unknown keys and values are ignored)."""
    out = []
    for key, value in (attributes or {}).items():
        v = str(value).strip().lower()
        v = ATTRIBUTE_ALIASES.get(v, v)
        token = f"{key.strip().lower()}={v}"
        if token in VOCAB:
            out.append(VOCAB.index(token))
    return sorted(set(out))


def unknown_attributes(attributes: dict[str, Any]) -> list[str]:
    known = set(attribute_tokens(attributes))
    return [f"{k}={v}" for k, v in attributes.items() if not set(attribute_tokens({k: v})) & known]


def _mlp(sizes: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class PicNet(nn.Module):
    """The shared network: objective branch, preference module and support-crop encoder."""

    def __init__(self, channels: int = FEATURE_CHANNELS, z_dim: int = Z_DIM, hidden: int = HIDDEN) -> None:
        super().__init__()
        self.content_dim = cf.content_dim(channels)
        self.roi_dim = channels * cf.GRID * cf.GRID
        g = cf.GEOMETRY_DIM
        self.z_dim = z_dim
        self.hidden = hidden
        # Input standardization, set from the training data (buffers: saved with the weights).
        self.register_buffer("content_mean", torch.zeros(self.content_dim))
        self.register_buffer("content_std", torch.ones(self.content_dim))
        self.register_buffer("geometry_mean", torch.zeros(g))
        self.register_buffer("geometry_std", torch.ones(g))
        self.content_head = _mlp([self.roi_dim, 32, 1])
        self.objective = _mlp([self.content_dim + g, hidden, hidden // 2, 1])
        self.geo_proj = nn.Linear(g, 16)
        self.z_proj = nn.Linear(z_dim, 16)
        self.subjective = _mlp([g + z_dim + 16, hidden, hidden // 2, 1])
        self.attributes = nn.EmbeddingBag(len(VOCAB), z_dim, mode="sum")
        nn.init.normal_(self.attributes.weight, std=0.1)
        self.encoder = _mlp([g, hidden, z_dim])
        self.shrink = nn.Parameter(torch.tensor(1.0))  # log of k0: the encoding counts k / (k + k0)

    # --- inputs ---

    def standardize(self, content: torch.Tensor, geometry: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return (content - self.content_mean) / self.content_std, (geometry - self.geometry_mean) / self.geometry_std

    # --- branches ---

    def content_score(self, content: torch.Tensor) -> torch.Tensor:
        """Content-only score (RoI features): the part trained self-supervised on well-composed photos."""
        return self.content_head(content[..., : self.roi_dim]).squeeze(-1)

    def objective_score(self, content: torch.Tensor, geometry: torch.Tensor) -> torch.Tensor:
        obj = self.objective(torch.cat([content, geometry], dim=-1)).squeeze(-1)
        return obj + self.content_score(content)

    def subjective_score(self, geometry: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """``geometry``: ... x N x G standardized; ``z``: ... x Z (one latent per leading index)."""
        zz = z.unsqueeze(-2).expand(*geometry.shape[:-1], z.shape[-1])
        inter = self.geo_proj(geometry) * self.z_proj(zz)
        return self.subjective(torch.cat([geometry, zz, inter], dim=-1)).squeeze(-1)

    # --- the user latent ---

    def attribute_latent(self, token_lists: list[list[int]]) -> torch.Tensor:
        """B x Z embedding of each list of attribute tokens (an empty list embeds to 0)."""
        flat = [t for tokens in token_lists for t in tokens]
        offsets = np.cumsum([0] + [len(t) for t in token_lists[:-1]]).tolist()
        if not flat:
            return torch.zeros(len(token_lists), self.z_dim)
        return self.attributes(torch.tensor(flat, dtype=torch.long), torch.tensor(offsets, dtype=torch.long))

    def crops_latent(self, support_geometry: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """B x Z encoding of B sets of example crops. ``support_geometry``: B x K x G standardized;
        ``mask``: B x K (1 = a real crop). Mean of the per-crop codes, times k / (k + k0)."""
        codes = self.encoder(support_geometry) * mask.unsqueeze(-1)
        k = mask.sum(dim=1, keepdim=True)
        mean = codes.sum(dim=1) / k.clamp_min(1.0)
        return mean * (k / (k + self.shrink.exp()))

    def forward(
        self, content: torch.Tensor, geometry: torch.Tensor, z: torch.Tensor, adapter: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Scores of standardized candidates (... x N x D) for latents z (... x Z)."""
        s = self.objective_score(content, geometry) + self.subjective_score(geometry, z)
        if adapter is not None:
            s = s + (geometry * adapter.unsqueeze(-2)).sum(-1)
        return s


@dataclass
class UserModel:
    """One user's part of the model: what the catalog stores per version (a few hundred numbers)."""

    z: np.ndarray  # Z: the user latent (attributes + crops encoding + fitted offset)
    adapter: np.ndarray  # GEOMETRY_DIM: linear correction on standardized geometry
    attributes: dict[str, Any] = field(default_factory=dict)
    k: int = 0  # how many crops it was fitted on
    prior: str = ""  # version of the shared weights it belongs to
    metrics: dict[str, Any] = field(default_factory=dict)
    created: float = field(default_factory=time.time)
    rule: FramingRule | None = None  # the framing habit the suggestions follow (``active_rule``)
    crops_rule: FramingRule | None = None  # the rule fitted to the crops, kept while the profile's rule is active
    #: How much more the crops' rule counts for this user than ``rule_weight`` says: chosen at fine-tuning from the
    #: user's own crops (``finetune.choose_rule_scale``), so the network cannot pull the suggestions away from a
    #: habit the user keeps (a frame trimmer, a fixed placement) when it frames their photos worse than the rule.
    rule_scale: float = 1.0

    def to_bytes(self) -> bytes:
        return json.dumps(
            {
                "format": USER_FORMAT,
                "z": [round(float(v), 6) for v in self.z],
                "adapter": [round(float(v), 6) for v in self.adapter],
                "attributes": self.attributes,
                "k": self.k,
                "prior": self.prior,
                "metrics": self.metrics,
                "created": self.created,
                "rule": self.rule.to_dict() if self.rule is not None else None,
                "crops_rule": self.crops_rule.to_dict() if self.crops_rule is not None else None,
                "rule_scale": self.rule_scale,
            }
        ).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> UserModel:
        d = json.loads(data.decode())
        if d.get("format") != USER_FORMAT:
            raise ValueError(f"not a pic user model (format {d.get('format')!r})")
        rule = FramingRule.from_dict(d["rule"]) if d.get("rule") else None  # versions before rules: none
        if "crops_rule" in d:
            crops_rule = FramingRule.from_dict(d["crops_rule"]) if d["crops_rule"] else None
        else:  # versions before crops_rule was kept: the crops' rule is known only where it was the active one
            crops_rule = rule if rule is not None and rule.source == "crops" else None
        return cls(
            z=np.asarray(d["z"], dtype=np.float32),
            adapter=np.asarray(d["adapter"], dtype=np.float32),
            attributes=dict(d.get("attributes") or {}),
            k=int(d.get("k", 0)),
            prior=str(d.get("prior", "")),
            metrics=dict(d.get("metrics") or {}),
            created=float(d.get("created", 0.0)),
            rule=rule,
            crops_rule=crops_rule,
            rule_scale=float(d.get("rule_scale", 1.0)),  # versions before the hedge: 1
        )


def save_prior(net: PicNet, path: Path, meta: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    arch = {"z_dim": net.z_dim, "hidden": net.hidden}
    torch.save({"state": net.state_dict(), "arch": arch, "meta": meta}, path)
    write_info(path, str(meta.get("version", "pic")))


def load_prior_file(path: Path) -> tuple[PicNet, dict[str, Any]]:
    blob = torch.load(path, map_location="cpu", weights_only=True)
    net = PicNet(**blob.get("arch", {}))
    net.load_state_dict(blob["state"])
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return net, dict(blob.get("meta") or {})


@lru_cache(maxsize=1)
def load_prior() -> tuple[PicNet, dict[str, Any]]:
    """The shipped prior (shared weights) and its metadata (version, training report)."""
    if not PRIOR_FILE.exists():
        raise FileNotFoundError(f"{PRIOR_FILE} is missing: run scripts/train_prior.py")
    return load_prior_file(PRIOR_FILE)


def active_rule(crops_rule: FramingRule | None, attributes: dict[str, Any] | None) -> FramingRule | None:
    """The framing rule a user's suggestions follow: the one their profile describes (``pic profile``) until the
    rule fitted to their crops rests on PROFILE_RULE_UNTIL crops (a few crops say less than the user's own words),
    then the crops' rule. The one place this precedence is decided: at fine-tuning, when the profile is edited
    after it, and for a model fitted to other shared weights."""
    profile = rule_from_attributes(attributes)
    if profile is not None and (crops_rule is None or crops_rule.k < PROFILE_RULE_UNTIL):
        return profile
    return crops_rule


def prior_user(net: PicNet, attributes: dict[str, Any] | None = None, prior: str = "") -> UserModel:
    """k = 0: the generic prior, moved by the profile attributes if there are any."""
    with torch.no_grad():
        z = net.attribute_latent([attribute_tokens(attributes)])[0].numpy()
    return UserModel(
        z=z,
        adapter=np.zeros(cf.GEOMETRY_DIM, dtype=np.float32),
        attributes=dict(attributes or {}),
        prior=prior,
        rule=active_rule(None, attributes),
    )


class PicScorer:
    """The learned scorer (``Scorer`` protocol of ``suggest``) for one user (or nobody: the generic prior)."""

    name = "pic"
    temperature = 1.0
    coarse_stride = 3  # suggest(): coarse-to-fine search; its scores are smooth over neighbouring boxes

    def __init__(self, net: PicNet, user: UserModel | None = None, version: str = "pic", user_version: int = 0) -> None:
        self.net = net
        self.user = user or prior_user(net)
        self.version = f"{version}+u{user_version}" if user_version else version
        self._contexts: OrderedDict[int, tuple[ImageAnalysis, cf.PhotoContext]] = OrderedDict()

    def context(self, analysis: ImageAnalysis) -> cf.PhotoContext:
        """Per-image context, kept for the last few images (suggest() scores an image twice: grid, refinement)."""
        hit = self._contexts.get(id(analysis))
        if hit is not None and hit[0] is analysis:
            self._contexts.move_to_end(id(analysis))
            return hit[1]
        ctx = cf.photo_context(analysis)
        self._contexts[id(analysis)] = (analysis, ctx)
        while len(self._contexts) > 4:
            self._contexts.popitem(last=False)
        return ctx

    def features(self, analysis: ImageAnalysis, boxes: np.ndarray) -> cf.CandidateFeatures:
        return cf.compute(self.context(analysis), boxes)

    def score(
        self, analysis: ImageAnalysis, boxes: np.ndarray, user: Any = None, ratio: Ratio | None = None
    ) -> np.ndarray:
        um = user if isinstance(user, UserModel) else self.user
        feats = self.features(analysis, boxes)
        b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        bw, bh = np.maximum(b[:, 2] - b[:, 0], 1e-9), np.maximum(b[:, 3] - b[:, 1], 1e-9)
        # The largest box of each box's own shape covers min(q, 1/q) of the frame (q: the box's normalized w/h); a
        # 4:5 crop of a 30:1 panorama can never reach the floor, so there the floor is half of that largest box.
        q = bw / bh
        too_small = bw * bh < np.minimum(min_area(um), 0.5 * np.minimum(q, 1 / q))
        scores = (
            score_features(self.net, feats, um)
            - FACE_CUT_PENALTY * face_risk(analysis, boxes)
            - TOO_SMALL_PENALTY * too_small
        )
        if um.rule is None and um.k == 0:  # the generic prior
            penalty = SUBJECT_KEEP_PENALTY_FREE if ratio is None or ratio.is_free else SUBJECT_KEEP_PENALTY
            scores -= penalty * np.maximum(0.0, SUBJECT_KEEP - feats.stats[:, _KEEP])
        return scores

    def anchor(self, analysis: ImageAnalysis, ratio: Ratio, user: Any = None) -> Anchor | None:
        """The crop the user's framing rule makes of this photo, for ``suggest`` (None: no rule yet)."""
        um = user if isinstance(user, UserModel) else self.user
        rule = um.rule
        if rule is None and not ratio.is_free:
            rule = GENERIC_RULE  # asked for a ratio by somebody pic knows nothing about
        if rule is None:
            return None
        size = analysis.size
        box = rule.box(self.context(analysis).subject.box, size, ratio)
        scale = um.rule_scale if rule.source == "crops" else 1.0
        return Anchor(box, rule_weight(rule) * scale, rule.aspect(size, ratio))


def rule_weight(rule: FramingRule) -> float:
    """How much a candidate's closeness to the rule's crop counts (see RULE_WEIGHT)."""
    if rule.source == "profile":
        return PROFILE_RULE_WEIGHT
    if rule.source == "generic":
        return GENERIC_RULE_WEIGHT
    return RULE_WEIGHT * rule.k / (rule.k + RULE_K0)


def min_area(user: UserModel) -> float:
    """Smallest crop (share of the frame) pic suggests for ``user``: MIN_CROP_AREA, or less for a user who crops
    tighter (80% of their smallest crop). People rarely crop harder: 0.3% of the 6,120 FLMS / GAICD / FCDB
    crops keep less than 10% of the frame, but a tight framer on a small predicted subject would."""
    return min(MIN_CROP_AREA, 0.8 * float(user.metrics.get("min_crop_area", 1.0)))


def score_features(net: PicNet, feats: cf.CandidateFeatures, user: UserModel) -> np.ndarray:
    """Model scores of candidates (the face rule is applied by ``PicScorer.score``, which knows the boxes).

    Same numbers as ``net(content, geometry, z, adapter)`` for one user, computed through ``_one_user_layers``:
    for a fixed latent everything the first layers do to the geometry is linear, so it folds into one matrix."""
    with torch.no_grad():
        content, geometry = net.standardize(torch.from_numpy(feats.content), torch.from_numpy(feats.geometry))
        w_content, w_geometry, bias = _one_user_layers(net, user)
        hidden = net.hidden
        first = torch.addmm(bias, geometry, w_geometry.T)  # N x (H + H + 1)
        first[:, :hidden] += content @ w_content.T
        obj = net.objective[1:](first[:, :hidden]).squeeze(-1)
        subj = net.subjective[1:](first[:, hidden : 2 * hidden]).squeeze(-1)
        s = obj + subj + first[:, 2 * hidden] + net.content_score(content)
    return s.numpy().astype(np.float32)


def _one_user_layers(net: PicNet, user: UserModel) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The first objective layer, the first subjective layer and the adapter for one latent, as linear maps: of the
    geometry (rows 0..H-1 objective, H..2H-1 subjective, 2H the adapter term) and of the content (objective rows
    only). Cached per user."""
    key = (id(net), user.z.tobytes(), user.adapter.tobytes())
    cached = _FOLDED.get(key)
    if cached is not None:
        return cached
    c, g = net.content_dim, net.geometry_mean.shape[0]
    obj = net.objective[0]
    w_obj_c, w_obj_g = obj.weight[:, :c], obj.weight[:, c:]
    sub = net.subjective[0]
    z = torch.from_numpy(user.z).float()
    w_sub_g, w_sub_z, w_sub_i = sub.weight[:, :g], sub.weight[:, g : g + z.shape[0]], sub.weight[:, g + z.shape[0] :]
    zp = net.z_proj(z)  # 16: the latent's side of the interaction, constant for every candidate
    w_inter = w_sub_i * zp  # H x 16
    w_sub = w_sub_g + w_inter @ net.geo_proj.weight  # H x G
    b_sub = sub.bias + w_sub_z @ z + w_inter @ net.geo_proj.bias
    adapter = torch.from_numpy(user.adapter).float()
    w_content = w_obj_c
    w_geometry = torch.cat([w_obj_g, w_sub, adapter[None, :]])
    bias = torch.cat([obj.bias, b_sub, torch.zeros(1)])
    folded = (w_content.contiguous(), w_geometry.contiguous(), bias)
    if len(_FOLDED) > 16:
        _FOLDED.clear()
    _FOLDED[key] = folded
    return folded


_FOLDED: dict[tuple[int, bytes, bytes], tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}


def face_risk(analysis: ImageAnalysis, boxes: np.ndarray) -> np.ndarray:
    """Score-weighted count of faces that an edge of each box cuts or passes within FACE_MARGIN of.

    An edge on the frame border cuts nothing. The margin keeps the choice safe from the exact-ratio snapping."""
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    out = np.zeros(len(b))
    m = FACE_MARGIN
    for face in analysis.faces:
        fb = face.box
        overlap_y = (b[:, 1] < fb.bottom) & (b[:, 3] > fb.top)
        overlap_x = (b[:, 0] < fb.right) & (b[:, 2] > fb.left)
        near = np.zeros(len(b), dtype=bool)
        for edge, lo, hi, border, overlap in (
            (b[:, 0], fb.left, fb.right, b[:, 0] <= 1e-3, overlap_y),
            (b[:, 2], fb.left, fb.right, b[:, 2] >= 1 - 1e-3, overlap_y),
            (b[:, 1], fb.top, fb.bottom, b[:, 1] <= 1e-3, overlap_x),
            (b[:, 3], fb.top, fb.bottom, b[:, 3] >= 1 - 1e-3, overlap_x),
        ):
            near |= overlap & ~border & (edge > lo - m) & (edge < hi + m)
        out += face.score * near
    return out
