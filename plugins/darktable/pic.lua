--[[
  pic.lua - crop suggestions in your own style, inside darktable

  pic learns how you crop and suggests crops in that style (see plugins/darktable/README.md). This script
  adds a "pic crop" module to the lighttable (right panel):

    * ratio            the aspect ratio of the suggestions (free, original, 1:1, 4:5, ...)
    * suggest crop     ask pic for a crop of each selected image; tags them "pic|suggested" and shows the score
    * apply suggestion append pic's crop to each selected image's history (your edits stay; undo below)
    * apply pending    apply the crops `pic batch` suggested for images darktable has imported (its library wins
                       over the sidecars, so they come in through darktable); also done when darktable starts
    * undo last apply  put back the crop each image had before the last apply (darktable's own ctrl-z in the
                       lighttable, and the history stack in the darkroom, undo it too)
    * learn from selected
                       send the crops you made on the selected images to `pic learn` so pic learns your style

  Every action has a shortcut (preferences > shortcuts > lua), plus "pic: crop the image in darkroom". In the
  darkroom, pic steps out to the lighttable for a moment to change the history and opens the image again:
  changing the open image's history from Lua (which runs off darktable's GUI thread) crashed darktable 4.2.
  Work runs as a background job with darktable's progress bar and a cancel button; problems show as toasts.

  INSTALLATION
    with script_manager: copy this file to ~/.config/darktable/lua/contrib/pic.lua, then start "pic" in
                         script_manager (lighttable, left panel).
    by hand:             copy it to ~/.config/darktable/lua/pic.lua and add the line   require "pic"
                         to ~/.config/darktable/luarc
    Then set the path of the `pic` program in preferences > lua options (default: ~/.local/bin/pic or `pic`
    on PATH), your user name (whose style to crop in) and the default ratio.

  HOW IT TALKS TO PIC (why no file name is ever put into a shell command)
    darktable 4.x's Lua can start programs only through `sh -c` strings (dt.control.execute). A file name
    with a quote, `$`, a backtick or a newline would break such a string or, worse, run part of it. So:
      * the image paths go into a NUL-separated list file (pic reads it with --files-from);
      * that list file and the work folder come from os.tmpname() (a name made only of safe characters, checked
        below) - they are the only paths in the command, single-quoted;
      * the pic executable (a preference) is single-quoted with the POSIX '\'' rule, which is safe for any text;
      * pic answers in WORK/results.tsv (one tab-separated line per image, referring to images by their index
        in the list, never by name), reports WORK/progress, and stops when the script creates WORK/cancel.

  HOW THE CROP IS APPLIED (your history is kept)
    darktable 4.2 (Lua API 9.0) cannot edit a history from Lua, but it can import and apply a style, which
    APPENDS the style's items to the image's history. pic writes a one-item style holding a `crop` entry.
    Before that, the script exports each image's current history as a style ("snapshot"), so pic can
      - leave an image alone when you already cropped it yourself (preference "replace my crops" to override),
      - map the crop into the frame you rotated the image to,
      - write an "undo" style that restores the crop state from before (appended too, nothing is deleted).
    darktable 5.2+ (Lua API 9.5.0) also has image:apply_sidecar(), which REPLACES the history with a sidecar.
    It is used only when you turn on the preference "apply through the sidecar" (offered on 5.2+ only): the
    script first makes darktable write the sidecars, pic appends its crop to them, then each is reloaded and
    written again - the history is kept because the sidecar held it a moment before.

  Requires darktable 4.0 or newer (Lua API 7.0.0+), Linux or macOS (dt.control.execute uses sh).
]]

local dt = require "darktable"

local MODULE = "pic"
local gettext = dt.gettext
gettext.bindtextdomain(MODULE, dt.configuration.config_dir .. "/lua/locale/")

local function _(msgid)
  return gettext.dgettext(MODULE, msgid)
end

-- API version check, the lua-scripts way when its helpers are installed
local du_ok, du = pcall(require, "lib/dtutils")
if du_ok and du.check_min_api_version then
  du.check_min_api_version("7.0.0", MODULE)
elseif dt.configuration.api_version_major < 7 then
  dt.print_error("pic: needs darktable 4.0 or newer (Lua API 7.0.0), this is " .. dt.configuration.api_version_string)
  return
end

local script_data = {}

script_data.metadata = {
  name = "pic",
  purpose = _("crop suggestions in your own style"),
  author = "pic contributors",
  help = "pic's plugins/darktable/README.md (installation, preferences, how undo works)",
}

script_data.destroy = nil
script_data.destroy_method = "hide"
script_data.restart = nil
script_data.show = nil

local RATIOS = { "free", "original", "1:1", "4:5", "5:4", "3:2", "2:3", "4:3", "3:4", "16:9", "9:16" }

-- preferences (preferences > lua options)
local home = os.getenv("HOME") or ""
local default_exe = "pic"
do
  local f = io.open(home .. "/.local/bin/pic", "r")
  if f then
    f:close()
    default_exe = home .. "/.local/bin/pic"
  end
end
dt.preferences.register(MODULE, "executable", "file", _("pic: program"),
  _("the pic program (pip/pipx install it; e.g. ~/.local/bin/pic)"), default_exe)
dt.preferences.register(MODULE, "user", "string", _("pic: user name"),
  _("whose cropping style pic uses and learns (empty: pic's generic style)"), "")
dt.preferences.register(MODULE, "ratio", "enum", _("pic: default ratio"),
  _("aspect ratio the pic module starts with"), "free", table.unpack(RATIOS))
dt.preferences.register(MODULE, "replace_crops", "bool", _("pic: replace my crops"),
  _("apply suggestions also to images you already cropped yourself"), false)
dt.preferences.register(MODULE, "catalog", "string", _("pic: catalog file"),
  _("pic's catalog (empty: pic's default in ~/.local/share/pic)"), "")

-- image:apply_sidecar() exists from Lua API 9.5.0 (darktable 5.2). It REPLACES the history with the sidecar, so it
-- is opt-in; pic appends its crop to a sidecar darktable wrote just before, so the history is kept.
local HAS_APPLY_SIDECAR = dt.configuration.api_version_major > 9
  or (dt.configuration.api_version_major == 9 and dt.configuration.api_version_minor >= 5)
if HAS_APPLY_SIDECAR then
  dt.preferences.register(MODULE, "sidecar_route", "bool", _("pic: apply through the sidecar"),
    _("darktable 5.2+: write the sidecar, append pic's crop to it and reload it (image:apply_sidecar) instead of "
      .. "applying a style"), false)
end

local function pref(name, kind)
  return dt.preferences.read(MODULE, name, kind)
end

-- state
local pic = {
  busy = false,
  suggestions = {},   -- image id -> { crop = "l t r b", score = n, ratio = "4:5" }
  last_apply = nil,   -- { work = dir, items = { { image = img, undo_name = s, undo_file = s }, ... } }
  last = nil,         -- summary of the last finished job (for tests and the status line)
  ratio = nil,
  event_names = {},
}

local widgets = {}

-- helpers --------------------------------------------------------------------------------------------------

-- POSIX single quoting: safe for any string without NUL (used for the executable and our own tmp paths)
local function sq(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

local function image_path(image)
  return image.path .. "/" .. image.filename
end

local function file_exists(path)
  local f = io.open(path, "r")
  if f then
    f:close()
    return true
  end
  return false
end

local function read_all(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local data = f:read("a")
  f:close()
  return data
end

local function write_all(path, data)
  local f, err = io.open(path, "wb")
  if not f then return false, err end
  f:write(data)
  f:close()
  return true
end

local function toast(msg)
  dt.print(msg)
end

local function fail(msg)
  dt.print_error("pic: " .. msg)
  dt.print("pic: " .. msg)
end

local function status(msg)
  if widgets.status then widgets.status.label = msg end
end

-- a fresh work area: LIST (a file os.tmpname created for us) and WORK = LIST .. ".d" (pic creates it)
local function new_work()
  local list = os.tmpname()
  if not list:match("^[%w/_%.%-]+$") then
    os.remove(list)
    return nil, "unexpected temporary file name " .. list
  end
  return { list = list, dir = list .. ".d" }
end

local function remove_work(work)
  if not work then return end
  os.remove(work.list)
  dt.control.execute("rm -rf " .. sq(work.dir))  -- our own path, safe characters only
end

local function write_list(path, strings)
  return write_all(path, table.concat(strings, "\0") .. "\0")
end

local function paths_of(images)
  local paths = {}
  for i, image in ipairs(images) do paths[i] = image_path(image) end
  return paths
end

local function common_args()
  local args = {}
  local catalog = pref("catalog", "string")
  if catalog ~= "" then args[#args + 1] = "--catalog " .. sq(catalog) end
  return table.concat(args, " ")
end

local function current_ratio()
  return pic.ratio or pref("ratio", "enum") or "free"
end

local function user_name()
  return pref("user", "string") or ""
end

local function user_args()
  local user = user_name()
  if user ~= "" then return " --user " .. sq(user) end
  return ""
end

-- results.tsv -> { [index] = row }
local function read_results(path)
  local rows = {}
  local data = read_all(path)
  if not data then return rows end
  for line in data:gmatch("[^\n]+") do
    local f = {}
    for field in (line .. "\t"):gmatch("([^\t]*)\t") do f[#f + 1] = field end
    local index = tonumber(f[1])
    if index then
      rows[index] = {
        status = f[2], crop = f[3], score = tonumber(f[4]), ratio = f[5],
        style_name = f[6], style_file = f[7], undo_name = f[8], undo_file = f[9], message = f[10] or "",
      }
    end
  end
  return rows
end

-- Is EXE pic? Ask it: `pic --version` answers "pic, version ...". Debian's groff-base installs another program
-- named pic (/usr/bin/pic, "GNU pic (groff)"), which must never run with pic's arguments.
local function is_pic(exe)
  if not exe or exe == "" or not file_exists(exe) then return false end
  local out = os.tmpname()
  if not out:match("^[%w/_%.%-]+$") then os.remove(out) return false end
  dt.control.execute(sq(exe) .. " --version >" .. sq(out) .. " 2>/dev/null </dev/null")
  local text = read_all(out) or ""
  os.remove(out)
  return text:match("^pic, version ") ~= nil
end

local found_pic = { pref = nil, exe = nil }

-- The pic program: the preference, ~/.local/bin/pic, then each `pic` on PATH - the first that answers as pic.
local function find_pic()
  local wanted = pref("executable", "file") or ""
  if found_pic.exe and found_pic.pref == wanted then return found_pic.exe end
  local candidates = {}
  if wanted ~= "" and wanted ~= "pic" then candidates[#candidates + 1] = wanted end
  candidates[#candidates + 1] = home .. "/.local/bin/pic"
  for dir in (os.getenv("PATH") or ""):gmatch("[^:]+") do candidates[#candidates + 1] = dir .. "/pic" end
  for _i, exe in ipairs(candidates) do
    if is_pic(exe) then
      found_pic.pref, found_pic.exe = wanted, exe
      return exe
    end
  end
  return nil
end

local PIC_NOT_FOUND = "pic not found: set 'pic: program' in preferences > lua options to your pic "
  .. "(e.g. ~/.local/bin/pic); groff's pic is another program"

-- Run `pic ARGS` in the background; follow WORK/progress in a darktable job that can be cancelled.
-- Returns the exit status (number) or nil when cancelled / darktable is quitting.
local function run_pic(args, work, label)
  local exe = find_pic()
  if not exe then
    write_all(work.list .. ".err", PIC_NOT_FOUND .. "\n")  -- what stderr_line shows the user
    return 127
  end
  local cmd = "(" .. sq(exe) .. " " .. args .. " >" .. sq(work.list .. ".out") .. " 2>" .. sq(work.list .. ".err")
    .. "; echo $? >" .. sq(work.list .. ".rc") .. ") </dev/null &"
  local cancelled = false
  local job = dt.gui.create_job(label, true, function() cancelled = true end)
  dt.control.execute(cmd)
  local rc = nil
  while true do
    local text = read_all(work.list .. ".rc")
    if text and text:match("%d") then
      rc = tonumber(text:match("%d+"))
      break
    end
    if cancelled or dt.control.ending then
      write_all(work.dir .. "/cancel", "")
      cancelled = true
    end
    local progress = read_all(work.dir .. "/progress")
    if progress then
      local done, total = progress:match("(%d+) (%d+)")
      if done and tonumber(total) > 0 then job.percent = tonumber(done) / tonumber(total) end
    end
    dt.control.sleep(200)
  end
  job.valid = false
  if cancelled then rc = nil end
  return rc
end

local function stderr_line(work)
  local err = read_all(work.list .. ".err") or ""
  local line = nil
  for l in err:gmatch("[^\n]+") do
    if not l:match("^%s*$") then line = l end
  end
  return line
end

local function cleanup_files(work)
  os.remove(work.list .. ".out")
  os.remove(work.list .. ".err")
  os.remove(work.list .. ".rc")
end

local function find_style(name)
  for _i, s in ipairs(dt.styles) do
    if s.name == name then return s end
  end
  return nil
end

-- import FILE, apply the style NAME it holds to IMAGE, remove it from darktable's style list again
local function apply_style_file(file, name, image)
  local old = find_style(name)
  if old then
    -- a leftover of an interrupted run is ours (its description starts with "pic:"); anything else is the user's
    if (old.description or ""):sub(1, 4) ~= "pic:" then
      return false, string.format(_("you have a style named '%s'; please rename it"), name)
    end
    pcall(dt.styles.delete, old)
  end
  local ok, err = pcall(dt.styles.import, file)
  if not ok then return false, tostring(err) end
  local style = find_style(name)
  if not style then return false, "style " .. name .. " was not imported" end
  ok, err = pcall(dt.styles.apply, style, image)
  pcall(dt.styles.delete, style)
  if not ok then return false, tostring(err) end
  pcall(function() image:drop_cache() end)
  return true
end

local function tag(name)
  return dt.tags.create(name)
end

local function begin(images, what)
  if pic.busy then
    toast(_("pic is still working, please wait"))
    return false
  end
  if not images or #images == 0 then
    toast(_("pic: select images first"))
    return false
  end
  if dt.configuration.running_os == "windows" then
    fail(_("this script needs Linux or macOS"))
    return false
  end
  pic.busy = true
  status(what)
  return true
end

local function finish(summary)
  pic.busy = false
  pic.last = summary
  status(summary.text or "")
end

-- a work area whose list holds STRINGS; nil (and the action ended with the error) when none can be made
local function start_work(action, strings)
  local work, err = new_work()
  if not work then
    fail(err)
    finish({ action = action, error = err })
    return nil
  end
  write_list(work.list, strings)
  return work
end

-- actions --------------------------------------------------------------------------------------------------

-- ask pic for a crop of each image; remember it, tag the image and show the score
function pic.suggest(images)
  if not begin(images, _("suggesting...")) then return nil end
  local work = start_work("suggest", paths_of(images))
  if not work then return pic.last end
  local ratio = current_ratio()
  local rc = run_pic("dtstyle --files-from " .. sq(work.list) .. " --out " .. sq(work.dir) .. " --ratio " .. sq(ratio)
    .. user_args() .. " " .. common_args(), work, _("pic: suggesting crops"))
  local rows = read_results(work.dir .. "/results.tsv")
  local summary = { action = "suggest", rc = rc, done = 0, failed = 0, rows = rows }
  local suggested = tag("pic|suggested")
  local best = nil
  for i, image in ipairs(images) do
    local row = rows[i]
    if row and row.status == "suggested" then
      pic.suggestions[image.id] = { crop = row.crop, score = row.score, ratio = row.ratio }
      dt.tags.attach(suggested, image)
      summary.done = summary.done + 1
      if not best or row.score > best.score then best = { score = row.score, image = image, ratio = row.ratio } end
    elseif row then
      summary.failed = summary.failed + 1
      dt.print_error("pic: " .. image.filename .. ": " .. row.message)
    end
  end
  if rc == nil then
    summary.text = _("pic: cancelled")
  elseif summary.done == 0 then
    summary.text = "pic: " .. (stderr_line(work) or _("no suggestion"))
    fail(summary.text:sub(6))
  elseif #images == 1 then
    summary.text = string.format(_("pic: crop suggested for %s (%s), score %.2f"), images[1].filename,
      best.ratio, best.score)
  else
    summary.text = string.format(_("pic: %d crops suggested, best score %.2f"), summary.done, best.score)
  end
  if summary.failed > 0 then
    summary.text = summary.text .. string.format(_(", %d failed"), summary.failed)
  end
  toast(summary.text)
  cleanup_files(work)
  remove_work(work)
  finish(summary)
  return summary
end

-- export each image's current history as a style: what pic needs to protect your crop and to undo
local function snapshot(images, snaps_dir, token)
  dt.control.execute("mkdir -p -m 700 " .. sq(snaps_dir))
  for i, image in ipairs(images) do
    local name = "pic_snapshot_" .. token .. "_" .. i
    local ok, style = pcall(function() return image:create_style(name, "pic: history before applying a crop") end)
    if ok and style then
      pcall(dt.styles.export, style, snaps_dir, true)
      pcall(dt.styles.delete, style)
      os.rename(snaps_dir .. "/" .. name .. ".dtstyle", snaps_dir .. "/snap-" .. i .. ".dtstyle")
    end
  end
end

-- darktable's Lua runs off the GUI thread, and changing the history of the image open in the darkroom makes
-- darktable reload the darkroom's modules from that thread: in our tests that corrupted darktable's memory and crashed
-- it ("realloc(): invalid next size"). View switches are handed to the GUI thread, so in the darkroom pic steps out to
-- the lighttable (where leaving has saved the darkroom's history), does FN there, and opens the image again.
local function show_view(view)
  dt.gui.current_view(view)
  local n = 0
  while dt.gui.current_view().id ~= view.id and n < 200 do dt.control.sleep(100) n = n + 1 end
  return dt.gui.current_view().id == view.id
end

local function outside_darkroom(fn)
  if dt.gui.current_view().id ~= dt.gui.views.darkroom.id then return fn() end
  local open, selection = dt.gui.action_images[1], dt.gui.selection()
  if not show_view(dt.gui.views.lighttable) then
    local summary = { done = 0, failed = 0, text = _("pic: could not leave the darkroom to change the history") }
    fail(summary.text:sub(6))
    return summary
  end
  local summary = fn()
  if open then
    dt.gui.selection({ open })  -- the darkroom opens the selected image (or the one under the pointer)
    show_view(dt.gui.views.darkroom)
    dt.gui.selection(selection)
    local now = dt.gui.action_images[1]
    if summary and summary.text and not (now and now.id == open.id) then
      summary.text = summary.text .. string.format(_("; open %s again to see it"), open.filename)
    end
  end
  return summary
end

-- append pic's crop to each image's history; remember how to undo it. PENDING: apply the suggestions `pic batch`
-- left for darktable (photos in its library) instead of asking for new ones.
local function apply_crops(images, pending)
  local work = start_work("apply", paths_of(images))
  if not work then return { action = "apply", done = 0, kept = 0, failed = #images, text = "pic: " .. pic.last.error } end
  local snaps = work.list .. ".snaps"
  snapshot(images, snaps, work.list:match("([%w_]+)$") or "x")
  local args = "dtstyle --files-from " .. sq(work.list) .. " --out " .. sq(work.dir) .. " --snapshots " .. sq(snaps)
    .. " --ratio " .. sq(current_ratio()) .. user_args() .. " " .. common_args()
  if pref("replace_crops", "bool") then args = args .. " --replace-crops" end
  if pending then args = args .. " --pending" end
  local sidecar_route = HAS_APPLY_SIDECAR and pref("sidecar_route", "bool") and not pending
  for _i, image in ipairs(images) do
    -- pic writes IMG.ext.xmp; a duplicate's sidecar is IMG_NN.ext.xmp: use the style route for such a batch
    if image.duplicate_index ~= 0 then sidecar_route = false end
  end
  if sidecar_route then
    -- the sidecars must hold the current history before pic appends to them (acts on the same images)
    pcall(dt.gui.action, "lib/copy_history/write sidecar files", 0, "", "", 1.0)
    args = args .. " --write-sidecars"
  end
  local rc = run_pic(args, work, _("pic: applying crops"))
  dt.control.execute("rm -rf " .. sq(snaps))
  local rows = read_results(work.dir .. "/results.tsv")
  local summary = { action = "apply", rc = rc, done = 0, kept = 0, failed = 0, rows = rows }
  local undo = { work = work, items = {} }
  local applied_tag, suggested_tag = tag("pic|applied"), tag("pic|suggested")
  for i, image in ipairs(images) do
    local row = rows[i]
    if row and row.status == "ready" then
      local ok, why
      if sidecar_route then
        ok, why = pcall(function() image:apply_sidecar(image.sidecar) end)
        why = tostring(why)
      else
        ok, why = apply_style_file(row.style_file, row.style_name, image)
      end
      if ok then
        summary.done = summary.done + 1
        undo.items[#undo.items + 1] = { image = image, undo_name = row.undo_name, undo_file = row.undo_file }
        dt.tags.attach(applied_tag, image)
        pcall(dt.tags.detach, suggested_tag, image)
        if row.message ~= "" then dt.print_log("pic: " .. image.filename .. ": " .. row.message) end
      else
        summary.failed = summary.failed + 1
        dt.print_error("pic: " .. image.filename .. ": " .. why)
      end
    elseif row and row.status == "kept-user-crop" then
      summary.kept = summary.kept + 1
    elseif row then
      summary.failed = summary.failed + 1
      dt.print_error("pic: " .. image.filename .. ": " .. row.message)
      summary.message = row.message
    end
  end
  if sidecar_route then
    pcall(dt.gui.action, "lib/copy_history/write sidecar files", 0, "", "", 1.0)  -- timestamps match again
  end
  if #undo.items > 0 then
    if pic.last_apply then remove_work(pic.last_apply.work) end
    pic.last_apply = undo
  else
    remove_work(work)
  end
  if rc == nil then
    summary.text = _("pic: cancelled")
  elseif summary.done == 0 and summary.kept == 0 then
    summary.text = "pic: " .. (summary.message or stderr_line(work) or _("nothing applied"))
    fail(summary.text:sub(6))
  else
    summary.text = string.format(_("pic: crop applied to %d image(s)"), summary.done)
    if summary.kept > 0 then
      summary.text = summary.text .. string.format(_(", %d kept your own crop"), summary.kept)
    end
    if summary.failed > 0 then
      summary.text = summary.text .. string.format(_(", %d failed"), summary.failed)
    end
  end
  cleanup_files(work)
  return summary
end

function pic.apply(images)
  if not begin(images, _("applying...")) then return nil end
  local summary = outside_darkroom(function() return apply_crops(images) end)
  toast(summary.text)
  finish(summary)
  return summary
end

-- the images `pic batch` left for darktable: pic lists their paths, the script finds them in darktable's film rolls
local function pending_images()
  local work, err = new_work()
  if not work then return nil, err end
  local rc = run_pic("dtstyle --pending --out " .. sq(work.dir) .. " " .. common_args(), work,
    _("pic: looking for pending crops"))
  local data = read_all(work.dir .. "/pending.list") or ""
  local why = stderr_line(work)
  cleanup_files(work)
  remove_work(work)
  if rc ~= 0 then return nil, why or ("pic failed (" .. tostring(rc) .. ")") end
  local wanted, folders = {}, {}
  for path in data:gmatch("([^%z]+)%z") do
    wanted[path] = true
    folders[path:match("^(.*)/[^/]*$") or ""] = true
  end
  local images = {}
  for _i, film in ipairs(dt.films) do
    if folders[film.path] then
      for j = 1, #film do
        local image = film[j]
        if image.duplicate_index == 0 and wanted[image_path(image)] then images[#images + 1] = image end
      end
    end
  end
  return images
end

-- apply what `pic batch` left pending (darktable's library wins over sidecars, so pic's crop comes in this way)
function pic.apply_pending()
  if pic.busy then
    toast(_("pic is still working, please wait"))
    return nil
  end
  pic.busy = true
  status(_("looking for pending crops..."))
  local images, err = pending_images()
  pic.busy = false
  if not images then
    fail(err)
    finish({ action = "pending", done = 0, failed = 0, text = "pic: " .. err })
    return pic.last
  end
  if #images == 0 then
    finish({ action = "pending", done = 0, kept = 0, failed = 0, text = _("pic: no pending crops") })
    return pic.last
  end
  if not begin(images, _("applying pending crops...")) then return nil end
  local summary = outside_darkroom(function() return apply_crops(images, true) end)
  summary.action = "pending"
  toast(summary.text)
  finish(summary)
  return summary
end

-- put back the crop each image had before the last apply (appends, like the apply itself)
local function undo_crops(last)
  local summary = { action = "undo", done = 0, failed = 0 }
  local applied_tag = tag("pic|applied")
  for _i, item in ipairs(last.items) do
    local ok, why = apply_style_file(item.undo_file, item.undo_name, item.image)
    if ok then
      summary.done = summary.done + 1
      pcall(dt.tags.detach, applied_tag, item.image)
    else
      summary.failed = summary.failed + 1
      dt.print_error("pic: " .. item.image.filename .. ": " .. why)
    end
  end
  remove_work(last.work)
  pic.last_apply = nil
  summary.text = string.format(_("pic: crop undone on %d image(s)"), summary.done)
  return summary
end

function pic.undo()
  local last = pic.last_apply
  if not last then
    toast(_("pic: nothing to undo"))
    return nil
  end
  if not begin({ true }, _("undoing...")) then return nil end
  local summary = outside_darkroom(function() return undo_crops(last) end)
  toast(summary.text)
  finish(summary)
  return summary
end

-- send the crops you made on these images to `pic learn` (through their up-to-date sidecars)
function pic.learn(images)
  if user_name() == "" then
    fail(_("set your user name in preferences > lua options first"))
    return nil
  end
  if not begin(images, _("learning...")) then return nil end
  -- make the sidecars current: darktable's "write sidecar files" acts on the same images as this action
  pcall(dt.gui.action, "lib/copy_history/write sidecar files", 0, "", "", 1.0)
  local sidecars = {}
  for i, image in ipairs(images) do sidecars[i] = image.sidecar end
  local work = start_work("learn", sidecars)
  if not work then return pic.last end
  local rc = run_pic("learn-files --files-from " .. sq(work.list) .. " --user " .. sq(user_name()) .. " "
    .. common_args(), work, _("pic: learning your crops"))
  local summary = { action = "learn", rc = rc, count = #images }
  if rc == nil then
    summary.text = _("pic: cancelled")
  elseif rc ~= 0 then
    summary.text = "pic: " .. (stderr_line(work) or ("learn failed (" .. rc .. ")"))
    fail(summary.text:sub(6))
  else
    local out = read_all(work.list .. ".out") or ""
    local last_line = nil
    for l in out:gmatch("[^\n]+") do last_line = l end
    summary.text = "pic: " .. (last_line or string.format(_("learned from %d image(s)"), #images))
  end
  toast(summary.text)
  cleanup_files(work)
  remove_work(work)
  finish(summary)
  return summary
end

local function in_background(fn, images)
  -- the job polls and sleeps: keep it off the GUI thread
  dt.control.dispatch(fn, images)
end

local function selected_images()
  return dt.gui.action_images
end

-- UI -------------------------------------------------------------------------------------------------------

local function ratio_index(r)
  for i, v in ipairs(RATIOS) do
    if v == r then return i end
  end
  return 1
end

widgets.ratio = dt.new_widget("combobox") {
  label = _("ratio"),
  tooltip = _("aspect ratio of pic's crops"),
  selected = ratio_index(pref("ratio", "enum")),
  changed_callback = function(w) pic.ratio = w.value end,
  table.unpack(RATIOS),
}

widgets.suggest = dt.new_widget("button") {
  label = _("suggest crop"),
  tooltip = _("ask pic for a crop of the selected images (nothing is changed)"),
  clicked_callback = function() in_background(pic.suggest, selected_images()) end,
}

widgets.apply = dt.new_widget("button") {
  label = _("apply suggestion"),
  tooltip = _("append pic's crop to the history of the selected images; your edits stay"),
  clicked_callback = function() in_background(pic.apply, selected_images()) end,
}

widgets.pending = dt.new_widget("button") {
  label = _("apply pending"),
  tooltip = _("apply the crops `pic batch` suggested for images in darktable's library"),
  clicked_callback = function() in_background(pic.apply_pending) end,
}

widgets.undo = dt.new_widget("button") {
  label = _("undo last apply"),
  tooltip = _("put back the crop the images had before the last apply"),
  clicked_callback = function() in_background(pic.undo) end,
}

widgets.learn = dt.new_widget("button") {
  label = _("learn from selected"),
  tooltip = _("pic learns your style from the crops you made on the selected images"),
  clicked_callback = function() in_background(pic.learn, selected_images()) end,
}

widgets.status = dt.new_widget("label") { label = "", ellipsize = "middle", halign = "start" }

widgets.box = dt.new_widget("box") {
  orientation = "vertical",
  widgets.ratio,
  widgets.suggest,
  widgets.apply,
  widgets.pending,
  widgets.undo,
  widgets.learn,
  widgets.status,
}

local lib_installed = false

local function install_module()
  if lib_installed then return end
  dt.register_lib(MODULE, _("pic crop"), true, false,
    { [dt.gui.views.lighttable] = { "DT_UI_CONTAINER_PANEL_RIGHT_CENTER", 100 } },
    widgets.box, nil, nil)
  lib_installed = true
end

-- shortcuts (preferences > shortcuts > lua); darkroom's acts on the image being edited
local SHORTCUTS = {
  { "pic_suggest", _("pic: suggest crop for selected images"), function() in_background(pic.suggest, selected_images()) end },
  { "pic_apply", _("pic: apply suggestion to selected images"), function() in_background(pic.apply, selected_images()) end },
  { "pic_pending", _("pic: apply pending crops"), function() in_background(pic.apply_pending) end },
  { "pic_undo", _("pic: undo last apply"), function() in_background(pic.undo) end },
  { "pic_learn", _("pic: learn from selected images"), function() in_background(pic.learn, selected_images()) end },
  { "pic_darkroom", _("pic: crop the image in darkroom"), function()
      if dt.gui.current_view() ~= dt.gui.views.darkroom then
        toast(_("pic: this shortcut works in the darkroom"))
        return
      end
      in_background(pic.apply, dt.gui.action_images)
    end },
}

-- script_manager loads the script (which registers the shortcuts) and then calls show(); stop calls destroy(),
-- start again restart(). darktable refuses a shortcut registered twice ("already registered"), and that error used
-- to escape into script_manager and break it, so registering is idempotent: show/restart only register what
-- destroy removed.
local running = false

local function register_events()
  if #pic.event_names > 0 then return end
  for _i, s in ipairs(SHORTCUTS) do
    dt.register_event(s[1], "shortcut", function() s[3]() end, s[2])
    pic.event_names[#pic.event_names + 1] = s[1]
  end
end

local function destroy()
  for _i, name in ipairs(pic.event_names) do
    dt.destroy_event(name, "shortcut")
  end
  pic.event_names = {}
  running = false
  if lib_installed then dt.gui.libs[MODULE].visible = false end
  if pic.last_apply then remove_work(pic.last_apply.work) pic.last_apply = nil end
end

local function restart()
  register_events()
  running = true
  if lib_installed then dt.gui.libs[MODULE].visible = true
  elseif dt.gui.current_view().id == "lighttable" then install_module() end
end

dt.preferences.register(MODULE, "pending_at_start", "bool", _("pic: apply pending crops at start"),
  _("when darktable starts, apply the crops `pic batch` suggested for images in darktable's library"), true)

if dt.gui.current_view().id == "lighttable" then
  install_module()
end
-- a start outside the lighttable (or a stop before it was shown): install the module when the lighttable opens
dt.register_event("pic_view", "view-changed", function(event, old_view, new_view)
  if running and new_view.id == "lighttable" and not lib_installed then install_module() end
end)
register_events()
running = true

if pref("pending_at_start", "bool") then
  in_background(function()
    dt.control.sleep(2000)  -- let darktable finish starting (and script_manager its own work)
    if running and not dt.control.ending then pic.apply_pending() end
  end)
end

script_data.destroy = destroy
script_data.restart = restart
script_data.show = restart
script_data.api = pic  -- for other scripts and pic's tests: suggest(images), apply(images), undo(), learn(images)

return script_data
