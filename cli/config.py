"""``~/.config/pic/config.toml`` ($XDG_CONFIG_HOME): defaults for the options one sets once.

    user = "me"
    ratio = "4:5"
    targets = "pic,darktable"
    catalog = "~/Pictures/pic.db"

Precedence: a flag on the command line, then the environment ($PIC_CATALOG), then this file, then pic's
defaults. The values become click's ``default_map``, which click already ranks below flags and environment
variables; ``catalog`` is left out while $PIC_CATALOG is set, because pic reads that variable itself.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

import click

#: Config key -> the parameter name the commands give that option.
KEYS = {"user": "user", "ratio": "ratio", "targets": "targets", "catalog": "catalog_path"}


def config_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "pic" / "config.toml"


def load_config(path: Path | None = None) -> dict[str, Any]:
    """The file's settings (empty when there is none). Raises click.UsageError for a file pic cannot use."""
    path = path or config_path()
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        return {}
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise click.UsageError(f"{path}: {exc}") from exc
    unknown = sorted(set(data) - set(KEYS))
    if unknown:
        raise click.UsageError(f"{path}: unknown key(s) {', '.join(unknown)} (known: {', '.join(KEYS)})")
    bad = [k for k, v in data.items() if not isinstance(v, str)]
    if bad:
        raise click.UsageError(f"{path}: {', '.join(bad)} must be text in quotes")
    if "catalog" in data:
        data["catalog"] = str(Path(data["catalog"]).expanduser())
    return data


def default_map(group: click.Group, settings: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """click's ``default_map`` for ``group``: each command gets the settings it has an option for."""
    if os.environ.get("PIC_CATALOG"):
        settings = {k: v for k, v in settings.items() if k != "catalog"}  # the environment wins over the file
    out: dict[str, dict[str, Any]] = {}
    for name, command in group.commands.items():
        params = {p.name for p in command.params}
        values = {KEYS[k]: v for k, v in settings.items() if KEYS[k] in params}
        if values:
            out[name] = values
    return out
