-- wrk script for bench/nodes.sh's gate pairs: GET with one bearer token,
-- sent alike to oauth_protect + reverse_proxy and to the plain proxy.
--
--   WRK_BEARER=<access token> wrk -t2 -c64 -d5s -s bench/wrk/bearer.lua http://127.0.0.1:18091/
--
-- done() prints the same machine-readable line as token.lua:
-- WRK rps=… p50_ms=… p99_ms=… requests=… errors=…
local tok = os.getenv("WRK_BEARER") or error("WRK_BEARER=<access token> is required")

wrk.method = "GET"
wrk.headers["Authorization"] = "Bearer " .. tok

function done(summary, latency, requests)
	local secs = summary.duration / 1e6
	local e = summary.errors
	local errors = e.connect + e.read + e.write + e.status + e.timeout
	io.write(string.format("WRK rps=%.1f p50_ms=%.3f p99_ms=%.3f requests=%d errors=%d seconds=%.3f\n",
		summary.requests / secs, latency:percentile(50) / 1000, latency:percentile(99) / 1000,
		summary.requests, errors, secs))
end
