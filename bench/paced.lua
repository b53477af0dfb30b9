-- wrk script: each connection waits GAP milliseconds after a response before it
-- sends its next request (`wrk ... -s bench/paced.lua URL -- GAP`). With C
-- connections the offered load is at most C / (GAP + latency) requests/s, so two
-- servers that both keep up serve the same load and their latency percentiles can
-- be compared at equal throughput. wrk times each request from when it is written,
-- so the gap itself is not counted as latency.
local gap = 0

function init(args)
  gap = tonumber(args[1]) or 0
end

function delay()
  return gap
end
