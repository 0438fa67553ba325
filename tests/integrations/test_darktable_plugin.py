"""The darktable Lua plugin (plugins/darktable/pic.lua) in the real darktable: GUI under Xvfb, temporary config
and in-memory library, driven through the plugin's own shortcuts (darktable actions) from --luacmd.

One darktable session covers the whole user story, because starting darktable is the slow part:

1. the user's own edits exist first: an exposure edit on ``edited.jpg``, a crop on ``cropped.jpg``;
2. lighttable: "suggest crop" then "apply suggestion" on five images, three with hostile names;
3. "undo last apply"; 4. "learn from selected" with a fake ``pic`` that records its argv;
5. darkroom: the darkroom shortcut crops the image being edited, and the undo shortcut takes it back.

Then, outside darktable: the sidecars darktable wrote show the crop *appended* after the user's history, the
user's crop kept, the undo restoring the previous crop; darktable-cli renders the suggested region, and so does
darktable's own export from inside the session.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from darktable_gui import (
    EXPOSURE_V6,
    Xvfb,
    active,
    lua_bytes,
    missing_programs,
    moved,
    read_history,
    region,
    run_darktable,
    similarity,
)
from PIL import Image, ImageOps

from conftest import REPO_ROOT, jpeg_bytes, make_photo, missing_requirement
from pic_plugin.core.geometry import Box
from pic_plugin.editors.darktable.styles import StyleItem, crop_item, make_style, write_style

pytestmark = [pytest.mark.slow, pytest.mark.darktable]

ROOT = REPO_ROOT
PLUGIN = ROOT / "plugins" / "darktable" / "pic.lua"
PIC = Path(sys.executable).with_name("pic")
SCREENSHOT = ROOT / "docs" / "darktable-module.png"
SCREENSHOT_DARKROOM = ROOT / "docs" / "darktable-darkroom.png"

USER_CROP = Box(0.2, 0.1, 0.9, 0.8)

IMAGES = {  # label -> file name
    "edited": "edited.jpg",
    "cropped": "cropped.jpg",
    "quotes": "it's \"$HOME\" `id` $(x).jpg",
    "newline": "new\nline; rm -rf x.jpg",
    "rot6": "rotated 6.jpg",
    "darkroom": "darkroom.jpg",
}

DRIVER = r"""
local dt = require "darktable"
local out = io.open(PIC_TEST_OUT, "w")
local function put(k, v) out:write(k, "\t", tostring(v), "\n") out:flush() end
local function copy(src, dst)
  local f = io.open(src, "rb") if not f then put("nocopy", dst) return end
  local d = f:read("a") f:close()
  local g = io.open(dst, "wb") g:write(d) g:close()
end
local function by_name(name)
  for _, im in ipairs(dt.database) do if im.filename == name then return im end end
  put("error", "image not imported: " .. name)
end
local function find_style(name) for _, s in ipairs(dt.styles) do if s.name == name then return s end end end
local function apply_file(file, name, image)
  dt.styles.import(file) local s = find_style(name) dt.styles.apply(s, image) dt.styles.delete(s)
end
local function act(name)
  local ok, err = pcall(dt.gui.action, "lua/" .. name, 0, "", "", 1.0)
  if not ok then put("error", name .. ": " .. tostring(err)) end
end
-- the darkroom's pixelpipe finishing (an event of Lua API 9.0): act on a loaded image, as a user would
local pipe_runs = 0
pcall(dt.register_event, "pictest_pipe", "pixelpipe-processing-complete", function() pipe_runs = pipe_runs + 1 end)
local function wait_pipe(seen, ms)
  local n = 0
  while pipe_runs <= seen and n < ms / 100 do dt.control.sleep(100) n = n + 1 end
  put("pipe_waited", n * 100)
end
local function wait(pic)
  dt.control.sleep(400)
  local n = 0
  while pic.busy and n < 600 do dt.control.sleep(100) n = n + 1 end
end
local function tags(image)
  local t = {} for _, tg in ipairs(image:get_tags()) do t[#t + 1] = tg.name end return table.concat(t, ",")
end
local function export(image, path)
  local fmt = dt.new_format("jpeg") fmt.quality = 95 fmt:write_image(image, path)
end
local function stage(label, tag)
  local im = by_name(IMAGES[label])
  copy(im.sidecar, STAGE .. "/" .. tag .. "-" .. label .. ".xmp")
end

dt.control.dispatch(function()
  local ok, err = pcall(function()
    dt.control.sleep(1500)
    local pic = package.loaded["pic"].api
    local REAL_PIC = dt.preferences.read("pic", "executable", "file")
    put("api", dt.configuration.api_version_string)
    local all = {}
    for _, label in ipairs(LABELS) do all[#all + 1] = by_name(IMAGES[label]) end

    -- 1. the user's own edits
    apply_file(EXPOSURE_STYLE, "test exposure", by_name(IMAGES.edited))
    apply_file(USER_CROP_STYLE, "test user crop", by_name(IMAGES.cropped))
    stage("edited", "before") stage("cropped", "before")

    -- 2. lighttable: suggest, then apply, on the selection, through the module's shortcuts
    local five = {}
    for _, label in ipairs({ "edited", "cropped", "quotes", "newline", "rot6" }) do five[#five + 1] = by_name(IMAGES[label]) end
    dt.gui.libs.pic.expanded = true
    dt.gui.selection(five)
    act("pic: suggest crop for selected images") wait(pic)
    put("suggest_summary", pic.last.text)
    for _, label in ipairs(LABELS) do
      local im = by_name(IMAGES[label])
      local s = pic.suggestions[im.id]
      if s then put("crop_" .. label, s.crop) end
      put("tags_" .. label, tags(im))
    end
    act("pic: apply suggestion to selected images") wait(pic)
    put("apply_summary", pic.last.text)
    put("apply_done", pic.last.done) put("apply_kept", pic.last.kept) put("apply_failed", pic.last.failed)
    for _, label in ipairs(LABELS) do put("tags2_" .. label, tags(by_name(IMAGES[label]))) stage(label, "applied") end
    export(by_name(IMAGES.edited), STAGE .. "/exported-applied-edited.jpg")
    dt.control.sleep(1500)
    os.execute("xwd -root | convert xwd:- " .. SHOTS .. "/lighttable.png")

    -- 3. undo
    act("pic: undo last apply") wait(pic)
    put("undo_summary", pic.last.text)
    for _, label in ipairs(LABELS) do stage(label, "undone") end
    export(by_name(IMAGES.edited), STAGE .. "/exported-undone-edited.jpg")

    -- 4. learn, with a fake pic that records how it was called
    dt.preferences.write("pic", "executable", "file", FAKE_PIC)
    dt.preferences.write("pic", "user", "string", "anna")
    dt.gui.selection({ by_name(IMAGES.edited), by_name(IMAGES.quotes) })
    act("pic: learn from selected images") wait(pic)
    put("learn_summary", pic.last.text)

    -- 5. darkroom shortcut on the image being edited (last: back in the lighttable, darktable acts on the image
    -- the darkroom showed until the pointer moves, which no one does here), with the real pic again
    dt.preferences.write("pic", "executable", "file", REAL_PIC)
    dt.preferences.write("pic", "user", "string", "")
    dt.gui.selection({ by_name(IMAGES.darkroom) })
    local seen = pipe_runs
    dt.gui.current_view(dt.gui.views.darkroom)
    dt.control.sleep(1000)
    wait_pipe(seen, 20000)
    dt.control.sleep(500)
    put("darkroom_view", dt.gui.current_view().id)
    put("darkroom_image", dt.gui.action_images[1] and dt.gui.action_images[1].filename == IMAGES.darkroom)
    seen = pipe_runs
    act("pic: crop the image in darkroom") wait(pic)
    put("darkroom_summary", pic.last and pic.last.text)
    put("darkroom_after_view", dt.gui.current_view().id)
    put("darkroom_after_image", dt.gui.action_images[1] and dt.gui.action_images[1].filename == IMAGES.darkroom)
    wait_pipe(seen, 20000)
    dt.control.sleep(500)
    os.execute("xwd -root | convert xwd:- " .. SHOTS .. "/darkroom.png")
    dt.gui.current_view(dt.gui.views.lighttable)
    dt.control.sleep(2000)
    put("back_view", dt.gui.current_view().id)
    stage("darkroom", "dr_applied")
    -- ... and the undo shortcut in the darkroom takes it back (through the lighttable too)
    dt.gui.selection({ by_name(IMAGES.darkroom) })
    seen = pipe_runs
    dt.gui.current_view(dt.gui.views.darkroom)
    dt.control.sleep(1000)
    wait_pipe(seen, 20000)
    seen = pipe_runs
    act("pic: undo last apply") wait(pic)
    put("darkroom_undo_summary", pic.last and pic.last.text)
    put("darkroom_undo_view", dt.gui.current_view().id)
    wait_pipe(seen, 20000)
    dt.gui.current_view(dt.gui.views.lighttable)
    dt.control.sleep(2000)
    stage("darkroom", "dr_undone")
  end)
  if not ok then put("error", err) end
  out:write("DONE\n") out:close()
end)
"""


def _fake_pic(path: Path, record: Path) -> Path:
    path.write_text(
        f"#!{sys.executable}\n"
        "import json, os, sys\n"
        "argv = sys.argv[1:]\n"
        "if argv == ['--version']: print('pic, version 0 (test double)'); sys.exit(0)  # the plugin asks first\n"
        "listed = open(argv[argv.index('--files-from') + 1], 'rb').read()\n"
        f"json.dump({{'argv': argv, 'list': [os.fsdecode(p) for p in listed.split(b'\\0') if p]}}, open({str(record)!r}, 'w'))\n"
        "print('learned 2 crops for anna')\n"
    )
    path.chmod(0o755)
    return path


def _render(darktable_cli: str, image: Path, sidecar: Path, out: Path, tmp: Path) -> Image.Image:
    cfg = tmp / f"cli-{out.stem}"
    cfg.mkdir()
    subprocess.run([darktable_cli, str(image), str(sidecar), str(out), "--core", "--configdir", str(cfg)],
                   check=True, capture_output=True, timeout=120)
    return Image.open(out).convert("L")


def _box(text: str) -> Box:
    return Box(*(float(v) for v in text.split()))


def _params_box(params: str) -> Box:
    return Box(*struct.unpack("<4f", bytes.fromhex(params)[:16]))


def _crop_params(box: Box) -> str:
    return struct.pack("<4f2i", *box, 0, 0).hex()


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest):
    missing = missing_programs()
    if missing:
        missing_requirement(f"the darktable GUI test needs {', '.join(missing)} (apt-get install darktable xvfb x11-apps imagemagick)")
    tmp = tmp_path_factory.mktemp("dtgui")
    photos, stage, shots = tmp / "photos", tmp / "stage", tmp / "shots"
    for d in (photos, stage, shots):
        d.mkdir()
    for i, (label, name) in enumerate(IMAGES.items()):
        orientation = 6 if label == "rot6" else 1
        img = make_photo(600, 400, seed=i, subject=(0.25 + 0.1 * i, 0.35 + 0.05 * i))
        (photos / name).write_bytes(jpeg_bytes(img, orientation=orientation))
    originals = {name: (photos / name).read_bytes() for name in IMAGES.values()}
    exposure = write_style(tmp / "exposure.dtstyle",
                           make_style("test exposure", "user edit", [StyleItem(0, "exposure", 6, EXPOSURE_V6)]))
    user_crop = write_style(tmp / "usercrop.dtstyle", make_style("test user crop", "user crop", [crop_item(USER_CROP)]))
    record = tmp / "fake-pic.json"
    fake = _fake_pic(tmp / "fake-pic", record)
    header = (
        f"STAGE = {lua_bytes(str(stage))}\nSHOTS = {lua_bytes(str(shots))}\nEXPOSURE_STYLE = {lua_bytes(str(exposure))}\n"
        f"USER_CROP_STYLE = {lua_bytes(str(user_crop))}\nFAKE_PIC = {lua_bytes(str(fake))}\n"
        "IMAGES = {" + ", ".join(f"{k} = {lua_bytes(v)}" for k, v in IMAGES.items()) + "}\n"
        "LABELS = {" + ", ".join(f'"{k}"' for k in IMAGES) + "}\n"
    )
    prefs = {
        "lua/pic/executable": str(PIC),
        "lua/pic/catalog": str(tmp / "catalog.db"),
        "lua/pic/ratio": "4:5",
        "lua/pic/pending_at_start": "FALSE",  # this session drives every action itself
    }
    xvfb = Xvfb()
    try:
        run = run_darktable(tmp, photos, header + DRIVER, PLUGIN, prefs, xvfb)
    finally:
        xvfb.stop()
    assert not run.values("error"), run.values("error")
    assert run.lines and run.lines[-1] == "DONE", f"driver stopped after {run.lines[-3:]}, darktable exit " \
        f"{run.exit_code}:\n{run.log_excerpt()}"
    if os.environ.get("PIC_UPDATE_SCREENSHOTS") == "1" and (shots / "lighttable.png").exists():
        _save_screenshot(shots / "lighttable.png", SCREENSHOT, (270, 0, 1280, 520), 3 / 4)
        _save_screenshot(shots / "darkroom.png", SCREENSHOT_DARKROOM, (0, 0, 1280, 800), 1 / 2)
    yield {"run": run, "tmp": tmp, "photos": photos, "stage": stage, "shots": shots, "record": record,
           "originals": originals}


def _save_screenshot(src: Path, dst: Path, box: tuple[int, int, int, int], scale: float) -> None:
    """A screenshot for the README, trimmed and scaled down to a small PNG."""
    img = Image.open(src).convert("RGB").crop(box)
    img = img.resize((round(img.width * scale), round(img.height * scale)), Image.LANCZOS)
    img.quantize(colors=128).save(dst, optimize=True)


def test_runs_in_real_darktable(session):
    run = session["run"]
    assert run.value("api").startswith("9.")  # darktable 4.2 = Lua API 9.0.0
    assert "5 crops suggested" in run.value("suggest_summary")
    for label in ("edited", "cropped", "quotes", "newline", "rot6"):
        assert "pic|suggested" in run.value(f"tags_{label}").split(",")
        _box(run.value(f"crop_{label}"))  # a suggestion was stored for every image, hostile names included


def test_apply_appends_after_the_users_history(session):
    run, stage = session["run"], session["stage"]
    assert (run.value("apply_done"), run.value("apply_kept"), run.value("apply_failed")) == ("4", "1", "0")
    entries, end = read_history(stage / "applied-edited.xmp")
    ops = [e.operation for e in active(entries, end)]
    assert "exposure" in ops and ops[-1] == "crop"
    assert ops.index("exposure") < len(ops) - 1
    assert next(e for e in entries if e.operation == "exposure").params == EXPOSURE_V6  # the user's edit untouched
    crop = active(entries, end)[-1]
    assert crop.enabled and _params_box(crop.params) == pytest.approx(_box(run.value("crop_edited")), abs=1e-5)
    for label in ("quotes", "newline", "rot6"):
        entries, end = read_history(stage / f"applied-{label}.xmp")
        assert active(entries, end)[-1].operation == "crop" and active(entries, end)[-1].enabled, label
        assert "pic|applied" in run.value(f"tags2_{label}").split(",")


def test_the_users_own_crop_is_kept(session):
    run, stage = session["run"], session["stage"]
    entries, end = read_history(stage / "applied-cropped.xmp")
    crops = [e for e in active(entries, end) if e.operation == "crop"]
    assert [c.params for c in crops] == [_crop_params(USER_CROP)]
    assert "pic|applied" not in run.value("tags2_cropped").split(",")
    assert "kept your own crop" in run.value("apply_summary")


def test_rendered_result_shows_the_suggested_crop(session, darktable_cli, tmp_path):
    run, stage, photos = session["run"], session["stage"], session["photos"]
    for label in ("edited", "rot6"):
        image = photos / IMAGES[label]
        box = _box(run.value(f"crop_{label}"))
        upright = ImageOps.exif_transpose(Image.open(image))
        rendered = _render(darktable_cli, image, stage / f"applied-{label}.xmp", tmp_path / f"{label}.jpg", tmp_path)
        want = region(upright, box)
        assert rendered.width / rendered.height == pytest.approx(4 / 5, rel=0.02), label
        assert similarity(rendered, want) > 0.9, label
        # and it is this crop, not a neighbour: the same-size window moved by half the free room (a 4:5 crop of a
        # 2:3 or 3:2 frame always leaves >= 1/6 of the frame free on one axis) matches clearly worse
        assert similarity(rendered, want) > similarity(rendered, region(upright, moved(box))) + 0.02, label
    exported = Image.open(stage / "exported-applied-edited.jpg")  # darktable's own export inside the session
    assert exported.width / exported.height == pytest.approx(4 / 5, rel=0.02)
    assert similarity(exported, region(Image.open(photos / IMAGES["edited"]), _box(run.value("crop_edited")))) > 0.9


def test_undo_restores_the_previous_crop(session):
    run, stage = session["run"], session["stage"]
    assert "undone on 4" in run.value("undo_summary")
    entries, end = read_history(stage / "undone-edited.xmp")
    live = active(entries, end)
    assert [e.operation for e in live].count("exposure") == 1 and next(e for e in live if e.operation == "exposure").enabled
    last_crop = [e for e in live if e.operation == "crop"][-1]
    assert not last_crop.enabled  # there was no crop before pic's: the crop is off again
    exported = Image.open(stage / "exported-undone-edited.jpg")
    assert exported.size == (600, 400)
    for label in ("quotes", "newline", "rot6"):
        entries, end = read_history(stage / f"undone-{label}.xmp")
        assert not [e for e in active(entries, end) if e.operation == "crop"][-1].enabled, label
    entries, end = read_history(stage / "undone-cropped.xmp")  # never touched
    assert [e.params for e in active(entries, end) if e.operation == "crop"] == [_crop_params(USER_CROP)]


def test_darkroom_shortcut_crops_the_current_image(session):
    run, stage = session["run"], session["stage"]
    assert run.value("darkroom_view") == "darkroom"
    assert run.value("darkroom_image") == "true"
    assert "applied to 1" in run.value("darkroom_summary")
    # pic stepped out to the lighttable to change the history (doing it under the open darkroom crashed darktable)
    # and opened the same image again
    assert (run.value("darkroom_after_view"), run.value("darkroom_after_image")) == ("darkroom", "true")
    entries, end = read_history(stage / "dr_applied-darkroom.xmp")
    crop = [e for e in active(entries, end) if e.operation == "crop"][-1]
    assert crop.enabled
    # the undo shortcut in the darkroom: the crop is off again, and the darkroom is back
    assert "undone on 1" in run.value("darkroom_undo_summary")
    assert run.value("darkroom_undo_view") == "darkroom"
    entries, end = read_history(stage / "dr_undone-darkroom.xmp")
    assert not [e for e in active(entries, end) if e.operation == "crop"][-1].enabled


def test_learn_passes_sidecars_through_a_file_list(session):
    run, photos = session["run"], session["photos"]
    record = json.loads(session["record"].read_text())
    argv = record["argv"]
    assert argv[0] == "learn-files" and argv[argv.index("--user") + 1] == "anna"
    assert sorted(record["list"]) == sorted([str(photos / IMAGES["edited"]) + ".xmp", str(photos / IMAGES["quotes"]) + ".xmp"])
    assert all(Path(p).exists() for p in record["list"])
    assert not any(IMAGES["quotes"] in a for a in argv)  # names travel in the list, never on the command line
    assert "learned 2 crops" in run.value("learn_summary")


def test_originals_untouched_and_screenshots_taken(session):
    for name, data in session["originals"].items():
        assert (session["photos"] / name).read_bytes() == data
    for shot in ("lighttable.png", "darkroom.png"):
        img = Image.open(session["shots"] / shot)
        assert img.size == (1280, 800)
        assert np.asarray(img.convert("L")).std() > 5  # not a blank screen


def test_shell_quoting_helper_is_only_used_on_safe_or_quoted_text():
    """Every dt.control.execute call in the plugin quotes what it passes; file names never reach a command."""
    source = PLUGIN.read_text()
    for line in source.splitlines():
        if "dt.control.execute(" in line and "function" not in line:
            assert "sq(" in line or "execute(cmd)" in line, line
    assert "image_path(image)" not in "".join(
        line for line in source.splitlines() if "execute" in line or "run_pic(" in line
    )
    assert shutil.which("lua5.4") is None or subprocess.run(
        ["lua5.4", "-e", f"assert(loadfile({str(PLUGIN)!r}))"], capture_output=True).returncode == 0
