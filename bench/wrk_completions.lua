-- wrk script of bench/bench_server.sh (part c): POST /v1/completions with a small JSON body,
-- keep-alive, and a count of answers by status class across all threads.
-- env: PARITY_KEY (an API key), PARITY_MODEL (default tiny), PARITY_MAX_TOKENS (default 8)
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. (os.getenv("PARITY_KEY") or "")
wrk.body = string.format('{"model":"%s","prompt":"The quick brown fox","max_tokens":%s,"temperature":0}',
                         os.getenv("PARITY_MODEL") or "tiny", os.getenv("PARITY_MAX_TOKENS") or "8")

local threads = {}
function setup(thread)
   table.insert(threads, thread)
end

function init(args)
   s2, s4, s5, other = 0, 0, 0, 0
end

function response(status, headers, body)
   if status >= 200 and status < 300 then s2 = s2 + 1
   elseif status >= 400 and status < 500 then s4 = s4 + 1
   elseif status >= 500 then s5 = s5 + 1
   else other = other + 1 end
end

function done(summary, latency, requests)
   local t2, t4, t5, to = 0, 0, 0, 0
   for _, t in ipairs(threads) do
      t2 = t2 + t:get("s2"); t4 = t4 + t:get("s4"); t5 = t5 + t:get("s5"); to = to + t:get("other")
   end
   io.write(string.format("status: 2xx %d  4xx %d  5xx %d  other %d\n", t2, t4, t5, to))
   io.write(string.format("latency: p50 %.2f ms  p90 %.2f ms  p99 %.2f ms  max %.2f ms\n",
      latency:percentile(50) / 1000, latency:percentile(90) / 1000, latency:percentile(99) / 1000,
      latency.max / 1000))
end
