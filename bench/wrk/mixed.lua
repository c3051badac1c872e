-- A bounded mix of every workload, for memory after N requests: each thread cycles through the
-- requests listed in WRK_MIX_FILE (lines "METHOD<TAB>PATH<TAB>BODY_FILE or -") and stops after
-- WRK_MIX_LIMIT responses (per thread), leaving a file in WRK_MIX_DONE_DIR so that bench/run.py can
-- end wrk's timer early (SIGINT). Prints "WRKJSON {...}" like request.lua.
local threads_made = 0
function setup(thread)
  threads_made = threads_made + 1
  thread:set("thread_id", threads_made)
end

local specs = {}
local n = 0
local limit = tonumber(os.getenv("WRK_MIX_LIMIT") or "50000")
local count = 0

for line in io.lines(os.getenv("WRK_MIX_FILE")) do
  local method, path, body_file = line:match("^(%S+)\t(%S+)\t(%S+)$")
  if method then
    local body = nil
    if body_file ~= "-" then
      local fh = assert(io.open(body_file, "rb"))
      body = fh:read("*a")
      fh:close()
    end
    n = n + 1
    specs[n] = { method = method, path = path, body = body }
  end
end

-- Requests are formatted on first use, not at load: only then has wrk set wrk.headers["Host"],
-- which wrk.format copies in (without it every request lacked a Host header and got the 400
-- page the service gives since issue 11, and this mix measured the error page).
local reqs = nil
local i = 0
function request()
  if reqs == nil then
    reqs = {}
    for k, spec in ipairs(specs) do
      local headers = { ["User-Agent"] = "Mozilla/5.0 (bench)", ["Host"] = wrk.headers["Host"] }
      if spec.body then
        headers["Content-Type"] = "application/x-www-form-urlencoded"
      end
      reqs[k] = wrk.format(spec.method, spec.path, headers, spec.body)
    end
  end
  i = i % n + 1
  return reqs[i]
end

function response(status, headers, body)
  count = count + 1
  if count == limit then
    local dir = os.getenv("WRK_MIX_DONE_DIR")
    if dir then
      local fh = io.open(dir .. "/done-" .. tostring(thread_id), "w")
      if fh then fh:close() end
    end
    wrk.thread:stop()
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests": %d, "duration_us": %d, "bytes": %d, "p50_us": %d, "p90_us": %d, "p99_us": %d, ' ..
    '"max_us": %d, "mean_us": %.1f, "err_connect": %d, "err_read": %d, "err_write": %d, "err_status": %d, ' ..
    '"err_timeout": %d}\n',
    summary.requests, summary.duration, summary.bytes, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, latency.mean, e.connect, e.read, e.write, e.status, e.timeout))
end
