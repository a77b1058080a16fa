-- Many distinct tokens, round-robin: each thread takes every WRK_THREADS-th line of the
-- file named by TOKENS and sends the next one with each request.
local threads = {}

function setup(thread)
  table.insert(threads, thread)
  thread:set("id", #threads - 1)
end

function init(args)
  tokens = {}
  local id = tonumber(wrk.thread:get("id"))
  local count = tonumber(os.getenv("WRK_THREADS"))
  local index = 0
  for line in io.lines(os.getenv("TOKENS")) do
    if index % count == id then table.insert(tokens, "Bearer " .. line) end
    index = index + 1
  end
  next_token = 0
end

function request()
  next_token = next_token % #tokens + 1
  return wrk.format(nil, nil, {["Authorization"] = tokens[next_token]})
end
