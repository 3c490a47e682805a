-- wrk script for bench/run.sh. The mode comes from the environment:
--   BENCH_MODE   healthz | create | get | list | mix
--   BENCH_TOKEN  bearer token for BENCH_USER (every mode but healthz)
--   BENCH_USER   the user in /api/{user}/...
--   BENCH_IDS    file with one task id a line (get, mix)
--   BENCH_LIST_QUERY  query string of the list mode (default: pending, high, 50)
-- healthz, create and list send one fixed request (wrk's static fast path); get and mix
-- pick one of PREBUILT requests per call, formatted once in init(), so the generator's own
-- CPU per request (which shares the machine with the server) stays close to the static
-- path's. done() prints one machine-readable line, BENCH_RESULT.

local mode = os.getenv("BENCH_MODE") or "healthz"
local user = os.getenv("BENCH_USER") or "bench"
local token = os.getenv("BENCH_TOKEN")
local base = "/api/" .. user .. "/tasks"

if mode ~= "healthz" then
  assert(token and #token > 0, "BENCH_TOKEN is required for mode " .. mode)
  wrk.headers["Authorization"] = "Bearer " .. token
end

local ids = {}
local function load_ids()
  local path = assert(os.getenv("BENCH_IDS"), "BENCH_IDS is required for mode " .. mode)
  for line in io.lines(path) do
    if #line > 0 then
      ids[#ids + 1] = line
    end
  end
  assert(#ids > 0, "no ids in " .. path)
end

-- Requests formatted up front per thread (get, mix); each call picks one at random.
local PREBUILT = 4096
local prebuilt = {}

local counter = 0
function setup(thread)
  counter = counter + 1
  thread:set("thread_no", counter)
end

if mode == "create" then
  wrk.method = "POST"
  wrk.path = base
  wrk.headers["Content-Type"] = "application/json"
  wrk.body = '{"title":"Load test task","description":"created by wrk",'
    .. '"priority":"high","tags":["bench","load"]}'
elseif mode == "list" then
  wrk.path = base .. "?" .. (os.getenv("BENCH_LIST_QUERY") or "status=pending&priority=high&limit=50")
elseif mode == "get" then
  function init(_)
    load_ids()
    math.randomseed(os.time() + (thread_no or 0) * 7919)
    for i = 1, PREBUILT do
      prebuilt[i] = wrk.format("GET", base .. "/" .. ids[math.random(#ids)])
    end
  end
  function request()
    return prebuilt[math.random(PREBUILT)]
  end
elseif mode == "mix" then
  -- 70 % GET by id, 20 % PUT (title and priority), 10 % PATCH complete (toggle).
  -- wrk.format uses the headers given instead of wrk.headers, not in addition to them.
  -- A PUT that sets what the task already holds changes nothing and writes nothing, and
  -- each prebuilt request is sent many times, so a PUT is a pair of requests with
  -- different titles, sent in turn: every PUT is a real update (and a task.updated event).
  local json = {}
  local priorities = { "high", "medium", "low" }
  local n = 0
  local function build()
    n = n + 1
    local path = base .. "/" .. ids[math.random(#ids)]
    local roll = math.random(100)
    if roll <= 70 then
      return wrk.format("GET", path)
    elseif roll <= 90 then
      local put = { turn = 0 }
      for side = 1, 2 do
        local body = string.format('{"title":"Updated by wrk %d%s","priority":"%s"}',
          n, side == 1 and "a" or "b", priorities[math.random(3)])
        put[side] = wrk.format("PUT", path, json, body)
      end
      return put
    else
      return wrk.format("PATCH", path .. "/complete")
    end
  end
  function init(_)
    load_ids()
    math.randomseed(os.time() + (thread_no or 0) * 7919)
    for name, value in pairs(wrk.headers) do
      json[name] = value
    end
    json["Content-Type"] = "application/json"
    for i = 1, PREBUILT do
      prebuilt[i] = build()
    end
  end
  function request()
    local r = prebuilt[math.random(PREBUILT)]
    if type(r) == "table" then
      r.turn = r.turn % 2 + 1
      return r[r.turn]
    end
    return r
  end
elseif mode ~= "healthz" then
  error("unknown BENCH_MODE " .. mode)
end

function done(summary, latency, _)
  local seconds = summary.duration / 1e6
  local e = summary.errors
  io.write(string.format(
    "BENCH_RESULT requests=%d seconds=%.3f rps=%.1f p50_ms=%.3f p90_ms=%.3f p99_ms=%.3f max_ms=%.3f "
      .. "connect_errors=%d read_errors=%d write_errors=%d timeouts=%d status_errors=%d\n",
    summary.requests, seconds, summary.requests / seconds,
    latency:percentile(50) / 1000, latency:percentile(90) / 1000,
    latency:percentile(99) / 1000, latency.max / 1000,
    e.connect, e.read, e.write, e.timeout, e.status))
end
