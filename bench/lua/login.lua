-- POST /api/v1/tokens with the password grant. bench/run registers LOGIN_ACCOUNTS accounts
-- (login-1@example.com ...); each thread takes its share of them in turn, so no account
-- has more than a few logins in flight (the per-account throttle counts an attempt as a
-- failure until it succeeds).
local threads = {}

function setup(thread)
  table.insert(threads, thread)
  thread:set("id", #threads - 1)
end

function init(args)
  accounts = {}
  local id = tonumber(wrk.thread:get("id"))
  local count = tonumber(os.getenv("WRK_THREADS"))
  for index = 1, tonumber(os.getenv("LOGIN_ACCOUNTS")) do
    if index % count == id then table.insert(accounts, index) end
  end
  next_account = 1
end

function request()
  local account = accounts[next_account]
  next_account = next_account % #accounts + 1
  return wrk.format("POST", "/api/v1/tokens", {["Content-Type"] = "application/json"},
    '{"email":"login-' .. account .. '@example.com","password":"bench-password"}')
end
