--[[
  A stand-in for darktable's Lua API and lua-scripts' script_manager, to run plugins/darktable/pic.lua under plain
  lua5.4 (tests/integrations/test_darktable_script_manager.py).

  script_manager's documented behaviour (tools/script_manager.lua, activate/deactivate), reproduced:
    start:          require the script; if it returns script_data with destroy_method "hide" and show, and the
                    lighttable is open, call script_data.show(). An error escapes into script_manager.
    stop:           script_data.destroy(); a "hide" script is then "hidden" (its lib cannot be destroyed).
    start again:    script_data.restart() for a hidden script.
    darktable restart: a fresh Lua state; scripts marked started are started as above.
  darktable's own rule that matters here: registering an event name twice for the same event type is an error
  ("key '...' already registered for event shortcut").

  usage: lua5.4 script_manager_harness.lua LUA_DIR OUT_FILE
]]

local LUA_DIR, OUT = arg[1], arg[2]
local out = assert(io.open(OUT, "w"))
local function put(k, v) out:write(k, "\t", tostring(v), "\n") out:flush() end

local function fake_darktable()
  local dt = { gui = {}, control = {}, preferences = {}, tags = {}, styles = {}, films = {}, database = {} }
  local events, prefs, queue = {}, {}, {}
  dt.gettext = { bindtextdomain = function() end, dgettext = function(_, s) return s end }
  dt.configuration = { config_dir = LUA_DIR .. "/..", api_version_major = 9, api_version_minor = 0,
                       api_version_string = "9.0.0", running_os = "linux", version = "4.2.1" }
  dt.print = function(s) put("toast", s) end
  dt.print_error = function(s) put("log", s) end
  dt.print_log = dt.print_error
  dt.preferences.register = function(m, name, kind, label, tip, default) prefs[m .. "/" .. name] = default end
  dt.preferences.read = function(m, name) return prefs[m .. "/" .. name] end
  dt.preferences.write = function(m, name, kind, v) prefs[m .. "/" .. name] = v end
  dt.new_widget = function(kind) return function(t) t.kind = kind return t end end
  dt.gui.views = { lighttable = { id = "lighttable" }, darkroom = { id = "darkroom" } }
  dt.gui.current_view = function() return dt.gui.views.lighttable end
  dt.gui.libs = {}
  dt.gui.action_images = {}
  dt.gui.selection = function() return {} end
  dt.gui.create_job = function() return { percent = 0, valid = true } end
  dt.register_lib = function(name) dt.gui.libs[name] = { visible = true } end
  dt.register_event = function(name, kind, fn, ...)
    local key = kind .. "/" .. name
    if events[key] then
      error("key '" .. tostring(select(1, ...) or name) .. "' already registered for event " .. kind)
    end
    events[key] = fn
  end
  dt.destroy_event = function(name, kind) events[kind .. "/" .. name] = nil end
  dt.control.dispatch = function(fn, ...) queue[#queue + 1] = table.pack(fn, ...) end
  dt.control.execute = function(cmd) local ok, how, code = os.execute(cmd) return code end
  dt.control.sleep = function() end
  dt.control.ending = false
  dt.tags.create = function(name) return { name = name } end
  dt.tags.attach = function() end
  dt.tags.detach = function() end
  local function shortcuts()
    local n = 0
    for key in pairs(events) do if key:match("^shortcut/") then n = n + 1 end end
    return n
  end
  local function run_queue()
    while #queue > 0 do
      local job = table.remove(queue, 1)
      job[1](table.unpack(job, 2, job.n))
    end
  end
  return dt, { shortcuts = shortcuts, run_queue = run_queue, events = events }
end

local function new_session()
  for name in pairs(package.loaded) do
    if name == "darktable" or name:match("pic$") then package.loaded[name] = nil end
  end
  local dt, probe = fake_darktable()
  package.preload["darktable"] = function() return dt end
  package.path = LUA_DIR .. "/?.lua;" .. package.path
  return dt, probe
end

local script = { path = "contrib/pic", running = false, data = nil }

local function activate()
  if script.running == false then
    local ok, data = pcall(require, script.path)  -- du.prequire
    if not ok then put("start_error", data) return false end
    script.data = data
    script.running = true
    if data.destroy_method == "hide" and data.show then data.show() end  -- not protected, as in script_manager
  else
    script.data.restart()
    script.running = true
  end
  return true
end

local function deactivate()
  script.data.destroy()
  script.running = "hidden"
end

local function step(label, fn, dt, probe)
  local ok, err = pcall(fn)
  put(label .. "_ok", ok)
  if not ok then put(label .. "_error", err) end
  put(label .. "_shortcuts", probe.shortcuts())
  put(label .. "_visible", dt.gui.libs.pic and dt.gui.libs.pic.visible)
end

-- session 1: start, stop, start again
local dt, probe = new_session()
step("start", activate, dt, probe)
probe.run_queue()  -- the pending check at start runs in the background
put("start_last", script.data and script.data.api.last and script.data.api.last.text)
step("stop", deactivate, dt, probe)
step("restart", activate, dt, probe)
put("shortcut_callable", type(probe.events["shortcut/pic_suggest"]))

-- darktable restarted: a fresh Lua state, the script was left started
script.running, script.data = false, nil
dt, probe = new_session()
step("next_session", activate, dt, probe)
probe.run_queue()
put("next_last", script.data and script.data.api.last and script.data.api.last.text)
put("DONE", "")
out:close()
