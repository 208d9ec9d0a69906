-- Cycle through a list of requests, for bench/soak.py:
--   wrk -s bench/wrk_mix.lua http://127.0.0.1:PORT -- MANIFEST
-- MANIFEST has one request per line: METHOD PATH CONTENT_TYPE ACCEPT BODY_FILE, "-" for none.
-- Bodies are read once; each connection walks the list from its own starting point.
-- done() prints "BENCH_JSON {...}" (latencies in microseconds; status = responses >= 400).

local requests = {}
local counter = 0

function init(args)
  for line in io.lines(args[1]) do
    local method, path, ctype, accept, body_file = line:match("^(%S+) (%S+) (%S+) (%S+) (%S+)$")
    local headers = {}
    if ctype ~= "-" then headers["Content-Type"] = ctype end
    if accept ~= "-" then headers["Accept"] = accept end
    local body = nil
    if body_file ~= "-" then
      local file = assert(io.open(body_file, "rb"))
      body = file:read("*a")
      file:close()
    end
    requests[#requests + 1] = wrk.format(method, path, headers, body)
  end
  counter = math.random(#requests)
end

function request()
  counter = counter % #requests + 1
  return requests[counter]
end

function done(summary, latency, reqs)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"duration_us": %d, "requests": %d, "bytes": %d, ' ..
    '"p50_us": %d, "p90_us": %d, "p99_us": %d, "max_us": %d, "mean_us": %.1f, ' ..
    '"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}\n',
    summary.duration, summary.requests, summary.bytes,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    latency.mean, e.connect, e.read, e.write, e.status, e.timeout))
end
