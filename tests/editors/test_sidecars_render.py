"""Real darktable renders what pic writes: darktable-cli exports every case of one folder in a single call.

Each case is a small generated JPEG (stored with an EXIF orientation) plus the sidecar pic wrote. The render is
compared with the expected region of the upright original by size (pixel-exact: pic writes edges that survive
darktable's float32 arithmetic) and by the normalized correlation of small grey thumbnails, which tells the right
region from a mirrored or wrongly rotated one despite darktable's own tone processing (REAL-EDITORS.md).
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from conftest import jpeg_bytes, make_photo
from pic_plugin.core.geometry import Box
from pic_plugin.core.orientation import displayed_size
from pic_plugin.core.suggestion import Suggestion
from pic_plugin.editors.darktable import NS_DT
from pic_plugin.editors.sidecars import write_suggestion
from pic_plugin.editors.xmp import Struct, parse_xmp

pytestmark = [pytest.mark.slow, pytest.mark.darktable, pytest.mark.shared]

STORED = (240, 160)
SUBJECT = (0.25, 0.3)  # off-centre and inside A: mirrored or rotated regions look different
TONE_MODULES = {"temperature", "highlights", "channelmixerrgb", "filmicrgb", "exposure", "sharpen"}
A = Box(0.1, 0.15, 0.6, 0.65)  # asymmetric, so mirrors and wrong rotations render something else
B = Box(0.4, 0.05, 0.95, 0.5)


@dataclass
class Case:
    orientation: int
    expected_box: Box  # region of the upright original that must come out
    rotate_cw: bool = False  # the sidecar's own flip entry turns the output a quarter clockwise
    size_tolerance: int = 0
    note: str = ""


def _neutral_tones(sidecar: Path) -> bytes:
    """The sample with its tone modules switched off (entries kept, so every num and the history stay as they are).

    These histories were made for raw files; on an 8-bit JPEG their exposure/filmic/highlights settings clip whole
    channels, which leaves too little picture to compare. Geometry (flip, crop, clipping) is untouched.
    """
    doc = parse_xmp(sidecar.read_bytes())
    for li in doc.array_items(NS_DT, "history") or []:
        item = Struct(li)
        if item.get(NS_DT, "operation") in TONE_MODULES:
            item.set(NS_DT, "enabled", "0")
    return doc.to_bytes()


def _suggestion(crop: Box, orientation: int) -> Suggestion:
    return Suggestion(path="", crop=crop, score=1.0, ratio="free", size=displayed_size(STORED, orientation), model="t")


@pytest.fixture(scope="module")
def rendered(darktable_cli: str, shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Case, Path, Path]]:
    root = tmp_path_factory.mktemp("render")
    src, out = root / "in", root / "out"
    src.mkdir()
    samples = shared_data / "xmp-samples"
    cases: dict[str, Case] = {}

    def image(name: str, orientation: int, sidecar: Path | None = None) -> Path:
        path = src / f"{name}.jpg"
        path.write_bytes(jpeg_bytes(make_photo(*STORED, seed=3, subject=SUBJECT), orientation))
        if sidecar is not None:
            (src / f"{name}.jpg.xmp").write_bytes(_neutral_tones(sidecar))
        return path

    for o in (1, 3, 6, 8):
        img = image(f"o{o}", o)
        assert write_suggestion(img, _suggestion(A, o), o).status("darktable") == "written"
        cases[f"o{o}"] = Case(o, A)

    img = image("suggest", 6)
    assert write_suggestion(img, _suggestion(A, 6), 6, mode="suggest").status("darktable") == "written"
    cases["suggest"] = Case(6, Box(0, 0, 1, 1), note="disabled entry: darktable renders the full frame")

    img = image("rerun", 8)
    write_suggestion(img, _suggestion(B, 8), 8)
    assert write_suggestion(img, _suggestion(A, 8), 8).status("darktable") == "written"
    cases["rerun"] = Case(8, A, note="pic's previous entry was replaced, not stacked")

    # A full darktable 4.x history (py_darktable's default raw edit: rawprepare, demosaic, colorin, colorout, gamma,
    # temperature, highlights, sharpen, filmic, exposure, auto flip) next to a JPEG: darktable skips the raw-only
    # modules for a JPEG and applies the rest (tone modules switched off, see _neutral_tones); pic's crop is
    # appended as entry 11 after all of them and must still cut the right region.
    img = image("history", 6, samples / "py_darktable/darktable_default.xmp")
    assert write_suggestion(img, _suggestion(A, 6), 6).darktable_entry[0] == 11  # type: ignore[index]
    cases["history"] = Case(6, A, size_tolerance=1)

    # The user's crop (0094: square-ish crop v1, num 11) is kept; with force pic's crop replaces it.
    user = next((samples / "darktable-tests").glob("0094-*.xmp"))
    img = image("user", 1, user)
    assert write_suggestion(img, _suggestion(A, 1), 1).status("darktable") == "kept-user-crop"
    cases["user"] = Case(1, Box(0.0, 2.67e-7, 0.42977872, 0.64279574), size_tolerance=1)
    img = image("forced", 1, user)
    assert write_suggestion(img, _suggestion(A, 1), 1, force=True).status("darktable") == "written"
    cases["forced"] = Case(1, A, size_tolerance=1)

    # An explicit flip entry (0006: flip bits 5 = rotate CW) on an image without EXIF rotation: pic's crop is in
    # the unrotated frame, darktable's crop frame is the rotated one.
    img = image("flip", 1, next((samples / "darktable-tests").glob("0006-*.xmp")))
    assert write_suggestion(img, _suggestion(A, 1), 1).status("darktable") == "written"
    cases["flip"] = Case(1, A, rotate_cw=True, size_tolerance=1)

    cfg = root / "config"
    cfg.mkdir()
    proc = subprocess.run(
        [darktable_cli, str(src), str(out / "$(FILE_NAME)"), "--out-ext", "jpg",
         "--core", "--configdir", str(cfg), "--cachedir", str(root / "cache")],
        capture_output=True, timeout=300, check=False,
    )
    result = {}
    for name, case in cases.items():
        render = out / f"{name}.jpg"
        assert render.exists(), (name, proc.returncode, proc.stderr.decode(errors="replace")[-2000:])
        result[name] = (case, src / f"{name}.jpg", render)
    return result


def _thumb(img: Image.Image) -> np.ndarray:
    a = np.asarray(img.convert("L").resize((24, 24), Image.Resampling.BILINEAR), dtype=np.float64).ravel()
    a = a - a.mean()
    return a / (np.linalg.norm(a) + 1e-9)


def _corr(a: Image.Image, b: Image.Image) -> float:
    return float(_thumb(a) @ _thumb(b))


def _region(upright: Image.Image, box: Box, rotate_cw: bool = False) -> Image.Image:
    out = upright.crop(box.to_pixels(upright.size))
    return out.transpose(Image.Transpose.ROTATE_270) if rotate_cw else out


CASES = ["o1", "o3", "o6", "o8", "suggest", "rerun", "history", "user", "forced", "flip"]


@pytest.mark.parametrize("name", CASES)
def test_darktable_renders_exactly_the_region(rendered: dict[str, tuple[Case, Path, Path]], name: str) -> None:
    case, source, render_path = rendered[name]
    upright = ImageOps.exif_transpose(Image.open(source))
    assert upright.size == displayed_size(STORED, case.orientation)
    expected = _region(upright, case.expected_box, case.rotate_cw)
    render = Image.open(render_path)
    dw, dh = abs(render.size[0] - expected.size[0]), abs(render.size[1] - expected.size[1])
    assert dw <= case.size_tolerance and dh <= case.size_tolerance, (render.size, expected.size, case.note)
    right = _corr(render, expected)
    # what a frame mix-up would have produced: the box taken in the stored raster, or mirrored
    wrong_boxes = [Box(1 - case.expected_box.right, case.expected_box.top, 1 - case.expected_box.left, case.expected_box.bottom),
                   Box(case.expected_box.left, 1 - case.expected_box.bottom, case.expected_box.right, 1 - case.expected_box.top)]
    wrongs = [_corr(render, _region(upright, b, case.rotate_cw)) for b in wrong_boxes]
    if case.orientation != 1:
        stored = Image.open(source)
        stored.load()
        wrongs.append(_corr(render, _region(stored.copy(), case.expected_box, case.rotate_cw)))
    assert right > 0.9, (name, right, wrongs)
    if case.expected_box != Box(0, 0, 1, 1):
        assert right > max(wrongs) + 0.2, (name, right, wrongs)


GUI_SCRIPT = """
local dt = require "darktable"
local function log(s) local f = io.open([[%(log)s]], "a"); f:write(s .. "\\n"); f:close() end
dt.control.dispatch(function()
  for _ = 1, 480 do -- up to 4 minutes: darktable starts slowly on a loaded 2-core machine
    if tostring(dt.gui.current_view()) == "darkroom" then break end
    dt.control.sleep(500)
  end
  dt.control.sleep(5000) -- let the darkroom pipe finish before touching a module
  log("enable " .. tostring(dt.gui.action("iop/crop", 0, "enable", "on", 1.0)))
  dt.control.sleep(3000)
  dt.gui.current_view(dt.gui.views.lighttable) -- leaving the darkroom writes the history and the sidecar
  dt.control.sleep(3000)
  log("done")
end)
"""


def test_switching_on_a_suggestion_in_the_darktable_gui_applies_pics_rectangle(
        darktable_cli: str, tmp_path: Path) -> None:
    """DESIGN 2: the suggest-only (disabled) crop entry makes the crop module open on pic's rectangle.

    darktable 4.2 runs with its GUI under Xvfb (REAL-EDITORS.md recipe); a Lua script opens the photo in the
    darkroom, switches the crop module on (what a user does with its power button) and goes back to the lighttable,
    which writes the sidecar. darktable keeps pic's namespace when it rewrites the file, and the crop it applies
    is exactly pic's params; pic then sees it as the user's accepted crop (kept, and flagged as pic's suggestion).
    """
    import os
    import signal
    import time

    from pic_plugin.editors.darktable import read_crop
    from pic_plugin.editors.picns import read_record
    from pic_plugin.editors.sidecars import find_crops

    xvfb = shutil.which("xvfb-run")
    gui = shutil.which("darktable", path=os.path.dirname(darktable_cli)) or shutil.which("darktable")
    if xvfb is None or gui is None:
        from conftest import missing_requirement

        missing_requirement("xvfb-run and darktable (GUI) are needed (apt-get install xvfb xauth darktable)")
    img = tmp_path / "photo.jpg"
    img.write_bytes(jpeg_bytes(make_photo(*STORED, seed=3, subject=SUBJECT), 1))
    report = write_suggestion(img, _suggestion(A, 1), 1, mode="suggest")
    ours = report.darktable_entry
    assert ours is not None
    cfg, log = tmp_path / "cfg", tmp_path / "lua.log"
    cfg.mkdir()
    (cfg / "luarc").write_text(GUI_SCRIPT % {"log": log})
    proc = subprocess.Popen([xvfb, "-a", gui, "--configdir", str(cfg), "--cachedir", str(tmp_path / "cache"),
                             "--library", ":memory:", str(img)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 300  # ~20 s normally; generous for loaded CI machines
        while time.monotonic() < deadline and not (log.exists() and "done" in log.read_text()):
            time.sleep(0.5)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # dt.control.quit() does not end darktable 4.2 (REAL-EDITORS.md)
        proc.wait(timeout=30)
    assert log.exists() and "done" in log.read_text(), "darktable's GUI did not run the script"
    doc = parse_xmp((tmp_path / "photo.jpg.xmp").read_bytes())
    crop = read_crop(doc, 1)
    assert crop is not None and crop.enabled and crop.params_text == ours[1]
    assert doc.get(NS_DT, "auto_presets_applied") == "1"  # darktable rewrote the file (and renumbered) ...
    rec = read_record(doc)
    assert rec is not None and rec.crop == A  # ... and kept pic's namespace
    found = [c for c in find_crops(img, 1) if c.source == "darktable"]
    assert len(found) == 1 and found[0].is_pic_suggestion
    assert write_suggestion(img, _suggestion(B, 1), 1, mode="suggest").status("darktable") == "kept-user-crop"
