-- Many distinct tokens, round-robin: each thread takes every WRK_THREADS-th line of the
-- file named by TOKENS and sends the next one with each request.
dofile(debug.getinfo(1, "S").source:match("^@(.*/)") .. "threads.lua")

function init(args)
  tokens = {}
  for _, line in ipairs(thread_share(io.lines(os.getenv("TOKENS")))) do
    table.insert(tokens, "Bearer " .. line)
  end
  next_token = 0
end

function request()
  next_token = next_token % #tokens + 1
  return wrk.format(nil, nil, {["Authorization"] = tokens[next_token]})
end
