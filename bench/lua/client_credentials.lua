-- Client-credentials grant: every request authenticates one client with HTTP Basic
-- (CLIENT_BASIC, the base64 of "client_id:client_secret") and gets an access token.
local basic = os.getenv("CLIENT_BASIC")

function request()
  return wrk.format("POST", "/api/v1/tokens", {
    ["Content-Type"] = "application/x-www-form-urlencoded",
    ["Authorization"] = "Basic " .. basic,
  }, "grant_type=client_credentials")
end
