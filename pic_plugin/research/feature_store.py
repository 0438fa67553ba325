"""An on-disk cache of per-image features for training and evaluation sets (not for user libraries).

Training the prior and running the evaluation protocol touch the same ~700 development photos many times;
the backbone pass is the only slow part, so each ``ImageAnalysis`` is stored once as a small ``.npz`` file
named by the photo's content key, the feature version and whether the photo was mirrored. User libraries
use the catalog's feature table instead (same serialization, ``ImageAnalysis.to_bytes``).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path

import numpy as np

from pic_plugin.analysis import extract, features
from pic_plugin.analysis.features import ImageAnalysis
from pic_plugin.imaging.decode import decode
from pic_plugin.library.scan import content_key


def default_cache_dir() -> Path:
    env = os.environ.get("PIC_FEATURE_CACHE")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "pic" / "features"


class FeatureStore:
    """``analysis(path, flip)`` computes once and then reads from ``cache_dir``."""

    def __init__(self, cache_dir: Path | None = None) -> None:
        self.cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        self._memory: dict[tuple[str, bool], ImageAnalysis] = {}

    def _file(self, key: str, flip: bool) -> Path:
        return self.cache_dir / f"{key}-{features.FEATURE_VERSION}{'-flip' if flip else ''}.npz"

    def analysis(self, path: Path, flip: bool = False) -> ImageAnalysis:
        key = content_key(Path(path))
        if (key, flip) in self._memory:
            return self._memory[(key, flip)]
        file = self._file(key, flip)
        result: ImageAnalysis | None = None
        if file.exists():
            try:
                result = ImageAnalysis.from_bytes(file.read_bytes())
            except (ValueError, KeyError, OSError):
                result = None  # damaged entry: recompute
        if result is None or result.version != features.FEATURE_VERSION:
            decoded = decode(path)
            if flip:
                decoded = replace(decoded, pixels=np.ascontiguousarray(decoded.pixels[:, ::-1]))
            result = extract.analyze(decoded)
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            tmp = file.with_suffix(".tmp")
            tmp.write_bytes(result.to_bytes())
            tmp.replace(file)
        self._memory[(key, flip)] = result
        return result

    def analyses(self, paths: Iterable[Path], flip: bool = False) -> list[ImageAnalysis]:
        return [self.analysis(p, flip) for p in paths]
