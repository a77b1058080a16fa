-- Loaded by the scripts whose wrk threads split a list between them: numbers the threads
-- (wrk calls setup once per thread) and gives each thread its share of the list.
local threads = {}

function setup(thread)
  table.insert(threads, thread)
  thread:set("id", #threads - 1)
end

-- The items of `iterator` that fall to this thread: every WRK_THREADS-th one, from its id.
function thread_share(iterator)
  local share = {}
  local id = tonumber(wrk.thread:get("id"))
  local count = tonumber(os.getenv("WRK_THREADS"))
  local index = 0
  for item in iterator do
    if index % count == id then table.insert(share, item) end
    index = index + 1
  end
  return share
end

-- 1, 2, ..., n as an iterator.
function numbers(n)
  local i = 0
  return function()
    i = i + 1
    if i <= n then return i end
  end
end
