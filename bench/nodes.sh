#!/usr/bin/env bash
# Gate and issuance throughput with one and two Caddy nodes, on bbolt and
# on PostgreSQL, each next to plain Caddy in the same run.
#
#   bash bench/run.sh nodes        (or: bash bench/nodes.sh)
#
# Builds ./cmd/caddy, bench/load and bench/pgserver into a temporary
# directory, starts a throw-away PostgreSQL (bench/pgserver: fsync,
# synchronous_commit and full_page_writes on, 127.0.0.1:18099) and, one
# configuration after the other,
#
#   bolt1  one node on a bbolt file
#   pg1    one node on PostgreSQL
#   pg2    two nodes on the same PostgreSQL (the same keys, sealed with
#          one key_encryption_key), the load split over both
#
# each node from bench/nodes.Caddyfile (node 1 on 127.0.0.1:18090-18093,
# node 2 on 18094-18097). For every configuration it measures with wrk,
# baseline first, alternating, best round of each kept:
#
#   plain reverse_proxy          vs  oauth_protect + reverse_proxy, one
#                                    bearer token (bench/wrk/bearer.lua)
#   respond "ok" (the same POST) vs  client_credentials tokens
#                                    (bench/wrk/token.lua)
#
# With one node, one wrk (2 threads, BENCH_CONCURRENCY connections); with
# two nodes, two wrk at once (1 thread and half the connections each, one
# per node), their rates summed. Then the durable grant paths over HTTP
# (bench/grantload, -scope api: refresh rotations, and authorization
# requests with their code redemptions), split over the nodes alike. It prints a table with each ratio, the
# scaling from one node to two, and stops everything and removes the
# temporary directory on exit.
#
# Environment: BENCH_SECONDS (5), BENCH_WARMUP (1s), BENCH_ROUNDS (3),
# BENCH_CONCURRENCY (64, even), BENCH_NODES_CONFIGS ("bolt1 pg1 pg2"),
# BENCH_PG_FSYNC (1; 0 runs PostgreSQL with fsync off, and says so).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
repo=$(pwd)

secs=${BENCH_SECONDS:-5}
warmup=${BENCH_WARMUP:-1s}
conc=${BENCH_CONCURRENCY:-64}
rounds=${BENCH_ROUNDS:-3}
configs=${BENCH_NODES_CONFIGS:-bolt1 pg1 pg2}
pg_fsync=${BENCH_PG_FSYNC:-1}
secret=bench-secret-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
kek=$(od -An -N32 -tx1 /dev/urandom | tr -d ' \n')
ports=(18090 18091 18092 18093 18094 18095 18096 18097 18099)

die() {
	echo "bench: $*" >&2
	exit 1
}

[[ $secs =~ ^[0-9]+$ && $secs -ge 1 && $secs -le 300 ]] || die "BENCH_SECONDS must be a whole number from 1 to 300"
[[ $conc =~ ^[0-9]+$ && $conc -ge 2 && $conc -le 1024 && $((conc % 2)) == 0 ]] || die "BENCH_CONCURRENCY must be an even number from 2 to 1024 (two nodes get half each)"
[[ $rounds =~ ^[0-9]+$ && $rounds -ge 1 && $rounds -le 20 ]] || die "BENCH_ROUNDS must be from 1 to 20"
[[ $pg_fsync == 0 || $pg_fsync == 1 ]] || die "BENCH_PG_FSYNC must be 0 or 1"
for c in $configs; do
	[[ $c =~ ^(bolt1|pg1|pg2)$ ]] || die "BENCH_NODES_CONFIGS: unknown configuration $c (bolt1, pg1, pg2)"
done
command -v wrk >/dev/null || die "wrk is required (Debian: apt-get install wrk)"

for p in "${ports[@]}"; do
	if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
		die "port $p is in use on 127.0.0.1; stop whatever listens there first"
	fi
	if command -v ss >/dev/null && [[ -n $(ss -Hltn "sport = :$p" 2>/dev/null) ]]; then
		die "port $p is in use: $(ss -Hltnp "sport = :$p" 2>/dev/null | head -1)"
	fi
done

work=$(mktemp -d "${TMPDIR:-/tmp}/oauthgate-nodes.XXXXXX")
node_pids=()
pg_pid=""
stop_pid() {
	local pid=$1
	kill "$pid" 2>/dev/null || true
	for _ in $(seq 100); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$pid" 2>/dev/null; then
		kill -9 "$pid" 2>/dev/null || true
	fi
	wait "$pid" 2>/dev/null || true
}
stop_nodes() {
	local pid
	for pid in "${node_pids[@]}"; do
		stop_pid "$pid"
	done
	node_pids=()
}
cleanup() {
	local rc=$?
	stop_nodes
	if [[ -n $pg_pid ]]; then stop_pid "$pg_pid"; fi
	rm -rf "$work"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

echo "building caddy, the load generator and the PostgreSQL runner..." >&2
go build -o "$work/caddy" ./cmd/caddy || die "go build ./cmd/caddy failed"
go build -o "$work/load" ./bench/load || die "go build ./bench/load failed"
go build -o "$work/pgserver" ./bench/pgserver || die "go build ./bench/pgserver failed"
go build -o "$work/grantload" ./bench/grantload || die "go build ./bench/grantload failed"

pg_dsn=""
if [[ " $configs " == *" pg"* ]]; then
	fsync_flag=-fsync=true
	[[ $pg_fsync == 1 ]] || fsync_flag=-fsync=false
	# Its standard input is a FIFO this script holds open: when the
	# script ends, however it ends, pgserver reads EOF and stops
	# PostgreSQL.
	mkfifo "$work/pg.in"
	exec 7<>"$work/pg.in"
	"$work/pgserver" -port 18099 "$fsync_flag" <"$work/pg.in" >"$work/pg.out" 2>"$work/pg.log" 7>&- &
	pg_pid=$!
	deadline=$((SECONDS + 300)) # the first run may apt-get install postgresql
	until grep -q '^DSN=' "$work/pg.out" 2>/dev/null; do
		kill -0 "$pg_pid" 2>/dev/null || { cat "$work/pg.log" >&2; die "PostgreSQL did not start (log above)"; }
		((SECONDS < deadline)) || die "PostgreSQL did not start within 300s"
		sleep 0.2
	done
	pg_dsn=$(sed -n 's/^DSN=//p' "$work/pg.out")
	pg_settings=$(sed -n 's/.*settings //p' "$work/pg.log")
fi

# start_node N STORE starts node N (1 or 2) on STORE (bolt or pg).
start_node() {
	local n=$1 store=$2 base dir
	base=$((18090 + (n - 1) * 4))
	dir="$work/node$n-$store"
	mkdir -p "$dir"
	if [[ $store == bolt ]]; then
		echo "storage_path $dir/oauth.db" >"$dir/storage.caddy"
	else
		# The DSN and the key encryption key stay in the environment.
		printf 'storage postgres {\n\tdsn {env.BENCH_PG_DSN}\n}\nkey_encryption_key {env.BENCH_KEK}\n' >"$dir/storage.caddy"
	fi
	NODE_DIR="$dir" BENCH_SECRET="$secret" BENCH_PG_DSN="$pg_dsn" BENCH_KEK="$kek" \
		NODE_TOKEN_PORT=$base NODE_GATE_PORT=$((base + 1)) NODE_PROXY_PORT=$((base + 2)) NODE_UP_PORT=$((base + 3)) \
		"$work/caddy" run --config "$repo/bench/nodes.Caddyfile" --adapter caddyfile >"$dir/caddy.log" 2>&1 7>&- &
	local pid=$!
	node_pids+=("$pid")
	local u deadline=$((SECONDS + 30))
	for u in "http://127.0.0.1:$base/oauth/jwks" "http://127.0.0.1:$((base + 2))/" "http://127.0.0.1:$((base + 3))/"; do
		until "$work/load" -wait 1s -url "$u" 2>/dev/null; do
			if ! kill -0 "$pid" 2>/dev/null; then
				cat "$dir/caddy.log" >&2
				die "node $n ($store) exited during start-up (log above)"
			fi
			((SECONDS < deadline)) || { tail -50 "$dir/caddy.log" >&2; die "node $n ($store) did not come up within 30s: $u"; }
		done
	done
}

cpu=$(lscpu 2>/dev/null | sed -n 's/^Model name:[[:space:]]*//p' | head -1)
rev=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
if [[ -n $(git status --porcelain --untracked-files=no 2>/dev/null) ]]; then rev+="+dirty"; fi
echo "caddy-oauthgate benchmark: one and two nodes, $(date -u +%Y-%m-%dT%H:%M:%SZ)"
echo "machine:    $(nproc) CPUs, ${cpu:-unknown CPU}, $(uname -sr)"
echo "software:   $(go version | cut -d' ' -f3-), caddy $("$work/caddy" version | cut -d' ' -f1), $(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2), commit $rev"
if [[ -n $pg_dsn ]]; then
	pg_bin=$(ls -d /usr/lib/postgresql/*/bin | tail -1)
	echo "postgresql: $("$pg_bin/postgres" --version | cut -d' ' -f3), same machine and disk, loopback TCP, settings: $pg_settings"
	if [[ $pg_fsync == 1 ]]; then
		echo "            fsync ON: every commit is on disk before it is acknowledged, as in a real deployment"
	else
		echo "            fsync OFF (BENCH_PG_FSYNC=0): commits are NOT durable; not a deployment's figure"
	fi
fi
echo "settings:   wrk, $conc connections in all, ${secs}s per measurement after a ${warmup} warm-up, best of $rounds round(s)"
echo "load:       $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo unknown) (1/5/15-min load average before measuring)"
echo

declare -A rps p50 p99 errs runs
creds=bench:$secret
token=""

# wrk_once SCRIPT DURATION URL... runs wrk against each URL at once (one
# URL: 2 threads and all the connections; two: 1 thread and half the
# connections each) and prints "rps p50 p99 errors": rates and errors
# summed, the worse latency of the two.
wrk_once() {
	local script=$1 dur=$2
	shift 2
	local n=$# i=0 u
	local threads=2 c=$conc
	if ((n > 1)); then threads=1 c=$((conc / n)); fi
	local -a pids=()
	for u in "$@"; do
		WRK_BASIC=$creds WRK_BEARER=$token wrk -t "$threads" -c "$c" -d "$dur" -s "$repo/bench/wrk/$script" "$u" >"$work/wrk.$i" 2>&1 &
		pids+=($!)
		i=$((i + 1))
	done
	local failed=0
	for u in "${pids[@]}"; do wait "$u" || failed=1; done
	((failed == 0)) || { cat "$work"/wrk.* >&2; return 1; }
	cat "$work"/wrk.* | awk '/^WRK / {
		for (f = 2; f <= NF; f++) { split($f, kv, "="); v[kv[1]] = kv[2] }
		rps += v["rps"]; errors += v["errors"]
		if (v["p50_ms"] > p50) p50 = v["p50_ms"]
		if (v["p99_ms"] > p99) p99 = v["p99_ms"]
		lines++
	} END { if (lines == 0) exit 1; printf "%.1f %.3f %.3f %d\n", rps, p50, p99, errors }'
	rm -f "$work"/wrk.*
}

# measure NAME SCRIPT URL... warms up (discarded), measures, and keeps
# the best round of NAME.
measure() {
	local name=$1 script=$2
	shift 2
	wrk_once "$script" "$warmup" "$@" >/dev/null || die "wrk failed for $name (warm-up)"
	local out
	out=$(wrk_once "$script" "${secs}s" "$@") || die "wrk failed for $name"
	local r a b e
	read -r r a b e <<<"$out"
	record "$name" "$r" "$a" "$b" "$e"
}

# record NAME RPS P50 P99 ERRORS keeps the best round of NAME.
record() {
	local name=$1 r=$2 a=$3 b=$4 e=$5
	echo "  $name: ${r}/s p50 ${a} ms p99 ${b} ms errors $e" >&2
	runs[$name]="${runs[$name]:+${runs[$name]} }${r%.*}"
	errs[$name]=$((${errs[$name]:-0} + e))
	if [[ -n ${rps[$name]:-} ]] && awk -v x="$r" -v y="${rps[$name]}" 'BEGIN { exit !(x <= y) }'; then
		return 0
	fi
	rps[$name]=$r p50[$name]=$a p99[$name]=$b
}

# measure_grants NAME MODE runs bench/grantload -mode MODE -scope api
# against each node at once (BENCH_CONCURRENCY workers, split over the
# nodes) and keeps the best round of NAME: rates and errors summed, the
# worse latency.
measure_grants() {
	local name=$1 mode=$2 n i=0 failed=0
	local -a pids=()
	for n in $(seq "$nodes"); do
		"$work/grantload" -issuer "http://127.0.0.1:$((18090 + (n - 1) * 4))" -mode "$mode" -scope api \
			-c $((conc / nodes)) -d "${secs}s" >"$work/gl.$i" 2>&1 &
		pids+=($!)
		i=$((i + 1))
	done
	for n in "${pids[@]}"; do wait "$n" || failed=1; done
	((failed == 0)) || { cat "$work"/gl.* >&2; die "grantload failed for $name"; }
	local out
	out=$(cat "$work"/gl.* | awk '/: [0-9.]+\/s/ {
		for (f = 1; f <= NF; f++) {
			if ($f ~ /\/s$/) { sub(/\/s$/, "", $f); rps += $f }
			if ($f == "p50" && $(f + 1) + 0 > p50) p50 = $(f + 1) + 0
			if ($f == "p99" && $(f + 1) + 0 > p99) p99 = $(f + 1) + 0
			if ($f == "errors") errors += $(f + 1)
		}
		lines++
	} END { if (lines == 0) exit 1; printf "%.1f %.3f %.3f %d\n", rps, p50, p99, errors }') || { cat "$work"/gl.* >&2; die "no result from grantload for $name"; }
	rm -f "$work"/gl.*
	local r a b e
	read -r r a b e <<<"$out"
	record "$name" "$r" "$a" "$b" "$e"
}

for cfg in $configs; do
	case $cfg in
	bolt1) store=bolt nodes=1 ;;
	pg1) store=pg nodes=1 ;;
	pg2) store=pg nodes=2 ;;
	esac
	echo "configuration $cfg: $nodes node(s) on $store" >&2
	for n in $(seq "$nodes"); do start_node "$n" "$store"; done
	# One access token, from node 1, sent on every gate request (to both
	# nodes: they share the keys).
	rm -f "$work/token"
	"$work/load" -url http://127.0.0.1:18092/ -d 1s -n 1 -warmup 0 -token-url http://127.0.0.1:18090/oauth/token \
		-token-basic "$creds" -tokens 1 -tokens-file "$work/token" >/dev/null 2>&1 || die "fetching an access token from node 1 ($cfg) failed"
	token=$(head -1 "$work/token")
	[[ -n $token ]] || die "no access token from node 1 ($cfg)"
	gates=() proxies=() ups=() toks=()
	for n in $(seq "$nodes"); do
		base=$((18090 + (n - 1) * 4))
		toks+=("http://127.0.0.1:$base/oauth/token")
		gates+=("http://127.0.0.1:$((base + 1))/")
		proxies+=("http://127.0.0.1:$((base + 2))/")
		ups+=("http://127.0.0.1:$((base + 3))/")
	done
	for _ in $(seq "$rounds"); do
		measure "${cfg}_proxy" bearer.lua "${proxies[@]}"
		measure "${cfg}_gate" bearer.lua "${gates[@]}"
		measure "${cfg}_respond" token.lua "${ups[@]}"
		measure "${cfg}_token" token.lua "${toks[@]}"
	done
	for _ in $(seq "$rounds"); do
		measure_grants "${cfg}_refresh" refresh
		measure_grants "${cfg}_code" code
	done
	for pid in "${node_pids[@]}"; do
		kill -0 "$pid" 2>/dev/null || die "a node of $cfg exited during the benchmark"
	done
	stop_nodes
done

ratio() { awk -v a="${rps[$1]:-0}" -v b="${rps[$2]:-0}" 'BEGIN { printf "%.3f", (b > 0 ? a / b : 0) }'; }
label() {
	case $1 in
	bolt1) echo "1 node, bbolt" ;;
	pg1) echo "1 node, PostgreSQL" ;;
	pg2) echo "2 nodes, PostgreSQL" ;;
	esac
}
echo
printf "%-20s %-30s %11s %7s %7s  %11s %7s %7s  %6s\n" configuration figure value p50ms p99ms baseline p50ms p99ms ratio
printf '%.0s-' $(seq 110)
echo
row() { # row CONFIG FIGURE_TEXT FIGURE BASE
	local cfg=$1 text=$2 v=$1_$3 b=$1_$4
	printf "%-20s %-30s %9.0f/s %7.2f %7.2f  %9.0f/s %7.2f %7.2f  %6s\n" "$(label "$cfg")" "$text" \
		"${rps[$v]}" "${p50[$v]}" "${p99[$v]}" "${rps[$b]}" "${p50[$b]}" "${p99[$b]}" "$(ratio "$v" "$b")"
	if [[ ${errs[$v]} != 0 || ${errs[$b]} != 0 ]]; then
		printf "%-20s errors: %s in the figure, %s in the baseline (non-2xx or transport)\n" "" "${errs[$v]}" "${errs[$b]}"
	fi
}
for cfg in $configs; do
	row "$cfg" "oauth_protect+proxy, one token" gate proxy
	row "$cfg" "client_credentials tokens" token respond
done
echo
echo "durable grant paths (bench/grantload -scope api, $conc workers in all, each with its own grant; every request"
echo "is acknowledged after its transaction is on disk; no Caddy baseline):"
printf "%-20s %-36s %11s %7s %7s  %s\n" configuration figure value p50ms p99ms "against 1 node, bbolt"
for cfg in $configs; do
	for f in refresh code; do
		v=${cfg}_$f
		text="refresh-token rotations"
		[[ $f == code ]] && text="authorize + code redemption"
		vs=""
		[[ -n ${rps[bolt1_$f]:-} ]] && vs=$(ratio "$v" "bolt1_$f")
		printf "%-20s %-36s %9.0f/s %7.2f %7.2f  %s\n" "$(label "$cfg")" "$text" "${rps[$v]}" "${p50[$v]}" "${p99[$v]}" "$vs"
		if [[ ${errs[$v]} != 0 ]]; then
			printf "%-20s errors: %s (non-2xx or transport)\n" "" "${errs[$v]}"
		fi
	done
done
echo
echo "baselines: plain reverse_proxy to the same upstream, sent the same Authorization header, for oauth_protect;"
echo "           respond \"ok\" sent the same POST and Basic header, for the token endpoint; all on the same node(s)."
echo "two nodes: two wrk at once, 1 thread and $((conc / 2)) connections each, one per node; rates summed, latency the worse of the two."
if [[ " $configs " == *" pg1 "* && " $configs " == *" pg2 "* ]]; then
	echo "2 nodes / 1 node on PostgreSQL: gate $(ratio pg2_gate pg1_gate), tokens $(ratio pg2_token pg1_token);" \
		"plain proxy $(ratio pg2_proxy pg1_proxy), respond $(ratio pg2_respond pg1_respond)"
fi
if [[ " $configs " == *" bolt1 "* && " $configs " == *" pg1 "* ]]; then
	echo "1 node, PostgreSQL / bbolt: gate $(ratio pg1_gate bolt1_gate), tokens $(ratio pg1_token bolt1_token)"
fi
echo "note:      the nodes, wrk and PostgreSQL share these $(nproc) CPUs: a second node here adds no CPU, only a second"
echo "           process competing for the same cores, so the two-node rates cannot scale linearly on this machine;"
echo "           the ratios against plain Caddy in the same configuration are the meaningful figures."
if ((rounds > 1)); then
	echo "rounds (req/s):"
	for cfg in $configs; do
		echo "  $cfg: proxy ${runs[${cfg}_proxy]}; gate ${runs[${cfg}_gate]}; respond ${runs[${cfg}_respond]}; token ${runs[${cfg}_token]};"
		echo "  $cfg: refresh ${runs[${cfg}_refresh]}; code ${runs[${cfg}_code]}"
	done
fi
echo "load:      $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo unknown) (load average after measuring)"
