-- wrk script for the token endpoint pair of bench/run.sh: POST the
-- client_credentials form with HTTP Basic client authentication.
--
--   WRK_BASIC=id:secret wrk -t2 -c64 -d5s --latency -s bench/wrk/token.lua \
--       http://127.0.0.1:18080/oauth/token
--
-- The same script drives the baseline (respond "ok" on 18081), so both
-- send identical requests. done() prints a machine-readable line like
-- bench/load's: WRK rps=… p50_ms=… p99_ms=… requests=… errors=…
local cred = os.getenv("WRK_BASIC") or error("WRK_BASIC=id:secret is required")

local b64chars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
local function base64(s)
	return ((s:gsub(".", function(c)
		local r, b = "", c:byte()
		for i = 8, 1, -1 do r = r .. (b % 2 ^ i - b % 2 ^ (i - 1) > 0 and "1" or "0") end
		return r
	end) .. "0000"):gsub("%d%d%d?%d?%d?%d?", function(x)
		if #x < 6 then return "" end
		local c = 0
		for i = 1, 6 do c = c + (x:sub(i, i) == "1" and 2 ^ (6 - i) or 0) end
		return b64chars:sub(c + 1, c + 1)
	end) .. ({ "", "==", "=" })[#s % 3 + 1])
end

wrk.method = "POST"
wrk.body = "grant_type=client_credentials"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
-- RFC 6749 §2.3.1 form-encodes id and secret before Base64; the bench
-- credentials need no escaping.
wrk.headers["Authorization"] = "Basic " .. base64(cred)

function done(summary, latency, requests)
	local secs = summary.duration / 1e6
	local e = summary.errors
	local errors = e.connect + e.read + e.write + e.status + e.timeout
	io.write(string.format("WRK rps=%.1f p50_ms=%.3f p99_ms=%.3f requests=%d errors=%d seconds=%.3f\n",
		summary.requests / secs, latency:percentile(50) / 1000, latency:percentile(99) / 1000,
		summary.requests, errors, secs))
end
