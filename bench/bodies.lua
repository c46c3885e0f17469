-- wrk script: POST one prepared form body per request, each body used at most once.
--   wrk -s bench/bodies.lua URL -- BODIES_FILE THREADS [wrap]
-- Thread t of T sends bodies t, t+T, t+2T, ... so no two threads share a body (client
-- assertions and ID-JAGs are single-use; a reused one would be refused, not served faster).
-- A thread that runs out stops (wrk.thread:stop()) and counts the requests it had no body for
-- ("exhausted" in the summary): the run is then cut short and must not pass as a measurement.
-- "wrap" reuses bodies instead, for servers that check none of them (the bare baselines).
local thread_count = 0
local threads = {}

function setup(thread)
  thread:set("tid", thread_count)
  thread_count = thread_count + 1
  threads[#threads + 1] = thread
end

function init(args)
  bodies = {}
  for line in io.lines(args[1]) do
    bodies[#bodies + 1] = line
  end
  stride = tonumber(args[2]) or 1
  wrap = args[3] == "wrap"
  index = tid
  exhausted = 0
end

function request()
  if index >= #bodies and not wrap then
    -- No body left: stop this thread. What it sends meanwhile is no single-use body at all,
    -- refused by a token endpoint (a non-2xx) rather than a replay of one already used.
    exhausted = exhausted + 1
    wrk.thread:stop()
    return wrk.format("POST", nil, {["Content-Type"] = "application/x-www-form-urlencoded"},
      "bench=bodies-exhausted")
  end
  local body = bodies[(index % #bodies) + 1]
  index = index + stride
  return wrk.format("POST", nil, {["Content-Type"] = "application/x-www-form-urlencoded"}, body)
end

function done(summary, latency, requests)
  local non2xx = summary.errors.status
  local errors = summary.errors.connect + summary.errors.read + summary.errors.write
    + summary.errors.timeout
  local out_of_bodies = 0
  for _, thread in ipairs(threads) do
    out_of_bodies = out_of_bodies + (tonumber(thread:get("exhausted")) or 0)
  end
  io.write(string.format(
    'WRK-JSON {"requests": %d, "duration_us": %d, "non2xx": %d, "socket_errors": %d, '
      .. '"exhausted": %d, "p50_us": %d, "p90_us": %d, "p99_us": %d, "max_us": %d}\n',
    summary.requests, summary.duration, non2xx, errors, out_of_bodies,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
