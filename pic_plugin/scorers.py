"""The scorers pic can suggest with, by name. A new scorer is one module plus one entry here.

- ``composition``: the explicit composition baseline (``composition.py``), no learning.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .suggest import Scorer

DEFAULT = "composition"

_FACTORIES: dict[str, Callable[..., Scorer]] = {}


def register(name: str) -> Callable[[Callable[..., Scorer]], Callable[..., Scorer]]:
    def deco(factory: Callable[..., Scorer]) -> Callable[..., Scorer]:
        _FACTORIES[name] = factory
        return factory

    return deco


@register("composition")
def _composition(**_: Any) -> Scorer:
    from .composition import CompositionScorer

    return CompositionScorer()


def names() -> list[str]:
    return sorted(_FACTORIES)


def load(name: str | None = None, **context: Any) -> Scorer:
    """Build the scorer ``name`` (default: DEFAULT). ``context`` may hold ``catalog`` and ``user``."""
    key = name or DEFAULT
    if key not in _FACTORIES:
        raise ValueError(f"unknown scorer {key!r}; choose from {', '.join(names())}")
    return _FACTORIES[key](**context)
