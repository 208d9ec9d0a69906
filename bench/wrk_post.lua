-- POST one fixed body to the URL's path, for bench/serve.py:
--   wrk -s bench/wrk_post.lua http://127.0.0.1:PORT/predict -- BODY_FILE CONTENT_TYPE [ACCEPT]
-- The body is read once per thread, so the request is static and costs wrk nothing per call.
-- done() (bench/wrk_report.lua) prints one line, "BENCH_JSON {...}", that bench/serve.py parses.

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

-- done() is shared by the wrk scripts of bench/
dofile(debug.getinfo(1, "S").source:match("^@(.*/)") .. "wrk_report.lua")
