"""darktable's sidecar file names: ``IMG.ext.xmp`` and duplicates ``IMG_NN.ext.xmp`` (FORMATS.md 1.1)."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path

# --- file names ------------------------------------------------------------------------------------------------


def sidecar_path(image: Path, duplicate: int = 0) -> Path:
    """``IMG.ext.xmp``, or ``IMG_NN.ext.xmp`` for duplicate N > 0 (1.1)."""
    if duplicate <= 0:
        return image.with_name(image.name + ".xmp")
    name = image.name
    stem, dot, ext = name.rpartition(".")
    base = f"{stem}_{duplicate:02d}.{ext}" if dot else f"{name}_{duplicate:02d}"
    return image.with_name(base + ".xmp")


def duplicate_sidecars(image: Path) -> list[tuple[int, Path]]:
    """Existing sidecars of the image and its duplicates, (version, path), version 0 first."""
    name = image.name
    stem, dot, ext = name.rpartition(".")
    pattern = re.compile(re.escape(stem) + r"_(\d+)\." + re.escape(ext) + r"\.xmp\Z" if dot
                         else re.escape(name) + r"_(\d+)\.xmp\Z", re.DOTALL)
    found: list[tuple[int, Path]] = []
    main = sidecar_path(image)
    if main.exists():
        found.append((0, main))
    try:
        names: Iterable[str] = os.listdir(image.parent)
    except OSError:
        return found
    for entry in sorted(names):
        m = pattern.match(entry)
        # IMG_01.JPG.xmp may also be the sidecar of a real file IMG_01.JPG rather than a duplicate of IMG.JPG
        if m and len(m.group(1)) >= 2 and not image.with_name(entry[: -len(".xmp")]).exists():
            found.append((int(m.group(1)), image.with_name(entry)))
    return sorted(found)
