-- Refresh grant. Each request takes a refresh token from a pool (one login per entry, read
-- from the file named by the REFRESH_TOKENS environment variable) and puts back the token
-- the answer carries, so every token is used exactly once and no family is ever replayed.
local threads = {}

function setup(thread)
  table.insert(threads, thread)
  thread:set("id", #threads - 1)
end

function init(args)
  pool = {}
  local id = tonumber(wrk.thread:get("id"))
  local count = tonumber(os.getenv("WRK_THREADS"))
  local index = 0
  for line in io.lines(os.getenv("REFRESH_TOKENS")) do
    if index % count == id then table.insert(pool, line) end
    index = index + 1
  end
end

function request()
  local token = table.remove(pool)
  if token == nil then
    -- More connections than tokens: should not happen with the pool bench/run prepares.
    return wrk.format("GET", "/api/v1/healthcheck")
  end
  return wrk.format("POST", "/api/v1/tokens", {["Content-Type"] = "application/json"},
    '{"grant_type":"refresh_token","refresh_token":"' .. token .. '"}')
end

function response(status, headers, body)
  local next_token = string.match(body, '"refresh_token":"([^"]+)"')
  if next_token then table.insert(pool, next_token) end
end
