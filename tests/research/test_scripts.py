"""The scripts that produce shipped data reproduce it exactly (seeded, fixed inputs)."""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

from conftest import REPO_ROOT
from pic_plugin.analysis.composition import GEOMETRY_FILE


def test_crop_statistics_reproduce_the_shipped_prior(shared_data: Path, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "geometry.json"
    script = REPO_ROOT / "scripts" / "crop_statistics.py"
    monkeypatch.setattr(sys, "argv", [str(script), "--out", str(out)])
    try:
        runpy.run_path(str(script), run_name="__main__")
    except SystemExit as exc:
        assert exc.code == 0
    assert out.read_text() == GEOMETRY_FILE.read_text()
