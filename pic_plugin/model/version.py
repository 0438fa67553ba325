"""Which model a suggestion of the ``pic`` scorer comes from, without importing torch.

``pic batch`` compares this string with the one stored for each photo to decide that an unchanged photo needs no
work; loading torch and the prior just to learn it would cost a second on every re-run. The prior's version is
kept in ``pic_prior.json`` next to the weights (written by ``network.save_prior``) together with the weights file's
SHA-256, so a weights file replaced without its JSON is noticed and the weights are loaded to ask them.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from pic_plugin.core.paths import DATA_DIR

PRIOR_FILE = DATA_DIR / "pic_prior.pt"
USER_FORMAT = "pic-user-1"  # the catalog's serialization of one user's model (``network.UserModel``)
#: How the scorer turns the weights into crops (rule weights, penalties). Part of every ``pic`` scorer version, so
#: that ``pic batch`` redoes its suggestions when this changes even though the weights did not; bump it then.
#: (A user's fine-tuned model belongs to the prior's weights, ``prior_version``, not to this.)
SCORING_REVISION = "s3"


def info_file(weights: Path) -> Path:
    return weights.with_suffix(".json")


def write_info(weights: Path, version: str) -> None:
    """Record ``version`` and the weights file's hash beside it (after the weights are written)."""
    digest = hashlib.sha256(weights.read_bytes()).hexdigest()
    info_file(weights).write_text(json.dumps({"version": version, "sha256": digest}, indent=1) + "\n")


def prior_version(weights: Path = PRIOR_FILE) -> str:
    """The version string of the shipped prior (``network.load_prior``'s ``meta["version"]``)."""
    try:
        info = json.loads(info_file(weights).read_text())
        if info.get("sha256") == hashlib.sha256(weights.read_bytes()).hexdigest() and info.get("version"):
            return str(info["version"])
    except (OSError, ValueError):
        pass  # no or unreadable info file: ask the weights
    import torch  # only when the info file does not answer

    blob = torch.load(weights, map_location="cpu", weights_only=True)
    return str((blob.get("meta") or {}).get("version", "pic"))


def pic_version(catalog: Any = None, user: str | None = None) -> str:
    """``PicScorer.version`` for ``user``: the prior's version and the scoring revision (``scorer_base``), plus
    ``+uN`` when the user's active model N was fitted to this prior (a model of another prior is not used, see
    ``personalize.active_user_model``) and ``+p...`` for a profile."""
    prior = prior_version()
    version = scorer_base(prior)
    if catalog is None or not user:
        return version
    tag = profile_tag((catalog.user(user) or {}).get("attributes"))
    active = active_user_record(catalog, user)
    if active is None:
        return version + tag
    number, stored = active
    # unreadable: the scorer falls back to the prior too
    usable = stored is not None and stored.get("format") == USER_FORMAT and str(stored.get("prior", "")) == prior
    return (f"{version}+u{number}" if usable else version) + tag


def scorer_base(prior: str) -> str:
    """The scorer's version before any user part: the prior's weights and the scoring revision."""
    return f"{prior}.{SCORING_REVISION}"


def active_user_record(catalog: Any, user: str) -> tuple[int, dict[str, Any] | None] | None:
    """The user's active model version and its stored JSON (None where unreadable), without torch; None when
    the user has no active model."""
    active = catalog.active_model(user)
    if active is None:
        return None
    number, data = active
    try:
        stored = json.loads(bytes(data).decode())
    except (ValueError, UnicodeDecodeError):
        return number, None
    return number, stored if isinstance(stored, dict) else None


def profile_tag(attributes: dict[str, Any] | None) -> str:
    """``+p`` and a short hash of the user's profile attributes ("" without any): a profile edited after the last
    fine-tune changes the suggestions (latent, framing rule), so ``pic batch`` must not take them as unchanged."""
    if not attributes:
        return ""
    blob = json.dumps({str(k): str(v) for k, v in attributes.items()}, sort_keys=True)
    return "+p" + hashlib.sha1(blob.encode()).hexdigest()[:6]
