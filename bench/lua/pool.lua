-- wrk script of bench/harness.py. Every request carries the next token of a pool file
-- (one token per line), cycling; without a file, no Authorization header. At the end it
-- prints one `BENCH_JSON {...}` line with the counts and latency percentiles (µs).
--
--   wrk -t T -c C -d D -s pool.lua http://127.0.0.1:PORT -- PATH [TOKENS_FILE]
--
-- Each thread starts at its own offset of the pool, so with a pool larger than the
-- run's request count no token is sent twice.

local threads = 0

function setup(thread)
   thread:set("thread_number", threads)
   threads = threads + 1
end

local tokens, n, i = {}, 0, 0
local plain, head

function init(args)
   local path = args[1] or "/"
   local file = args[2]
   if file ~= nil and file ~= "" then
      for line in io.lines(file) do
         if #line > 0 then
            n = n + 1
            tokens[n] = line
         end
      end
   end
   local host = wrk.host .. ":" .. wrk.port
   plain = "GET " .. path .. " HTTP/1.1\r\nHost: " .. host .. "\r\n\r\n"
   head = "GET " .. path .. " HTTP/1.1\r\nHost: " .. host .. "\r\nAuthorization: Bearer "
   -- thread_number is 0-based; the total is only known to the last thread set up, so
   -- the harness passes it as the third argument.
   local total = tonumber(args[3] or "1")
   i = math.floor(thread_number * n / total)
end

function request()
   if n == 0 then
      return plain
   end
   i = i + 1
   if i > n then
      i = 1
   end
   return head .. tokens[i] .. "\r\n\r\n"
end

function done(summary, latency, requests)
   local e = summary.errors
   io.write(string.format(
      'BENCH_JSON {"requests":%d,"duration_us":%d,"bytes":%d,"errors_connect":%d,'
         .. '"errors_read":%d,"errors_write":%d,"errors_status":%d,"errors_timeout":%d,'
         .. '"p50_us":%d,"p90_us":%d,"p99_us":%d,"p999_us":%d,"max_us":%d,"mean_us":%.1f}\n',
      summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write,
      e.status, e.timeout, latency:percentile(50), latency:percentile(90),
      latency:percentile(99), latency:percentile(99.9), latency.max, latency.mean))
end
