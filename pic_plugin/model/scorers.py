"""The scorers pic can suggest with, by name. A new scorer is one module plus one entry here.

- ``pic``: the learned PIC model (``network.py``): shipped prior weights + the user's active fine-tuned version from
  the catalog (no user or no version: the generic prior, moved by the user's profile attributes). The default.
- ``composition``: the explicit composition baseline (``composition.py``), no learning.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pic_plugin.core.suggestion import Scorer

DEFAULT = "pic"

_FACTORIES: dict[str, Callable[..., Scorer]] = {}


def register(name: str) -> Callable[[Callable[..., Scorer]], Callable[..., Scorer]]:
    def deco(factory: Callable[..., Scorer]) -> Callable[..., Scorer]:
        _FACTORIES[name] = factory
        return factory

    return deco


@register("composition")
def _composition(**_: Any) -> Scorer:
    from pic_plugin.analysis.composition import CompositionScorer

    return CompositionScorer()


@register("pic")
def _pic(catalog: Any = None, user: str | None = None, **_: Any) -> Scorer:
    from pic_plugin.model.personalize import load_scorer

    return load_scorer(catalog, user)


#: Cheap ways to learn a scorer's ``version`` without building it (``pic batch``'s unchanged check).
_VERSIONS: dict[str, Callable[..., str]] = {}


def _pic_version(catalog: Any = None, user: str | None = None, **_: Any) -> str:
    from pic_plugin.model.version import pic_version

    return pic_version(catalog, user)


_VERSIONS["pic"] = _pic_version


def version(name: str | None = None, **context: Any) -> str:
    """``load(name, **context).version``, without loading the model where that is possible."""
    key = name or DEFAULT
    if key in _VERSIONS:
        return _VERSIONS[key](**context)
    return load(key, **context).version


def names() -> list[str]:
    return sorted(_FACTORIES)


def load(name: str | None = None, **context: Any) -> Scorer:
    """Build the scorer ``name`` (default: DEFAULT). ``context`` may hold ``catalog`` and ``user``."""
    key = name or DEFAULT
    if key not in _FACTORIES:
        raise ValueError(f"unknown scorer {key!r}; choose from {', '.join(names())}")
    return _FACTORIES[key](**context)
