"""Where the package's own files are: shipped weights, geometry priors, demo photos (``pic_plugin/data``)."""

from __future__ import annotations

from pathlib import Path

#: The shipped data folder (installed with the package; see ``pyproject.toml``'s package data).
DATA_DIR = Path(__file__).resolve().parent.parent / "data"
