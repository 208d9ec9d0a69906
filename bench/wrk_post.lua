-- POST one fixed body to the URL's path, with the given headers, for bench/serve.py:
--   wrk -s bench/wrk_post.lua http://127.0.0.1:PORT/predict -- BODY_FILE "Name: value" ...
-- The body is read once per thread, so the request is static and costs wrk nothing per call.
-- done() (bench/wrk_report.lua) prints one line, "BENCH_JSON {...}", that bench/serve.py parses.

function init(args)
  local file = assert(io.open(args[1], "rb"))
  wrk.method = "POST"
  wrk.body = file:read("*a")
  file:close()
  for i = 2, #args do
    local name, value = args[i]:match("^([^:]+):%s*(.*)$")
    wrk.headers[name] = value
  end
end

-- done() is shared by the wrk scripts of bench/
dofile(debug.getinfo(1, "S").source:match("^@(.*/)") .. "wrk_report.lua")
