-- POST /api/v1/tokens with the password grant for the benchmark user.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"email":"bench@example.com","password":"bench-password"}'
