-- POST one fixed body to the URL's path, for bench/serve.py:
--   wrk -s bench/wrk_post.lua http://127.0.0.1:PORT/predict -- BODY_FILE CONTENT_TYPE [ACCEPT]
-- The body is read once per thread, so the request is static and costs wrk nothing per call.
-- done() prints one line, "BENCH_JSON {...}", that bench/serve.py parses: latencies are in
-- microseconds, status errors are responses with status >= 400.

function init(args)
  local file = assert(io.open(args[1], "rb"))
  wrk.method = "POST"
  wrk.body = file:read("*a")
  file:close()
  wrk.headers["Content-Type"] = args[2]
  if args[3] then
    wrk.headers["Accept"] = args[3]
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"duration_us": %d, "requests": %d, "bytes": %d, ' ..
    '"p50_us": %d, "p90_us": %d, "p99_us": %d, "max_us": %d, "mean_us": %.1f, ' ..
    '"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}\n',
    summary.duration, summary.requests, summary.bytes,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    latency.mean, e.connect, e.read, e.write, e.status, e.timeout))
end
