-- Cycle through a list of requests, for bench/soak.py:
--   wrk -s bench/wrk_mix.lua http://127.0.0.1:PORT -- MANIFEST
-- MANIFEST has one request per line: METHOD PATH CONTENT_TYPE ACCEPT BODY_FILE, "-" for none.
-- Bodies are read once; each connection walks the list from its own starting point.
-- done() (bench/wrk_report.lua) prints "BENCH_JSON {...}" for bench/soak.py.

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

-- done() is shared by the wrk scripts of bench/
dofile(debug.getinfo(1, "S").source:match("^@(.*/)") .. "wrk_report.lua")
