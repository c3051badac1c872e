-- One fixed request per connection, repeated: method, body and content type from the environment.
--   WRK_METHOD=POST WRK_BODY_FILE=saml.txt WRK_CONTENT_TYPE=application/x-www-form-urlencoded \
--     wrk -t2 -c32 -d10s --latency -s bench/wrk/request.lua 'http://127.0.0.1:8080/login/callback?connection=x'
-- Prints one line "WRKJSON {...}" with exact figures for bench/run.py.
wrk.method = os.getenv("WRK_METHOD") or "GET"
local body_file = os.getenv("WRK_BODY_FILE")
if body_file and body_file ~= "" then
  local fh = assert(io.open(body_file, "rb"))
  wrk.body = fh:read("*a")
  fh:close()
  wrk.headers["Content-Type"] = os.getenv("WRK_CONTENT_TYPE") or "application/x-www-form-urlencoded"
end
wrk.headers["User-Agent"] = "Mozilla/5.0 (bench) AppleWebKit/537.36"
wrk.headers["Cookie"] = "did=s%3Av0%3Abench; auth0_compat=bench"

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests": %d, "duration_us": %d, "bytes": %d, "p50_us": %d, "p90_us": %d, "p99_us": %d, ' ..
    '"max_us": %d, "mean_us": %.1f, "err_connect": %d, "err_read": %d, "err_write": %d, "err_status": %d, ' ..
    '"err_timeout": %d}\n',
    summary.requests, summary.duration, summary.bytes, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, latency.mean, e.connect, e.read, e.write, e.status, e.timeout))
end
