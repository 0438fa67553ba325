"""Analysis of one photo file, with the catalog's feature cache in front of the CNN.

``analyze_file`` is what every front end calls: it recognises the file's content (``scan.content_key``),
reuses cached features when the content was seen before (also under another name), and otherwise decodes
and runs the feature extractor. Kept separate from ``batch`` so the watcher and ``pic suggest`` share it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pic_plugin.analysis import extract, features
from pic_plugin.analysis.features import ImageAnalysis
from pic_plugin.core.orientation import read_exif_orientation
from pic_plugin.imaging.decode import decode, image_format, raw_frame, raw_orientation
from pic_plugin.library.catalog import Catalog
from pic_plugin.library.scan import content_key


@dataclass
class FileAnalysis:
    path: Path
    content_key: str
    analysis: ImageAnalysis
    orientation: int
    format: str
    cached: bool  # features came from the catalog (no decode, no CNN)
    new_features: bytes | None = None  # serialized features to store, when freshly computed


def analyze_file(path: Path, cached: bytes | None = None, key: str | None = None, fast: bool = False) -> FileAnalysis:
    """Analyze ``path``; ``cached`` = the catalog's stored features for its content, if any. ``fast``: without the
    object detector (full features from the cache are still used when they are there).

    Raises DecodeError for unreadable images. Orientation is read again (cheap) because the catalog's cache is
    per content, and content is what the orientation tag belongs to anyway.
    """
    key = key or content_key(path)
    fmt = image_format(path) or "unknown"
    if cached is not None:
        try:
            analysis = ImageAnalysis.from_bytes(cached)
            if analysis.version == features.FEATURE_VERSION or (fast and analysis.version == features.FAST_FEATURE_VERSION):
                if fmt != "raw":
                    return FileAnalysis(path, key, analysis, read_exif_orientation(path), fmt, cached=True)
                # Features cached before pic used the editors' RAW frame have the preview's size: recompute those.
                frame = raw_frame(path)
                if frame is None or tuple(analysis.size) == frame.size:
                    return FileAnalysis(path, key, analysis, raw_orientation(path), fmt, cached=True)
        except (ValueError, KeyError, OSError):
            pass  # a damaged cache entry is recomputed
    decoded = decode(path, oversize=1.5)
    analysis = extract.analyze(decoded, with_objects=not fast)
    return FileAnalysis(
        path, key, analysis, decoded.orientation, decoded.format, cached=False, new_features=analysis.to_bytes()
    )


def analyze_with_catalog(path: Path, catalog: Catalog, key: str | None = None) -> FileAnalysis:
    """``analyze_file`` reading and filling the catalog's cache in this process (``key``: the content key, when
    the caller knows it already)."""
    key = key or content_key(path)
    result = analyze_file(path, catalog.features(key, features.FEATURE_VERSION), key)
    if result.new_features is not None:
        catalog.put_features(key, features.FEATURE_VERSION, result.new_features)
    return result
