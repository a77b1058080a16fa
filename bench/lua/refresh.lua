-- Refresh grant. Each request takes a refresh token from a pool (one login per entry, read
-- from the file named by the REFRESH_TOKENS environment variable) and puts back the token
-- the answer carries, so every token is used exactly once and no family is ever replayed.
dofile(debug.getinfo(1, "S").source:match("^@(.*/)") .. "threads.lua")

function init(args)
  pool = thread_share(io.lines(os.getenv("REFRESH_TOKENS")))
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
