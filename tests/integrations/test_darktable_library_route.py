"""pic batch for photos darktable has imported, end to end in the real darktable GUI (issue 14.1).

darktable's library.db is the master copy of an imported photo's edits: it reads a sidecar only at import and
rewrites it from the database on the next rating. So for these photos ``pic batch`` writes no crop entry; the
suggestion waits in pic's catalog and the plugin applies it through darktable when darktable starts. The story,
with one on-disk library across three darktable-less and two darktable steps:

1. darktable imports a folder (it writes the sidecars); the user raises the exposure of one photo and crops another;
   darktable ends (killed: darktable 4.2 does not quit from Lua);
2. ``pic batch FOLDER --ratio 4:5 --darktable-library library.db`` says what waits for the plugin, appends nothing;
3. darktable starts again: the plugin applies what waits; darktable's own export shows pic's crop; the user rates
   two photos with darktable's rating action (the key 3), so darktable rewrites their sidecars;
4. afterwards: darktable's database holds the user's edit and pic's crop, the user's own crop untouched; the
   rewritten sidecars keep the crop; ``pic batch`` again says the crops are in darktable, writes nothing, and nothing
   waits any more.
"""

from __future__ import annotations

import json
import sqlite3
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from darktable_gui import EXPOSURE_V6, Xvfb, lua_bytes, missing_programs, moved, region, run_darktable, similarity
from PIL import Image, ImageOps

from conftest import REPO_ROOT, jpeg_bytes, make_photo, missing_requirement
from pic_plugin.core.geometry import Box
from pic_plugin.editors.darktable.styles import StyleItem, crop_item, make_style, write_style

pytestmark = [pytest.mark.slow, pytest.mark.darktable]

PLUGIN = REPO_ROOT / "plugins" / "darktable" / "pic.lua"
PIC = Path(sys.executable).with_name("pic")
USER_CROP = Box(0.2, 0.1, 0.9, 0.8)
IMAGES = {  # label -> file name
    "edited": "edited.jpg",
    "cropped": "cropped.jpg",
    "plain": "plain.jpg",
    "rot6": "rotated 6.jpg",
    "quotes": "it's \"$HOME\" `id`.jpg",
}
PIC_CROPS = ("edited", "plain", "rot6", "quotes")  # what pic crops: all but the photo the user cropped
RATED = ("edited", "plain")

COMMON = r"""
local dt = require "darktable"
local out = io.open(PIC_TEST_OUT, "w")
local function put(k, v) out:write(k, "\t", tostring(v), "\n") out:flush() end
local function by_name(name)
  for _, im in ipairs(dt.database) do if im.filename == name then return im end end
  put("error", "image not in darktable's library: " .. name)
end
local function copy(src, dst)
  local f = io.open(src, "rb") if not f then put("nocopy", dst) return end
  local d = f:read("a") f:close()
  local g = io.open(dst, "wb") g:write(d) g:close()
end
local function stage(label, tag) copy(by_name(IMAGES[label]).sidecar, STAGE .. "/" .. tag .. "-" .. label .. ".xmp") end
local function run(body)
  dt.control.dispatch(function()
    local ok, err = pcall(body)
    if not ok then put("error", err) end
    dt.control.sleep(1500)  -- darktable's own writes (database, sidecars) settle before it is killed
    out:write("DONE\n") out:close()
  end)
end
"""

IMPORT_AND_EDIT = COMMON + r"""
local function find_style(name) for _, s in ipairs(dt.styles) do if s.name == name then return s end end end
local function apply_file(file, name, image)
  dt.styles.import(file) local s = find_style(name) dt.styles.apply(s, image) dt.styles.delete(s)
end
run(function()
  dt.control.sleep(1500)
  apply_file(EXPOSURE_STYLE, "test exposure", by_name(IMAGES.edited))
  apply_file(USER_CROP_STYLE, "test user crop", by_name(IMAGES.cropped))
  for _, label in ipairs(LABELS) do stage(label, "imported") end
  put("count", #dt.database)
end)
"""

START_AGAIN = COMMON + r"""
local function tags(image)
  local t = {} for _, tg in ipairs(image:get_tags()) do t[#t + 1] = tg.name end return table.concat(t, ",")
end
run(function()
  local pic = package.loaded["pic"].api
  local n = 0  -- the plugin applies what waits by itself, a moment after darktable started
  while not (pic.last and pic.last.action == "pending" and not pic.busy) and n < 1200 do
    dt.control.sleep(100) n = n + 1
  end
  put("pending_summary", pic.last and pic.last.text)
  put("pending_done", pic.last and pic.last.done)
  for _, label in ipairs(LABELS) do
    local image = by_name(IMAGES[label])
    put("tags_" .. label, tags(image))
    stage(label, "applied")
    local fmt = dt.new_format("jpeg") fmt.quality = 95
    fmt:write_image(image, STAGE .. "/export-" .. label .. ".jpg")  -- darktable renders from its database
  end
  os.execute("xwd -root | convert xwd:- " .. STAGE .. "/lighttable.png")
  -- the user rates two photos the way the key 3 does (darktable's rating action on the selection)
  local rated = {}
  for _, label in ipairs(RATED) do rated[#rated + 1] = by_name(IMAGES[label]) end
  for _, label in ipairs(LABELS) do put("rating_before_" .. label, by_name(IMAGES[label]).rating) end
  dt.gui.selection(rated)
  local ok, err = pcall(dt.gui.action, "views/thumbtable/rating", 0, "three", "select", 1.0)
  if not ok then put("rating_action_error", err) end
  dt.control.sleep(1500)
  for _, label in ipairs(LABELS) do
    put("rating_" .. label, by_name(IMAGES[label]).rating)
    stage(label, "rated")
  end
end)
"""


def _library_rows(db: Path) -> dict[str, list[tuple[str, bytes, int]]]:
    """Each image's live history in darktable's database (read-only): (operation, params, enabled), in order."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        rows: dict[str, list[tuple[str, bytes, int]]] = {}
        for iid, name, end in con.execute("SELECT id, filename, history_end FROM images"):
            rows[name] = [(op, bytes(params), enabled) for op, params, enabled in con.execute(
                "SELECT operation, op_params, enabled FROM history WHERE imgid = ? AND num < ? ORDER BY num",
                [iid, end])]
        return rows
    finally:
        con.close()


def _ops(history: list[tuple[str, bytes, int]]) -> list[str]:
    return [op for op, _, _ in history]


def _pic(*args: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([str(PIC), *args], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def _crop_box(params: bytes) -> Box:
    return Box(*struct.unpack("<4f", params[:16]))


@pytest.fixture(scope="module")
def story(tmp_path_factory: pytest.TempPathFactory):
    missing = missing_programs()
    if missing:
        missing_requirement(f"the darktable GUI test needs {', '.join(missing)} (apt-get install darktable xvfb x11-apps imagemagick)")
    tmp = tmp_path_factory.mktemp("dtlibrary")
    photos, stage = tmp / "photos", tmp / "stage"
    photos.mkdir()
    stage.mkdir()
    for i, (label, name) in enumerate(IMAGES.items()):
        img = make_photo(600, 400, seed=20 + i, subject=(0.25 + 0.12 * i, 0.4 + 0.04 * i))
        (photos / name).write_bytes(jpeg_bytes(img, orientation=6 if label == "rot6" else 1))
    originals = {name: (photos / name).read_bytes() for name in IMAGES.values()}
    library, catalog = tmp / "library.db", tmp / "catalog.db"
    exposure = write_style(tmp / "exposure.dtstyle",
                           make_style("test exposure", "user edit", [StyleItem(0, "exposure", 6, EXPOSURE_V6)]))
    user_crop = write_style(tmp / "usercrop.dtstyle", make_style("test user crop", "user crop", [crop_item(USER_CROP)]))
    header = (
        f"STAGE = {lua_bytes(str(stage))}\nEXPOSURE_STYLE = {lua_bytes(str(exposure))}\n"
        f"USER_CROP_STYLE = {lua_bytes(str(user_crop))}\n"
        "IMAGES = {" + ", ".join(f"{k} = {lua_bytes(v)}" for k, v in IMAGES.items()) + "}\n"
        "LABELS = {" + ", ".join(f'"{k}"' for k in IMAGES) + "}\n"
        "RATED = {" + ", ".join(f'"{k}"' for k in RATED) + "}\n"
    )
    prefs = {"lua/pic/executable": str(PIC), "lua/pic/catalog": str(catalog), "lua/pic/ratio": "4:5"}
    xvfb = Xvfb()
    try:
        # 1. import and edit (pic has nothing for darktable yet)
        first = run_darktable(tmp / "dt1", photos, header + IMPORT_AND_EDIT, PLUGIN,
                              {**prefs, "lua/pic/pending_at_start": "FALSE"}, xvfb, library=str(library))
        _check_run(first)
        after_edit = _library_rows(library)
        sidecars_before = {n: (photos / f"{n}.xmp").read_bytes() for n in IMAGES.values()}
        # 2. pic batch, darktable not running
        batch = _pic("batch", str(photos), "--ratio", "4:5", "--json", "-j", "1", "--catalog", str(catalog),
                     "--darktable-library", str(library))
        sidecars_batch = {n: (photos / f"{n}.xmp").read_bytes() for n in IMAGES.values()}
        # 3. darktable again: the plugin applies what waits; the user rates two photos
        second = run_darktable(tmp / "dt2", photos, header + START_AGAIN, PLUGIN,
                               {**prefs, "lua/pic/pending_at_start": "TRUE"}, xvfb, library=str(library))
        _check_run(second)
    finally:
        xvfb.stop()
    # 4. darktable gone: pic batch again
    sidecars_rated = {n: (photos / f"{n}.xmp").read_bytes() for n in IMAGES.values()}
    again = _pic("batch", str(photos), "--ratio", "4:5", "-j", "1", "--catalog", str(catalog),
                 "--darktable-library", str(library))
    pending = _pic("dtstyle", "--pending", "--out", str(tmp / "pending"), "--catalog", str(catalog))
    rows = {Path(r["path"]).name: r for r in (json.loads(line) for line in batch.stdout.splitlines()
                                              if line.startswith("{"))}
    yield {
        "photos": photos, "stage": stage, "library": library, "first": first, "second": second, "rows": rows,
        "batch": batch, "again": again, "pending": pending, "pending_list": (tmp / "pending" / "pending.list"),
        "after_edit": after_edit, "final": _library_rows(library), "originals": originals,
        "sidecars_before": sidecars_before, "sidecars_batch": sidecars_batch, "sidecars_rated": sidecars_rated,
        "sidecars_end": {n: (photos / f"{n}.xmp").read_bytes() for n in IMAGES.values()},
    }


def _check_run(run) -> None:
    assert not run.values("error"), run.values("error")
    assert run.lines and run.lines[-1] == "DONE", f"driver stopped after {run.lines[-3:]}, darktable exit " \
        f"{run.exit_code}:\n{run.log_excerpt()}"


def test_darktable_imported_the_folder_and_kept_the_users_edits(story):
    assert story["first"].value("count") == str(len(IMAGES))
    rows = story["after_edit"]
    # (a style applied in darktable also brings the modules every history starts with: colorin, colorout, ...)
    assert "exposure" in _ops(rows[IMAGES["edited"]]) and "crop" not in _ops(rows[IMAGES["edited"]])
    assert [p for op, p, _ in rows[IMAGES["cropped"]] if op == "crop"] == [struct.pack("<4f2i", *USER_CROP, 0, 0)]
    assert all("crop" not in _ops(rows[IMAGES[label]]) for label in ("plain", "rot6", "quotes"))


def test_pic_batch_leaves_imported_photos_to_the_plugin(story):
    rows = story["rows"]
    for label in PIC_CROPS:
        assert rows[IMAGES[label]]["written"]["darktable_library"] == "pending", rows[IMAGES[label]]
    assert rows[IMAGES["cropped"]]["written"]["darktable_library"] == "kept-user-crop"
    summary = story["batch"].stdout + story["batch"].stderr
    assert "in darktable's library: 5 photos" in summary and "4 wait for the darktable plugin" in summary, summary
    for name in IMAGES.values():  # no crop entry darktable would not read (and would drop on the next rating)
        assert story["sidecars_batch"][name].count(b'darktable:operation="crop"') == \
            story["sidecars_before"][name].count(b'darktable:operation="crop"'), name


def test_the_plugin_applies_what_waits_when_darktable_starts(story):
    second = story["second"]
    assert second.value("pending_done") == "4", second.value("pending_summary")
    assert "crop applied to 4" in second.value("pending_summary")
    final = story["final"]
    for label in PIC_CROPS:
        ops = final[IMAGES[label]]
        assert ops[-1][0] == "crop" and ops[-1][2] == 1, (label, ops)
        ratio_n, ratio_d = struct.unpack("<2i", ops[-1][1][16:24])  # the crop module shows 4:5, locked (14.3)
        assert sorted(map(abs, (ratio_n, ratio_d))) == [4, 5], (label, ratio_n, ratio_d)
        assert "pic|applied" in second.value(f"tags_{label}").split(","), label
    edited = final[IMAGES["edited"]]
    assert edited[:-1] == story["after_edit"][IMAGES["edited"]]  # the user's edit as it was, pic's crop after it
    assert next(p for op, p, _ in edited if op == "exposure") == bytes.fromhex(EXPOSURE_V6)
    assert _crop_box(edited[-1][1]) == pytest.approx(tuple(story["rows"][IMAGES["edited"]]["crop"]), abs=1e-5)
    assert final[IMAGES["cropped"]] == story["after_edit"][IMAGES["cropped"]]  # the user's own crop, untouched


def test_darktable_renders_pics_crop_from_its_database(story):
    photos, stage = story["photos"], story["stage"]
    for label in PIC_CROPS:
        box = Box(*story["rows"][IMAGES[label]]["crop"])
        upright = ImageOps.exif_transpose(Image.open(photos / IMAGES[label]))
        exported = Image.open(stage / f"export-{label}.jpg")
        assert exported.width / exported.height == pytest.approx(4 / 5, rel=0.02), label
        want = region(upright, box)
        assert similarity(exported, want) > 0.9, label
        assert similarity(exported, want) > similarity(exported, region(upright, moved(box))) + 0.02, label
    assert Image.open(stage / "export-cropped.jpg").size == (420, 280)  # the user's 70 % x 70 % crop


def test_a_rating_afterwards_loses_nothing_and_pic_does_not_write_again(story):
    second, stage = story["second"], story["stage"]
    assert not second.values("rating_action_error"), second.values("rating_action_error")
    for label in IMAGES:
        before = second.value(f"rating_before_{label}")  # darktable's import default (1 star for a JPEG)
        assert label not in RATED or before != "3", label
        assert second.value(f"rating_{label}") == ("3" if label in RATED else before), label
        rated = (stage / f"rated-{label}.xmp").read_bytes()
        if label in RATED:  # darktable rewrote the sidecar from its database: the rating and pic's crop are in it
            assert b'xmp:Rating="3"' in rated, label
        if label in PIC_CROPS:
            assert b'darktable:operation="crop"' in rated, label
    again = story["again"].stdout + story["again"].stderr
    assert "4 show pic's crop in darktable" in again and "wait" not in again, again
    assert story["sidecars_end"] == story["sidecars_rated"]  # pic wrote nothing after darktable
    assert story["pending_list"].read_bytes() == b""  # and nothing waits for the plugin any more


def test_originals_untouched(story):
    for name, data in story["originals"].items():
        assert (story["photos"] / name).read_bytes() == data
    assert Image.open(story["stage"] / "lighttable.png").size == (1280, 800)
