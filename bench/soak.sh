#!/usr/bin/env bash
# Soak test: minutes of constant mixed load with short lifetimes, so that
# codes, refresh tokens, revocations and sessions keep expiring and the
# sweeper keeps deleting them. Prints Caddy's memory and the bbolt file
# size over time and says whether both stayed flat.
#
#   bash bench/soak.sh                 # 5 minutes
#   SOAK_MINUTES=30 bash bench/soak.sh
#
# Uses bench/Caddyfile (127.0.0.1:18080-18089, admin localhost:18019) with
# access tokens of 20s, grants of 40s and a sweep every 5s.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
repo=$(pwd)
minutes=${SOAK_MINUTES:-5}
[[ $minutes =~ ^[0-9]+$ && $minutes -ge 1 && $minutes -le 240 ]] || { echo "SOAK_MINUTES must be 1 to 240" >&2; exit 1; }

work=$(mktemp -d "${TMPDIR:-/tmp}/oauthgate-soak.XXXXXX")
pids=()
cleanup() {
	local rc=$?
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$work"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

echo "building..." >&2
go build -o "$work/caddy" ./cmd/caddy
go build -o "$work/grantload" ./bench/grantload
go build -o "$work/load" ./bench/load
mkdir -p "$work/data"
# The Caddyfile's TLS sites (the mTLS pair of run.sh) need certificates.
"$work/load" -make-certs "$work/tls"
BENCH_DIR="$work/data" BENCH_TLS="$work/tls" BENCH_AT_TTL=20s BENCH_RT_TTL=40s BENCH_SWEEP=5s \
	"$work/caddy" run --config "$repo/bench/Caddyfile" --adapter caddyfile >"$work/caddy.log" 2>&1 &
caddy=$!
pids+=("$caddy")
for _ in $(seq 100); do
	"$work/load" -wait 1s -url http://127.0.0.1:18080/oauth/jwks 2>/dev/null && break
	kill -0 "$caddy" 2>/dev/null || { cat "$work/caddy.log" >&2; echo "caddy did not start" >&2; exit 1; }
done

secs=$((minutes * 60))
# Mixed load, bounded in time: rotating refresh chains that restart when
# their 40s grant ends, codes redeemed as fast as they come, and
# client_credentials tokens (no storage) — each with few workers so the
# machine is loaded but not saturated.
"$work/grantload" -mode refresh -restart -c 8 -d "${secs}s" >"$work/refresh.out" 2>&1 &
pids+=($!)
"$work/grantload" -mode code -c 4 -d "${secs}s" >"$work/code.out" 2>&1 &
pids+=($!)
"$work/load" -url http://127.0.0.1:18080/oauth/token -body grant_type=client_credentials \
	-basic "bench:${BENCH_SECRET:-bench-secret-0123456789abcdef0123456789abcdef}" -c 4 -d "${secs}s" -warmup 0s >"$work/cc.out" 2>&1 &
pids+=($!)

printf "%8s %12s %12s %12s\n" elapsed rss_anon_MB rss_file_MB db_MB
sizes=()
start=$SECONDS
while ((SECONDS - start < secs)); do
	sleep 15
	kill -0 "$caddy" 2>/dev/null || { tail -20 "$work/caddy.log" >&2; echo "caddy died" >&2; exit 1; }
	anon=$(awk '/^RssAnon/ { printf "%.1f", $2 / 1024 }' "/proc/$caddy/status")
	file=$(awk '/^RssFile/ { printf "%.1f", $2 / 1024 }' "/proc/$caddy/status")
	db=$(awk -v b="$(stat -c %s "$work/data/oauth.db")" 'BEGIN { printf "%.1f", b / 1048576 }')
	printf "%7ss %12s %12s %12s\n" $((SECONDS - start)) "$anon" "$file" "$db"
	sizes+=("$anon $db")
done
wait "${pids[@]:1}" 2>/dev/null || true
echo
cat "$work/refresh.out" "$work/code.out"
tail -1 "$work/cc.out"

# Flat: after the first third (lifetimes and the sweeper reach a steady
# state within about a minute), neither figure grows by more than 25%.
n=${#sizes[@]}
third=$((n / 3))
read -r anon0 db0 <<<"${sizes[$third]}"
read -r anon1 db1 <<<"${sizes[$((n - 1))]}"
verdict=$(awk -v a0="$anon0" -v a1="$anon1" -v d0="$db0" -v d1="$db1" \
	'BEGIN { print ((a1 <= a0 * 1.25 + 5 && d1 <= d0 * 1.25 + 1) ? "flat" : "GROWING") }')
echo "memory ${anon0} -> ${anon1} MB, file ${db0} -> ${db1} MB from minute $((third * 15 / 60)) to the end: $verdict"
[[ $verdict == flat ]]
