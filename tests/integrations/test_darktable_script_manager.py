"""pic.lua under lua-scripts' script manager (issue 14.2) and finding the right pic (14.5), in plain lua5.4.

The harness (script_manager_harness.lua) reproduces script_manager's start / stop / start again and a darktable
restart, and darktable's refusal to register a shortcut twice; the real darktable runs the plugin in
test_darktable_plugin.py.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO_ROOT, missing_requirement

HARNESS = Path(__file__).with_name("script_manager_harness.lua")
PLUGIN = REPO_ROOT / "plugins" / "darktable" / "pic.lua"
PIC = Path(sys.executable).with_name("pic")
GROFF_LIKE = "#!/bin/sh\n[ \"$1\" = --version ] && { echo 'GNU pic (groff) version 1.22.4'; exit 0; }\nexit 1\n"


def run(tmp_path: Path, path_dirs: list[Path]) -> dict[str, str]:
    lua = shutil.which("lua5.4")
    if lua is None:
        missing_requirement("lua5.4 is not installed (apt-get install lua5.4)")
    assert lua is not None
    lua_dir = tmp_path / "lua"
    (lua_dir / "contrib").mkdir(parents=True, exist_ok=True)
    shutil.copy(PLUGIN, lua_dir / "contrib" / "pic.lua")
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    out = tmp_path / "out.tsv"
    env = dict(os.environ, HOME=str(home), PATH=":".join(map(str, path_dirs)),
               PIC_CATALOG=str(tmp_path / "catalog.db"))
    proc = subprocess.run([lua, str(HARNESS), str(lua_dir), str(out)], env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    values: dict[str, str] = {}
    for line in out.read_text().splitlines():
        key, _, value = line.partition("\t")
        values[key] = value
    assert "DONE" in values, values
    return values


def groff_dir(tmp_path: Path) -> Path:
    d = tmp_path / "groff-bin"
    d.mkdir(exist_ok=True)
    (d / "pic").write_text(GROFF_LIKE)
    (d / "pic").chmod(0o755)
    return d


def test_start_stop_start_and_a_darktable_restart_under_script_manager(tmp_path: Path) -> None:
    v = run(tmp_path, [groff_dir(tmp_path), PIC.parent, Path("/usr/bin"), Path("/bin")])
    for step in ("start", "stop", "restart", "next_session"):
        assert v[f"{step}_ok"] == "true", (step, v.get(f"{step}_error"))
    assert v["start_shortcuts"] == "6" and v["start_visible"] == "true"
    assert v["stop_shortcuts"] == "0" and v["stop_visible"] == "false"
    assert v["restart_shortcuts"] == "6" and v["restart_visible"] == "true"
    assert v["next_session_shortcuts"] == "6" and v["shortcut_callable"] == "function"
    # the start-up check for pending crops found the real pic (after groff's on PATH) and ran it
    assert v["start_last"] == "pic: no pending crops" and v["next_last"] == "pic: no pending crops"


@pytest.mark.parametrize("with_groff", [True, False])
def test_a_missing_pic_is_a_clear_error_in_darktable_and_groffs_pic_never_runs(tmp_path: Path,
                                                                                 with_groff: bool) -> None:
    dirs = [groff_dir(tmp_path)] if with_groff else []
    v = run(tmp_path, [*dirs, Path("/bin")])
    assert v["start_ok"] == "true"
    assert v["start_last"].startswith("pic: pic not found: set 'pic: program'"), v["start_last"]
    assert "groff's pic is another program" in v["start_last"]
