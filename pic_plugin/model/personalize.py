"""The ``pic`` scorer for one user: the shipped prior + the user's active fine-tuned version from the catalog
(k = 0, or a version fitted to other shared weights: the prior moved by the user's profile attributes).

The catalog is only read, through the two methods of ``UserModelStore`` (``library.catalog.Catalog`` has them), so
this layer does not depend on the library above it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np
import torch

from pic_plugin.model.finetune import UserExample, finetune
from pic_plugin.model.network import PicNet, PicScorer, UserModel, active_rule, attribute_tokens, load_prior, prior_user
from pic_plugin.model.version import profile_tag, scorer_base

log = logging.getLogger(__name__)


class UserModelStore(Protocol):
    """Where users' profiles and fitted models are kept (the catalog)."""

    def user(self, name: str) -> dict[str, Any] | None: ...

    def active_model(self, user: str) -> tuple[int, bytes] | None: ...


def active_user_model(catalog: UserModelStore, user: str, net: PicNet, prior_version: str) -> tuple[UserModel, int]:
    """The user's active model (version > 0), or the prior moved by their attributes (version 0).

    Attributes edited after the last fine-tune still count: their embedding is swapped inside the latent.
    A version fitted to other shared weights is not used (the latent means nothing there): prior + attributes.
    """
    attributes = (catalog.user(user) or {}).get("attributes", {})
    active = catalog.active_model(user)
    if active is not None:
        version, data = active
        try:
            model = UserModel.from_bytes(data)
        except (ValueError, KeyError) as exc:
            log.warning("user %s: model version %d unreadable (%s); using the prior", user, version, exc)
        else:
            if model.prior == prior_version:
                if model.attributes != attributes:
                    with torch.no_grad():
                        old, new = net.attribute_latent([_tokens(model.attributes), _tokens(attributes)])
                    model.z = (model.z - old.numpy() + new.numpy()).astype(np.float32)
                    model.attributes = dict(attributes)
                    model.rule = active_rule(model.crops_rule, attributes)
                return model, version
            log.warning(
                "user %s: model version %d belongs to prior %r, not %r; using the prior + attributes",
                user,
                version,
                model.prior,
                prior_version,
            )
            fallback = prior_user(net, attributes, prior_version)
            # The framing rule does not depend on the shared weights: the crops' rule still holds.
            fallback.crops_rule = model.crops_rule
            fallback.rule = active_rule(model.crops_rule, attributes)
            return fallback, 0
    return prior_user(net, attributes, prior_version), 0


def _tokens(attributes: dict[str, Any]) -> list[int]:
    return attribute_tokens(attributes)


def load_scorer(catalog: UserModelStore | None = None, user: str | None = None) -> PicScorer:
    """The ``pic`` scorer: shipped prior weights + the user's active fine-tuned version (if any)."""
    net, meta = load_prior()
    prior_version = str(meta.get("version", "pic"))
    base = scorer_base(prior_version)
    if catalog is None or not user:
        return PicScorer(net, prior_user(net, None, prior_version), base)
    model, version = active_user_model(catalog, user, net, prior_version)
    scorer = PicScorer(net, model, base, version)
    scorer.version += profile_tag(model.attributes)  # same string as model_version.pic_version
    return scorer


def finetune_examples(examples: Sequence[UserExample], attributes: dict[str, Any] | None = None) -> UserModel:
    """Fine-tune the shipped prior on examples that are already in memory (tests, benchmarks)."""
    net, meta = load_prior()
    return finetune(net, examples, attributes, prior=str(meta.get("version", "")))
