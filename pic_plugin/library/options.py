"""The settings every front end shares: for whom a crop is suggested, in which ratio, how many, scored by what, and
where it is written (``SuggestOptions``). ``pic batch`` (``BatchOptions``), ``pic watch`` and the darktable
plugin's planner extend them; ``pic review`` uses them as they are."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pic_plugin.core.geometry import FREE, Ratio
from pic_plugin.editors.sidecars import WRITE_TARGETS

#: What ``--targets`` is when not given: pic's own record and darktable's sidecar (crs is opt-in: darktable
#: imports ``IMG.xmp`` too, which would crop twice).
DEFAULT_TARGETS = ("pic", "darktable")


@dataclass
class SuggestOptions:
    user: str | None = None
    ratio: Ratio = FREE
    top_k: int = 3
    targets: tuple[str, ...] = DEFAULT_TARGETS
    scorer: str | None = None  # a name of ``model.scorers`` (None: the default)


@dataclass
class BatchOptions(SuggestOptions):
    write: bool = True
    mode: str = "apply"  # apply: darktable renders the crop | suggest: metadata only, crop entry disabled
    force: bool = False  # replace a crop the user made (never without this)
    export_dir: Path | None = None
    jobs: int = 1
    dry_run: bool = False
    shard: tuple[int, int] | None = None
    refresh: bool = False  # redo files even when unchanged
    fast: bool = False  # no object detector: the subject from pic's subject map and faces alone (about 2x faster)
    darktable_library: Path | None = None  # darktable's library.db: imported photos take the library route


def parse_targets(text: str) -> tuple[str, ...]:
    """``--targets pic,darktable,crs`` -> the targets in the order given, each once."""
    targets = tuple(dict.fromkeys(t.strip().lower() for t in text.split(",") if t.strip()))
    unknown = [t for t in targets if t not in WRITE_TARGETS]
    if unknown or not targets:
        raise ValueError(f"--targets: unknown {', '.join(unknown) or '(none)'}; choose from {', '.join(WRITE_TARGETS)}")
    return targets
