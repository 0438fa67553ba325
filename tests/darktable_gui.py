"""Run the real darktable (GUI, under Xvfb) with a throw-away config and library, driven by a Lua file.

Used by tests/integrations/test_darktable_plugin.py. darktable 4.2 does not quit from Lua (``dt.control.quit()`` did not end
it, REAL-EDITORS.md), so the driver writes a marker line and the process is killed by its id.
"""

from __future__ import annotations

import os
import shutil
import signal
import struct
import subprocess
import time
import warnings
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from pic_plugin.core.geometry import Box

NS_DT = "{http://darktable.sf.net/}"
NS_RDF = "{http://www.w3.org/1999/02/22-rdf-syntax-ns#}"
DONE = "DONE"

# exposure v6 as darktable 4.2 writes it (layout read from a real darkroom edit: mode, black, exposure EV,
# deflicker percentile, deflicker target, compensate bias); -0.7 EV so nothing clips and the render stays comparable
EXPOSURE_V6 = struct.pack("<iffffi", 0, 0.0, -0.7, 50.0, -4.0, 0).hex()


def missing_programs() -> list[str]:
    return [p for p in ("darktable", "darktable-cli", "Xvfb", "xwd", "convert") if shutil.which(p) is None]


class Xvfb:
    """A private X server on a display number it picks itself (``-displayfd``), so parallel runs never collide."""

    def __init__(self, size: str = "1280x800x24") -> None:
        read_fd, write_fd = os.pipe()
        self.proc = subprocess.Popen(
            ["Xvfb", "-displayfd", str(write_fd), "-screen", "0", size, "-nolisten", "tcp"],
            pass_fds=(write_fd,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        os.close(write_fd)
        with os.fdopen(read_fd) as fh:
            number = fh.readline().strip()
        if not number.isdigit():
            self.stop()
            raise RuntimeError("Xvfb did not report a display")
        self.display = f":{number}"

    def screenshot(self, out: Path) -> Path:
        xwd = subprocess.run(["xwd", "-root", "-display", self.display], capture_output=True, check=True).stdout
        subprocess.run(["convert", "xwd:-", f"png:{out}"], input=xwd, check=True)
        return out

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@dataclass
class DarktableRun:
    config: Path
    marker: Path
    log: Path
    lines: list[str] = field(default_factory=list)
    exit_code: int | None = None  # set when darktable ended on its own (it is killed once the driver is done)

    @property
    def crashed(self) -> bool:
        return self.exit_code is not None and not (self.lines and self.lines[-1] == DONE)

    def log_excerpt(self, size: int = 4000) -> str:
        """The log's warnings and its end: what to read when darktable stopped early."""
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        flagged = [line for line in text.splitlines() if "CRITICAL" in line or "WARNING" in line or "signal" in line]
        return "\n".join(flagged[-20:]) + "\n...\n" + text[-size:]

    def values(self, key: str) -> list[str]:
        prefix = key + "\t"
        return [line[len(prefix):] for line in self.lines if line.startswith(prefix)]

    def value(self, key: str) -> str:
        found = self.values(key)
        assert found, f"driver wrote no {key!r}; log: {self.lines}"
        return found[-1]


def run_darktable(
    workdir: Path,
    images_dir: Path,
    driver_lua: str,
    plugin: Path,
    prefs: dict[str, str],
    xvfb: Xvfb,
    timeout: float = 150,
    start_timeout: float = 45,
    attempts: int = 2,
    library: str = ":memory:",
    plugin_dir: str = "",
) -> DarktableRun:
    """Start darktable on ``images_dir`` with ``plugin`` loaded from luarc and ``driver_lua`` run via --luacmd.

    The driver writes ``key<TAB>value`` lines to the file named by the Lua global ``PIC_TEST_OUT`` and ends with
    ``DONE``; darktable is killed then (or at ``timeout``). A start that never reaches the driver (seen now and
    then on a loaded machine: darktable sits in its start-up) is retried with a fresh config, and so is a darktable
    that died before the driver was done (darktable 4.2 crashed once in CI in the darkroom, not reproduced in tens of
    local runs); the crash is reported as a warning, and a second crash fails the test with the log. ``library`` is
    darktable's ``--library``: a file keeps what darktable wrote for the next run (a killed darktable leaves its lock
    file, which the next darktable removes since its process is gone). ``plugin_dir`` (e.g. ``contrib``, as
    lua-scripts keeps it): the plugin is copied there and luarc stays empty, so the driver loads it itself.
    """
    for attempt in range(1, attempts + 1):
        run = _run_once(workdir / f"attempt{attempt}", images_dir, driver_lua, plugin, prefs, xvfb, timeout,
                        start_timeout, library, plugin_dir)
        if run.lines and not run.crashed:
            return run
        if run.crashed and attempt < attempts:
            warnings.warn(f"darktable ended with {run.exit_code} after {run.lines[-1:]} (attempt {attempt}); "
                          f"retrying. Log:\n{run.log_excerpt(1500)}", stacklevel=2)
    return run


def _run_once(
    workdir: Path, images_dir: Path, driver_lua: str, plugin: Path, prefs: dict[str, str], xvfb: Xvfb,
    timeout: float, start_timeout: float, library: str, plugin_dir: str,
) -> DarktableRun:
    workdir.mkdir(parents=True)
    config = workdir / "dtconfig"
    (config / "lua" / plugin_dir).mkdir(parents=True)
    shutil.copy(plugin, config / "lua" / plugin_dir / plugin.name)
    (config / "luarc").write_text("" if plugin_dir else f'require "{plugin.stem}"\n')
    rc = {
        "ui_last/window_x": "0", "ui_last/window_y": "0", "ui_last/window_w": "1280", "ui_last/window_h": "800",
        "plugins/lighttable/preview/max_in_memory_images": "4",
    }
    rc.update(prefs)
    (config / "darktablerc").write_text("".join(f"{k}={v}\n" for k, v in rc.items()))
    marker = workdir / "driver.out"
    driver = workdir / "driver.lua"
    driver.write_text(f"PIC_TEST_OUT = {_lua_string(str(marker))}\n" + driver_lua)
    log = workdir / "darktable.log"
    env = dict(os.environ, DISPLAY=xvfb.display, HOME=str(workdir), LANG="C.UTF-8", LC_ALL="C.UTF-8")
    env.pop("WAYLAND_DISPLAY", None)
    cmd = [
        "darktable", "--configdir", str(config), "--library", library, "--cachedir", str(workdir / "cache"),
        "--luacmd", f"dofile({_lua_string(str(driver))})", str(images_dir),
    ]
    with open(log, "wb") as log_fh:
        proc = subprocess.Popen(cmd, env=env, stdout=log_fh, stderr=subprocess.STDOUT, start_new_session=True)
        run = DarktableRun(config, marker, log)
        try:
            start = time.monotonic()
            while time.monotonic() < start + timeout and proc.poll() is None:
                if marker.exists() and marker.read_text(errors="replace").rstrip().endswith(DONE):
                    break
                if not marker.exists() and time.monotonic() > start + start_timeout:
                    break
                time.sleep(0.3)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)  # the group we started: darktable and its helpers
            else:
                run.exit_code = proc.returncode
            proc.wait()
    if marker.exists():
        run.lines = marker.read_text(errors="surrogateescape").splitlines()
    return run


def _lua_string(text: str) -> str:
    return "'" + "".join(c if c.isalnum() or c in "/._- " else f"\\{ord(c)}" for c in text) + "'"


@dataclass
class Entry:
    num: int
    operation: str
    enabled: bool
    params: str


def read_history(sidecar: Path) -> tuple[list[Entry], int]:
    """darktable history entries (in num order) and history_end of a darktable sidecar."""
    root = ET.parse(sidecar).getroot()
    desc = next(root.iter(f"{NS_RDF}Description"))
    end = int(desc.get(f"{NS_DT}history_end", "0"))
    entries = []
    for li in root.iter(f"{NS_RDF}li"):
        op = li.get(f"{NS_DT}operation")
        if op is None:
            continue
        entries.append(Entry(int(li.get(f"{NS_DT}num", "0")), op, li.get(f"{NS_DT}enabled") == "1",
                             li.get(f"{NS_DT}params", "")))
    entries.sort(key=lambda e: e.num)
    return entries, end


def active(entries: list[Entry], end: int) -> list[Entry]:
    return [e for e in entries if e.num < end]


def lua_bytes(text: str) -> str:
    """A Lua string literal holding ``text``'s file-system bytes, whatever they are (quotes, newlines, ...)."""
    return '"' + "".join(f"\\{b}" for b in os.fsencode(text)) + '"'


def similarity(a: Image.Image, b: Image.Image) -> float:
    """Correlation of two images' 32x32 grey thumbnails: near 1 for the same picture, whatever the sizes."""
    x = np.asarray(a.convert("L").resize((32, 32)), dtype=np.float64).ravel()
    y = np.asarray(b.convert("L").resize((32, 32)), dtype=np.float64).ravel()
    x, y = x - x.mean(), y - y.mean()
    return float(x @ y / (np.linalg.norm(x) * np.linalg.norm(y) + 1e-9))


def region(upright: Image.Image, box: Box) -> Image.Image:
    w, h = upright.size
    return upright.crop((round(box.left * w), round(box.top * h), round(box.right * w), round(box.bottom * h)))


def moved(box: Box) -> Box:
    """``box`` shifted by half the room left around it, along the axis with more room, toward the larger side."""
    room_x, room_y = 1 - (box.right - box.left), 1 - (box.bottom - box.top)
    if room_x >= room_y:
        dx = room_x / 2 if box.left < 1 - box.right else -room_x / 2
        return Box(box.left + dx, box.top, box.right + dx, box.bottom)
    dy = room_y / 2 if box.top < 1 - box.bottom else -room_y / 2
    return Box(box.left, box.top + dy, box.right, box.bottom + dy)
