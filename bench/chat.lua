-- wrk script: POST a chat completion (set WRK_STREAM=1 for "stream": true)
-- usage: wrk -t1 -c64 -d10s -s bench/chat.lua http://127.0.0.1:PORT/v1/chat/completions
local stream = os.getenv("WRK_STREAM") == "1"
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer sk-bench"
wrk.body = '{"model": "bench-model", "messages": [{"role": "user", "content": '
  .. '"Say hello in one short sentence."}], "max_tokens": 64, "stream": '
  .. (stream and "true" or "false") .. '}'

-- no response() callback: it would make wrk run Lua per response and cap its rate;
-- summary.errors.status counts the non-2xx/3xx answers anyway
function done(summary, latency, requests)
  io.write(string.format(
    "JSON {\"requests\": %d, \"duration_us\": %d, \"p50_us\": %d, \"p99_us\": %d, "
      .. "\"mean_us\": %.1f, \"max_us\": %d, \"errors_status\": %d, \"errors_other\": %d}\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    latency.mean, latency.max, summary.errors.status,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
