-- POST /api/v1/tokens with the password grant. bench/run registers LOGIN_ACCOUNTS accounts
-- (LOGIN_PREFIX, default login-, then 1, 2, ...: login-1@example.com ...); each thread takes
-- its share of them in turn, so no account has more than a few logins in flight (the
-- per-account throttle counts an attempt as a failure until it succeeds).
dofile(debug.getinfo(1, "S").source:match("^@(.*/)") .. "threads.lua")

function init(args)
  accounts = thread_share(numbers(tonumber(os.getenv("LOGIN_ACCOUNTS"))))
  next_account = 1
  prefix = os.getenv("LOGIN_PREFIX") or "login-"
end

function request()
  local account = accounts[next_account]
  next_account = next_account % #accounts + 1
  return wrk.format("POST", "/api/v1/tokens", {["Content-Type"] = "application/json"},
    '{"email":"' .. prefix .. account .. '@example.com","password":"bench-password"}')
end
