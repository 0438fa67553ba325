"""pic.lua under lua-scripts' script manager (issue 14.2) and finding the right pic (14.5).

In plain lua5.4, the harness (script_manager_harness.lua) reproduces script_manager's start / stop / start again and
a darktable restart, and darktable's refusal to register a shortcut twice. The same start / stop / start again
then runs in the real darktable 4.2 GUI (``test_start_stop_start_in_the_real_darktable``), which raises that refusal
itself ("key '...' already registered for event shortcut") when the plugin registers twice.
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


# script_manager's cycle in the real darktable 4.2 (lua-scripts itself is not installed here: the driver does
# what tools/script_manager.lua does, in the same order): start = require "contrib/pic" then show() (a lib that
# hides), stop = destroy(), start again = restart(). After each, the plugin's own shortcut (a darktable action)
# must run pic, or do nothing while stopped; darktable must log no Lua error.
SCRIPT_MANAGER_CYCLE = r"""
local dt = require "darktable"
local out = io.open(PIC_TEST_OUT, "w")
local function put(k, v) out:write(k, "\t", tostring(v), "\n") out:flush() end
local ok, data = pcall(require, "contrib/pic")
if ok and data.destroy_method == "hide" and data.show then ok, data = pcall(function() data.show() return data end) end
put("start_ok", ok)
if not ok then put("start_error", data) end

dt.control.dispatch(function()
  local fine, err = pcall(function()
    local pic = data.api
    local function wait_last(ms)
      local n = 0
      while (pic.last == nil or pic.busy) and n < ms / 100 do dt.control.sleep(100) n = n + 1 end
    end
    wait_last(30000)  -- the start-up check for pending crops
    put("startup_last", pic.last and pic.last.text)
    local function shortcut(tag, ms)
      pic.last = nil
      local good, why = pcall(dt.gui.action, "lua/pic: apply pending crops", 0, "", "", 1.0)
      if not good then put(tag .. "_action_error", why) end
      wait_last(ms)
      put(tag .. "_last", pic.last and pic.last.text)
      put(tag .. "_visible", dt.gui.libs.pic.visible)
    end
    shortcut("started", 30000)
    local good, why = pcall(data.destroy)
    put("stop_ok", good) if not good then put("stop_error", why) end
    shortcut("stopped", 3000)
    good, why = pcall(data.restart)
    put("restart_ok", good) if not good then put("restart_error", why) end
    shortcut("restarted", 30000)
  end)
  if not fine then put("error", err) end
  out:write("DONE\n") out:close()
end)
"""


@pytest.mark.slow
@pytest.mark.darktable
def test_start_stop_start_in_the_real_darktable(tmp_path: Path) -> None:
    from darktable_gui import Xvfb, missing_programs, run_darktable

    missing = missing_programs()
    if missing:
        missing_requirement(f"the darktable GUI test needs {', '.join(missing)} (apt-get install darktable xvfb x11-apps imagemagick)")
    photos = tmp_path / "photos"
    photos.mkdir()
    prefs = {"lua/pic/executable": str(PIC), "lua/pic/catalog": str(tmp_path / "catalog.db")}
    xvfb = Xvfb()
    try:
        run = run_darktable(tmp_path, photos, SCRIPT_MANAGER_CYCLE, PLUGIN, prefs, xvfb, plugin_dir="contrib")
    finally:
        xvfb.stop()
    assert run.lines and run.lines[-1] == "DONE", f"driver stopped after {run.lines[-3:]}:\n{run.log_excerpt()}"
    v = {line.partition("\t")[0]: line.partition("\t")[2] for line in run.lines}
    assert v["start_ok"] == "true", v.get("start_error")  # the double registration failed here
    assert not run.values("error"), run.values("error")
    assert v["stop_ok"] == "true" and v["restart_ok"] == "true", v
    assert v["startup_last"] == "pic: no pending crops", v
    assert (v["started_last"], v["started_visible"]) == ("pic: no pending crops", "true"), v
    assert (v["stopped_last"], v["stopped_visible"]) == ("nil", "false"), v  # stopped: the shortcut does nothing
    assert (v["restarted_last"], v["restarted_visible"]) == ("pic: no pending crops", "true"), v
    assert not [k for k in v if k.endswith("_action_error")], v
    assert "LUA ERROR" not in run.log.read_text(errors="replace")
