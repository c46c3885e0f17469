-- wrk script: POST one prepared form body per request, each body used at most once.
--   wrk -s bench/bodies.lua URL -- BODIES_FILE
-- Thread t of T sends bodies t, t+T, t+2T, ... so no two threads share a body (client
-- assertions and ID-JAGs are single-use; a reused one would be refused, not served faster).
-- A thread that runs out wraps around; the refusals then count as non-2xx in the summary.
local thread_count = 0

function setup(thread)
  thread:set("tid", thread_count)
  thread_count = thread_count + 1
end

function init(args)
  bodies = {}
  for line in io.lines(args[1]) do
    bodies[#bodies + 1] = line
  end
  stride = tonumber(args[2]) or 1
  index = tid
end

function request()
  local body = bodies[(index % #bodies) + 1]
  index = index + stride
  return wrk.format("POST", nil, {["Content-Type"] = "application/x-www-form-urlencoded"}, body)
end

function done(summary, latency, requests)
  local non2xx = summary.errors.status
  local errors = summary.errors.connect + summary.errors.read + summary.errors.write
    + summary.errors.timeout
  io.write(string.format(
    'WRK-JSON {"requests": %d, "duration_us": %d, "non2xx": %d, "socket_errors": %d, '
      .. '"p50_us": %d, "p90_us": %d, "p99_us": %d, "max_us": %d}\n',
    summary.requests, summary.duration, non2xx, errors,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
