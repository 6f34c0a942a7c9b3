#!/usr/bin/env bash
# Benchmark caddy-oauthgate against plain Caddy in one run.
#
#   bash bench/run.sh
#   bash bench/run.sh nodes    one and two nodes, bbolt and PostgreSQL
#                              (bench/nodes.sh, its own ports 18090-18099)
#   bash bench/run.sh bound    only the sender-constrained pairs: DPoP and
#                              mutual TLS, with the one-token bearer pair
#                              (about 2 minutes; the full run has them too)
#
# Builds ./cmd/caddy and bench/load into a temporary directory, starts
# Caddy with bench/Caddyfile (127.0.0.1:18080-18089, admin localhost:18019),
# measures each figure next to its baseline at the same concurrency, prints
# a table and stops Caddy and removes the temporary directory on exit.
#
# Environment:
#   BENCH_SECONDS      measured seconds per figure          (default 5)
#   BENCH_WARMUP       warm-up before each measurement      (default 1s)
#   BENCH_CONCURRENCY  concurrent connections               (default 64)
#   BENCH_TOKENS       distinct tokens for the fresh-token pair; "auto" sizes
#                      the pool so no token is used twice (from the
#                      one-token run), with a floor of 2000  (default auto)
#   BENCH_ROUNDS       measure each pair this many times, alternating
#                      baseline and figure, and keep each one's best run
#                      (other load on the machine only ever slows a run
#                      down)                                  (default 3)
#   BENCH_PROFILE      a directory: save Caddy CPU profiles (admin API
#                      /debug/pprof) of the measured phase of the token and
#                      oauth_protect runs (last round) there, with the
#                      binary: `go tool pprof -top DIR/caddy DIR/token.pprof`;
#                      also refresh.pprof (needs curl)
#   BENCH_SEED         live refresh-token grants to load for the large-
#                      database figures; 0 skips them       (default 1000000)
#   BENCH_RSA          1: also measure the fresh-token pair with RS256
#                      tokens (on a separate data directory; fetching
#                      the RSA-signed pool takes a while)   (default 1)
#   BENCH_STRICT       1: exit 1 when a goal is missed      (default 0)
#   BENCH_PROOFS       DPoP proofs signed before each DPoP run; "auto"
#                      sizes the pool from the fastest one-token or DPoP
#                      run so far (2 x its requests over warm-up and
#                      measurement, at least 2000)          (default auto)
#   BENCH_WRK          1: also measure the token pair with wrk (2 threads,
#                      bench/wrk/token.lua) when wrk is installed, in the
#                      same rounds, and print its p99 beside the load
#                      generator's; 0 skips it              (default 1)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
repo=$(pwd)

mode=full
case ${1:-} in
"") ;;
nodes) exec bash bench/nodes.sh ;;
bound) mode=bound ;;
*)
	echo "bench: unknown argument $1 (none: the main benchmark; nodes: one and two nodes, bbolt and PostgreSQL; bound: only the DPoP and mTLS pairs)" >&2
	exit 2
	;;
esac

secs=${BENCH_SECONDS:-5}
warmup=${BENCH_WARMUP:-1s}
conc=${BENCH_CONCURRENCY:-64}
tokens=${BENCH_TOKENS:-auto}
rounds=${BENCH_ROUNDS:-3}
strict=${BENCH_STRICT:-0}
seed=${BENCH_SEED:-1000000}
profile=${BENCH_PROFILE:-}
rsa=${BENCH_RSA:-1}
use_wrk=${BENCH_WRK:-1}
nproofs=${BENCH_PROOFS:-auto}
if [[ $use_wrk == 1 ]] && ! command -v wrk >/dev/null; then
	echo "bench: wrk is not installed; the token pair is measured with bench/load only" >&2
	use_wrk=0
fi
secret=bench-secret-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
ports=(18019 18080 18081 18082 18083 18084 18085 18086 18087 18088 18089)

die() {
	echo "bench: $*" >&2
	exit 1
}

[[ $secs =~ ^[0-9]+$ && $secs -ge 1 && $secs -le 300 ]] || die "BENCH_SECONDS must be a whole number from 1 to 300"
[[ $conc =~ ^[0-9]+$ && $conc -ge 1 && $conc -le 1024 ]] || die "BENCH_CONCURRENCY must be from 1 to 1024"
[[ $rounds =~ ^[0-9]+$ && $rounds -ge 1 && $rounds -le 20 ]] || die "BENCH_ROUNDS must be from 1 to 20"
[[ $nproofs == auto || ($nproofs =~ ^[0-9]+$ && $nproofs -ge 1 && $nproofs -le 1000000) ]] || die "BENCH_PROOFS must be auto or from 1 to 1000000"
[[ $tokens == auto || ($tokens =~ ^[0-9]+$ && $tokens -ge 1 && $tokens -le 1000000) ]] || die "BENCH_TOKENS must be auto or from 1 to 1000000"

# Refuse to start when something already listens on one of our ports.
for p in "${ports[@]}"; do
	if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
		die "port $p is in use on 127.0.0.1; stop whatever listens there first"
	fi
	if command -v ss >/dev/null && [[ -n $(ss -Hltn "sport = :$p" 2>/dev/null) ]]; then
		die "port $p is in use: $(ss -Hltnp "sport = :$p" 2>/dev/null | head -1)"
	fi
done

if [[ -n $profile ]]; then
	mkdir -p "$profile" || die "cannot create $profile"
	profile=$(cd "$profile" && pwd)
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/oauthgate-bench.XXXXXX")
caddy_pid=""
cleanup() {
	local rc=$?
	if [[ -n $caddy_pid ]] && kill -0 "$caddy_pid" 2>/dev/null; then
		kill "$caddy_pid" 2>/dev/null || true
		for _ in $(seq 50); do
			kill -0 "$caddy_pid" 2>/dev/null || break
			sleep 0.1
		done
		if kill -0 "$caddy_pid" 2>/dev/null; then
			kill -9 "$caddy_pid" 2>/dev/null || true
		fi
		wait "$caddy_pid" 2>/dev/null || true
	fi
	rm -rf "$work"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

echo "building caddy and the load generator..." >&2
go build -o "$work/caddy" ./cmd/caddy || die "go build ./cmd/caddy failed"
go build -o "$work/load" ./bench/load || die "go build ./bench/load failed"
go build -o "$work/grantload" ./bench/grantload || die "go build ./bench/grantload failed"
go build -tags oauthgate_bench -o "$work/seed" ./bench/seed || die "go build ./bench/seed failed"
if [[ -n $profile ]]; then cp "$work/caddy" "$profile/caddy"; fi
# The mTLS sites' certificates: a CA of this run, a server certificate for
# localhost and a client certificate (bench/load trusts and presents them).
tlsdir="$work/tls"
"$work/load" -make-certs "$tlsdir" || die "making the test certificates failed"
tls_client=(-cacert "$tlsdir/ca.pem" -cert "$tlsdir/client.pem" -key "$tlsdir/client.key")

mkdir -p "$work/data"
data="$work/data"
alg=ES256
start_caddy() {
	mkdir -p "$data"
	BENCH_DIR="$data" BENCH_TLS="$tlsdir" BENCH_ALG="$alg" BENCH_SECRET="$secret" \
		"$work/caddy" run --config "$repo/bench/Caddyfile" --adapter caddyfile >"$work/caddy.log" 2>&1 &
	caddy_pid=$!

	# Ready when the admin API, the token server's JWKS and both baselines'
	# paths answer 2xx (the proxy checks the upstream too).
	local ready_urls=(
		http://localhost:18019/config/
		http://127.0.0.1:18080/oauth/jwks
		http://127.0.0.1:18081/
		http://127.0.0.1:18083/
		http://127.0.0.1:18089/
	)
	local deadline=$((SECONDS + 30))
	for u in "${ready_urls[@]}"; do
		until "$work/load" -wait 1s -url "$u" 2>/dev/null; do
			if ! kill -0 "$caddy_pid" 2>/dev/null; then
				echo "--- caddy log ---" >&2
				cat "$work/caddy.log" >&2
				die "caddy exited during start-up (log above)"
			fi
			if ((SECONDS >= deadline)); then
				echo "--- caddy log ---" >&2
				tail -50 "$work/caddy.log" >&2
				die "caddy did not come up within 30s: $u does not answer 2xx"
			fi
		done
	done
	until "$work/load" -wait 1s -url https://localhost:18088/ "${tls_client[@]}" 2>/dev/null; do
		if ! kill -0 "$caddy_pid" 2>/dev/null || ((SECONDS >= deadline)); then
			tail -50 "$work/caddy.log" >&2
			die "the mTLS proxy https://localhost:18088/ did not answer 2xx within 30s"
		fi
	done
}

stop_caddy() {
	kill "$caddy_pid" 2>/dev/null || true
	wait "$caddy_pid" 2>/dev/null || true
	caddy_pid=""
}

start_caddy

cpu=$(lscpu 2>/dev/null | sed -n 's/^Model name:[[:space:]]*//p' | head -1)
[[ -n $cpu ]] || cpu=$(sed -n 's/^model name[[:space:]]*:[[:space:]]*//p' /proc/cpuinfo | head -1)
fam=$(lscpu 2>/dev/null | sed -n 's/^CPU family:[[:space:]]*//p' | head -1)
model=$(lscpu 2>/dev/null | sed -n 's/^Model:[[:space:]]*//p' | head -1)
hyp=$(lscpu 2>/dev/null | sed -n 's/^Hypervisor vendor:[[:space:]]*//p' | head -1)
rev=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
if [[ -n $(git status --porcelain --untracked-files=no 2>/dev/null) ]]; then rev+="+dirty"; fi

echo "caddy-oauthgate benchmark, $(date -u +%Y-%m-%dT%H:%M:%SZ)"
echo "machine:  $(nproc) CPUs, ${cpu:-unknown CPU}${fam:+ (family $fam model $model)}${hyp:+, $hyp guest}, $(uname -sr)"
echo "software: $(go version | cut -d' ' -f3-), caddy $("$work/caddy" version | cut -d' ' -f1), commit $rev"
echo "settings: $conc connections, ${secs}s per measurement after ${warmup} warm-up, best of $rounds round(s),"
echo "          HTTP/1.1 keep-alive over loopback"
echo "load:     $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo unknown) (1/5/15-min load average before measuring)"
echo "note:     the load generator and Caddy share these $(nproc) CPUs; ratios against plain Caddy in the"
echo "          same run are the meaningful figures, absolute numbers are this machine's"
echo

declare -A rps p50 p99 errs ntok reqs runs
creds=bench:$secret
token_url=http://127.0.0.1:18080/oauth/token

# measure NAME ARGS... runs the load generator and records its RESULT line.
measure() {
	local name=$1
	shift
	local out line
	local -a prof=()
	if [[ -n $profile && $name =~ ^(token|protect_one|protect_session|protect_fresh)$ ]]; then
		prof=(-profile http://localhost:18019/debug/pprof/profile -profile-out "$profile/$name.pprof")
	fi
	out=$("$work/load" -c "$conc" -d "${secs}s" -warmup "$warmup" -label "$name" "${prof[@]}" "$@" 2>&1) || {
		echo "$out" >&2
		die "load generator failed for $name"
	}
	sed 's/^/  /' <<<"$out" | grep -v '^  RESULT ' >&2
	line=$(grep '^RESULT ' <<<"$out" | tail -1)
	[[ -n $line ]] || die "no RESULT line for $name"
	local new
	new=$(sed -n 's/.* rps=\([^ ]*\).*/\1/p' <<<"$line")
	runs[$name]="${runs[$name]:+${runs[$name]} }${new%.*}"
	# Errors count over all rounds, not just the best one.
	errs[$name]=$((${errs[$name]:-0} + $(sed -n 's/.* errors=\([^ ]*\).*/\1/p' <<<"$line")))
	if [[ -n ${rps[$name]:-} ]] && awk -v a="$new" -v b="${rps[$name]}" 'BEGIN { exit !(a <= b) }'; then
		return 0 # an earlier round was better
	fi
	rps[$name]=$(sed -n 's/.* rps=\([^ ]*\).*/\1/p' <<<"$line")
	p50[$name]=$(sed -n 's/.* p50_ms=\([^ ]*\).*/\1/p' <<<"$line")
	p99[$name]=$(sed -n 's/.* p99_ms=\([^ ]*\).*/\1/p' <<<"$line")
	ntok[$name]=$(sed -n 's/.* tokens=\([^ ]*\).*/\1/p' <<<"$line")
	reqs[$name]=$(sed -n 's/.* requests=\([^ ]*\).*/\1/p' <<<"$line")
}

# measure_wrk NAME URL runs wrk with bench/wrk/token.lua (the same POST
# and Basic header as bench/load sends) and records its WRK line the way
# measure records RESULT, under wrk_NAME. wrk has no warm-up phase of its
# own: a discarded run of BENCH_WARMUP comes first.
measure_wrk() {
	local name=wrk_$1 url=$2 out line new
	WRK_BASIC=$creds wrk -t2 -c "$conc" -d "$warmup" -s "$repo/bench/wrk/token.lua" "$url" >/dev/null 2>&1 || true
	out=$(WRK_BASIC=$creds wrk -t2 -c "$conc" -d "${secs}s" -s "$repo/bench/wrk/token.lua" "$url" 2>&1) || {
		echo "$out" >&2
		die "wrk failed for $1"
	}
	line=$(grep '^WRK ' <<<"$out" | tail -1)
	[[ -n $line ]] || die "no WRK line for $1: $out"
	echo "  $1 (wrk): $line" >&2
	new=$(sed -n 's/.* rps=\([^ ]*\).*/\1/p' <<<"$line")
	runs[$name]="${runs[$name]:+${runs[$name]} }${new%.*}"
	errs[$name]=$((${errs[$name]:-0} + $(sed -n 's/.* errors=\([^ ]*\).*/\1/p' <<<"$line")))
	if [[ -n ${rps[$name]:-} ]] && awk -v a="$new" -v b="${rps[$name]}" 'BEGIN { exit !(a <= b) }'; then
		return 0
	fi
	rps[$name]=$new
	p50[$name]=$(sed -n 's/.* p50_ms=\([^ ]*\).*/\1/p' <<<"$line")
	p99[$name]=$(sed -n 's/.* p99_ms=\([^ ]*\).*/\1/p' <<<"$line")
}

# row FIGURE VALUE_NAME BASE_NAME MIN_RATIO MIN_VALUE GOAL_TEXT
summary=()
all_met=1
row() {
	local fig=$1 v=$2 b=$3 minratio=$4 minvalue=$5 goal=$6
	local ratio met
	ratio=$(awk -v a="${rps[$v]}" -v b="${rps[$b]}" 'BEGIN { printf "%.3f", (b > 0 ? a / b : 0) }')
	met=$(awk -v r="$ratio" -v mr="$minratio" -v a="${rps[$v]}" -v mv="$minvalue" \
		-v e1="${errs[$v]}" -v e2="${errs[$b]}" \
		'BEGIN { print ((r >= mr && a >= mv && e1 == 0 && e2 == 0) ? "met" : "NOT met") }')
	printf "%-36s %9.0f/s %7.2f %7.2f  %9.0f/s %7.2f %7.2f  %6s  %-22s %s\n" \
		"$fig" "${rps[$v]}" "${p50[$v]}" "${p99[$v]}" "${rps[$b]}" "${p50[$b]}" "${p99[$b]}" \
		"$ratio" "$goal" "$met"
	if [[ ${errs[$v]} != 0 || ${errs[$b]} != 0 ]]; then
		printf "%-36s errors: %s in the figure, %s in the baseline (non-2xx or transport)\n" "" "${errs[$v]}" "${errs[$b]}"
	fi
	summary+=("$fig: $met (ratio $ratio)")
	[[ $met == met ]] || all_met=0
}

# The sender-constrained pairs (docs/dpop.md, docs/mtls.md), with the
# client bench-bound. DPoP: the token is requested with a proof, so it is
# bound to the load generator's key; every request then carries
# Authorization: DPoP and a proof of its own (fresh jti, iat, htm, htu,
# ath) from a pool signed before the timed phase, each sent once. The
# baseline is the plain proxy sent the same kind of headers. mTLS: the
# token is requested over a TLS connection with the client certificate
# (18086), so it is certificate-bound; the gate (18087) and the plain
# proxy (18088) are TLS sites that request client certificates alike, and
# the load generator presents the certificate on keep-alive connections.
# protect_tls_bearer is the same TLS gate with an unbound bearer token and
# no client certificate: what the binding check adds on top of TLS.
bound_creds=bench-bound:$secret
dpop_body="grant_type=client_credentials&resource=http%3A%2F%2F127.0.0.1%3A18085"
mtls_body="grant_type=client_credentials&resource=https%3A%2F%2Flocalhost%3A18087"
mtls_token_url=https://localhost:18086/oauth/token
# proof_pool prints the number of proofs for one DPoP run: twice the
# requests of the fastest one-token or DPoP run so far, over warm-up and
# measurement, so that no run of the pair runs out (a run that does ends
# early and says so; a proof is never sent twice).
proof_pool() {
	if [[ $nproofs != auto ]]; then
		echo "$nproofs"
		return
	fi
	local w=1 n most=0 r
	[[ $warmup =~ ^([0-9]+)s$ ]] && w=${BASH_REMATCH[1]}
	for r in proxy_one protect_one proxy_dpop protect_dpop; do
		((${reqs[$r]:-0} > most)) && most=${reqs[$r]}
	done
	n=$((most * (secs + w) / secs * 2))
	((n >= 2000)) || n=2000
	((n <= 1000000)) || n=1000000
	echo "$n"
}
bound_round() {
	local np
	np=$(proof_pool)
	measure proxy_dpop -url http://127.0.0.1:18083/ -dpop-htu http://127.0.0.1:18085/ -dpop-proofs "$np" \
		-token-url "$token_url" -token-basic "$bound_creds" -token-body "$dpop_body"
	measure protect_dpop -url http://127.0.0.1:18085/ -dpop-proofs "$np" \
		-token-url "$token_url" -token-basic "$bound_creds" -token-body "$dpop_body"
	measure proxy_mtls -url https://localhost:18088/ "${tls_client[@]}" \
		-token-url "$mtls_token_url" -token-basic "$bound_creds" -token-body "$mtls_body"
	measure protect_mtls -url https://localhost:18087/ "${tls_client[@]}" \
		-token-url "$mtls_token_url" -token-basic "$bound_creds" -token-body "$mtls_body"
	measure protect_tls_bearer -url https://localhost:18087/ -cacert "$tlsdir/ca.pem" \
		-token-url "$mtls_token_url" -token-basic "$bound_creds" -token-body "$mtls_body"
}
bound_rows() {
	row "oauth_protect+proxy, DPoP, proof/req" protect_dpop proxy_dpop 0 0 "(reported)"
	row "  the same against the bearer gate" protect_dpop protect_one 0 0 "(reported)"
	row "oauth_protect+proxy, mTLS-bound token" protect_mtls proxy_mtls 0 0 "(reported)"
	row "  the same against the bearer gate" protect_mtls protect_one 0 0 "(reported)"
	row "  against a bearer token on that TLS" protect_mtls protect_tls_bearer 0 0 "(reported)"
}
bound_notes() {
	echo "DPoP:     a DPoP-bound token (cnf.jkt) with Authorization: DPoP and a fresh proof on every request (ES256, new jti,"
	echo "          iat, htm, htu, ath); ${ntok_proofs:-?} proofs per run signed before the timed phase, each sent once (warm-up"
	echo "          included); baseline: plain reverse_proxy (18083) sent the same kind of headers."
	echo "mTLS:     a certificate-bound token (cnf.x5t#S256) over keep-alive HTTP/1.1 TLS connections presenting the client"
	echo "          certificate; baseline: plain reverse_proxy on a TLS site requesting client certificates alike (18088);"
	echo "          also against the same TLS gate sent an unbound bearer token without a client certificate."
	echo "bearer gate: oauth_protect+proxy over plain HTTP, one bearer token repeated (18082), the same rounds."
}

echo "measuring (each pair: baseline first, then the figure):" >&2
if [[ $mode == bound ]]; then
	for _ in $(seq "$rounds"); do
		measure proxy_one -url http://127.0.0.1:18083/ -token-url "$token_url" -token-basic "$creds" -tokens 1
		measure protect_one -url http://127.0.0.1:18082/ -token-url "$token_url" -token-basic "$creds" -tokens 1
		ntok_proofs=$(proof_pool)
		bound_round
	done
	if ! kill -0 "$caddy_pid" 2>/dev/null; then
		tail -50 "$work/caddy.log" >&2
		die "caddy exited during the benchmark"
	fi
	echo
	printf "%-36s %11s %7s %7s  %11s %7s %7s  %6s  %-22s %s\n" \
		figure value p50ms p99ms baseline p50ms p99ms ratio goal result
	printf '%.0s-' $(seq 134)
	echo
	row "oauth_protect+proxy, one token" protect_one proxy_one 0.98 0 ">=0.98"
	bound_rows
	echo
	bound_notes
	if ((rounds > 1)); then
		echo "best of $rounds: each figure and each baseline is its best round, chosen independently;"
		echo "rounds (req/s): proxy_one ${runs[proxy_one]}; protect_one ${runs[protect_one]};"
		echo "                proxy_dpop ${runs[proxy_dpop]}; protect_dpop ${runs[protect_dpop]};"
		echo "                proxy_mtls ${runs[proxy_mtls]}; protect_mtls ${runs[protect_mtls]}; protect_tls_bearer ${runs[protect_tls_bearer]}"
	fi
	echo "load:     $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo unknown) (load average after measuring)"
	echo
	joined=$(printf '%s; ' "${summary[@]}")
	echo "goals: ${joined%; }"
	if [[ $strict == 1 && $all_met == 0 ]]; then
		exit 1
	fi
	exit 0
fi
for _ in $(seq "$rounds"); do
	measure respond -url http://127.0.0.1:18081/ -method POST -body grant_type=client_credentials -basic "$creds"
	measure token -url "$token_url" -body grant_type=client_credentials -basic "$creds"
	if [[ $use_wrk == 1 ]]; then
		measure_wrk respond http://127.0.0.1:18081/
		measure_wrk token "$token_url"
	fi
done
# The gate in browser mode (18084): bench-user signs in once through the
# gate's code flow; every request then carries that session cookie. Its
# baseline is the plain proxy sent the same Cookie header, measured in the
# same rounds as the bearer pair, so the session gate can be read against
# both. The cookie is a credential: it stays in this variable.
session_cookie=$("$work/grantload" -mode gate-session -gate http://127.0.0.1:18084/) || die "signing in at the session gate (18084) failed"
[[ $session_cookie == *=* ]] || die "no session cookie from the gate at 18084"
for _ in $(seq "$rounds"); do
	measure proxy_one -url http://127.0.0.1:18083/ -token-url "$token_url" -token-basic "$creds" -tokens 1
	measure protect_one -url http://127.0.0.1:18082/ -token-url "$token_url" -token-basic "$creds" -tokens 1
	measure proxy_cookie -url http://127.0.0.1:18083/ -H "Cookie: $session_cookie"
	measure protect_session -url http://127.0.0.1:18084/ -H "Cookie: $session_cookie"
done
ntok_proofs=$(proof_pool)
for _ in $(seq "$rounds"); do
	bound_round
done

if [[ $tokens == auto ]]; then
	# Enough distinct tokens that the oauth_protect run never repeats one:
	# it should not send more requests than the one-token run did; the
	# margin absorbs noise. The load generator prints the actual reuse.
	tokens=$((reqs[protect_one] * 15 / 10))
	((tokens >= 2000)) || tokens=2000
	((tokens <= 1000000)) || tokens=1000000
fi
for _ in $(seq "$rounds"); do
	measure proxy_fresh -url http://127.0.0.1:18083/ -token-url "$token_url" -token-basic "$creds" -tokens "$tokens"
	measure protect_fresh -url http://127.0.0.1:18082/ -token-url "$token_url" -token-basic "$creds" -tokens "$tokens"
done

# fresh_elsewhere NAME FILE measures the fresh-token pair with a pool this
# Caddy did not mint: the pool is fetched into FILE once, then Caddy
# restarts on the same data directory (the same keys) before every round,
# so neither its verified-token cache nor its memory of the tokens it
# minted (tokens.Verifier.Remember) holds them: every first use pays the
# signature check, as on a second node of a fleet.
fresh_elsewhere() {
	local name=$1 file=$2
	rm -f "$file"
	"$work/load" -url http://127.0.0.1:18083/ -d 1s -n 1 -warmup 0 -token-url "$token_url" -token-basic "$creds" \
		-tokens "$tokens" -tokens-file "$file" >/dev/null 2>&1 || die "fetching the token pool for $name failed"
	stop_caddy
	for _ in $(seq "$rounds"); do
		start_caddy
		measure "proxy_$name" -url http://127.0.0.1:18083/ -token-url "$token_url" -token-basic "$creds" -tokens "$tokens" -tokens-file "$file"
		measure "protect_$name" -url http://127.0.0.1:18082/ -token-url "$token_url" -token-basic "$creds" -tokens "$tokens" -tokens-file "$file"
		stop_caddy
	done
	start_caddy
}
fresh_elsewhere fresh_other "$work/es256.tokens"

if ! kill -0 "$caddy_pid" 2>/dev/null; then
	tail -50 "$work/caddy.log" >&2
	die "caddy exited during the benchmark"
fi

echo
printf "%-36s %11s %7s %7s  %11s %7s %7s  %6s  %-22s %s\n" \
	figure value p50ms p99ms baseline p50ms p99ms ratio goal result
printf '%.0s-' $(seq 134)
echo
row "client_credentials tokens" token respond 0.25 10000 ">=0.25 and >=10000/s"
if [[ $use_wrk == 1 ]]; then
	row "  the same, measured with wrk" wrk_token wrk_respond 0 0 "(reported)"
fi
row "oauth_protect+proxy, one token" protect_one proxy_one 0.98 0 ">=0.98"
row "oauth_protect{login}+proxy, session" protect_session proxy_cookie 0 0 "(reported)"
row "  the same against the bearer gate" protect_session protect_one 0 0 "(reported)"
row "oauth_protect+proxy, fresh tokens" protect_fresh proxy_fresh 0.80 0 ">=0.80"
row "  the same, minted by another node" protect_fresh_other proxy_fresh_other 0 0 "(reported)"
bound_rows
echo
echo "baselines: respond \"ok\" (POSTing the same form and Basic header) for the token endpoint;"
echo "           plain reverse_proxy to the same upstream, sent the same Authorization headers, for oauth_protect;"
echo "           for the session gate, the same proxy sent the same Cookie header (and the bearer gate, one token)."
echo "fresh tokens: ${ntok[protect_fresh]} distinct tokens cycled in order, fetched from this Caddy before the timed phase"
echo "              (it remembers the last 16384 it minted, so their first check is a hash, not a signature);"
echo "              minted by another node: the same number fetched once, then Caddy restarted on the same keys"
echo "              before each round, so each first check verifies the signature."
bound_notes
if ((rounds > 1)); then
	echo "best of $rounds: each figure and each baseline is its best round, chosen independently;"
	echo "rounds (req/s): respond ${runs[respond]}; token ${runs[token]}; proxy_one ${runs[proxy_one]};"
	echo "                protect_one ${runs[protect_one]}; proxy_cookie ${runs[proxy_cookie]}; protect_session ${runs[protect_session]};"
	echo "                proxy_fresh ${runs[proxy_fresh]}; protect_fresh ${runs[protect_fresh]};"
	echo "                proxy_fresh_other ${runs[proxy_fresh_other]}; protect_fresh_other ${runs[protect_fresh_other]};"
	echo "                proxy_dpop ${runs[proxy_dpop]}; protect_dpop ${runs[protect_dpop]};"
	echo "                proxy_mtls ${runs[proxy_mtls]}; protect_mtls ${runs[protect_mtls]}; protect_tls_bearer ${runs[protect_tls_bearer]}"
	if [[ $use_wrk == 1 ]]; then
		echo "                with wrk: respond ${runs[wrk_respond]}; token ${runs[wrk_token]}"
	fi
fi
echo "load:     $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo unknown) (load average after measuring)"
goal() { # goal NAME VALUE MIN|MAX LIMIT UNIT: VALUE must be >= or <= LIMIT
	local op='>='
	[[ $3 == MAX ]] && op='<='
	if awk -v v="$2" -v l="$4" "BEGIN { exit !(v $op l) }"; then
		summary+=("$1: met ($2$5)")
	else
		summary+=("$1: NOT met ($2$5)")
		all_met=0
	fi
}
# p99 at saturation: the token endpoint's against respond's, with each
# generator (goal: at most twice; bench/README.md explains why they differ).
p99goal() { # p99goal LABEL FIGURE BASE
	local r
	r=$(awk -v a="${p99[$2]}" -v b="${p99[$3]}" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }')
	echo "p99 at saturation, $1: token ${p99[$2]} ms, respond ${p99[$3]} ms: ${r}x (goal <=2x)"
	goal "token p99 <=2x respond's ($1)" "$r" MAX 2 x
}

p99goal "bench/load" token respond
if [[ $use_wrk == 1 ]]; then
	p99goal "wrk" wrk_token wrk_respond
fi

# The durable grant paths have no Caddy baseline: every request is a
# bbolt write (group-committed with its neighbours) before the answer.
echo
echo "durable grant paths ($conc workers, ${secs}s; each worker its own grant):"

# The goal is the OAuth rotation (a new access and refresh token); an
# OpenID Connect grant also gets a new ID token, a second signature.
best_refresh=0
for _ in $(seq "$rounds"); do
	prof_pid=""
	if [[ -n $profile ]]; then
		# Inside the measured phase: grantload signs in and starts its
		# grants first.
		(sleep 2 && curl -fsS -o "$profile/refresh.pprof" "http://localhost:18019/debug/pprof/profile?seconds=$(((secs + 1) / 2))") &
		prof_pid=$!
	fi
	out=$("$work/grantload" -mode refresh -scope api -c "$conc" -d "${secs}s") || { echo "$out"; die "refresh load failed"; }
	if [[ -n $prof_pid ]]; then wait "$prof_pid" || true; fi
	echo "  $out"
	v=$(sed -E 's/.*: ([0-9]+)\/s.*/\1/' <<<"$out")
	((v > best_refresh)) && best_refresh=$v
done
goal "refresh rotations >=10000/s (best of $rounds)" "$best_refresh" MIN 10000 /s
out=$("$work/grantload" -mode refresh -scope "openid api" -c "$conc" -d "${secs}s") || { echo "$out"; die "refresh load failed"; }
echo "  $out"
out=$("$work/grantload" -mode code -c "$conc" -d "${secs}s") || { echo "$out"; die "code load failed"; }
echo "  $out"

if [[ $rsa == 1 ]]; then
	# RSA signatures are slow to make and fast to check: a gate that mostly
	# meets tokens it has not seen pays less with RS256. Fetching an
	# RSA-signed pool takes long, so every round sends the same one, and
	# Caddy restarts between rounds: the verified-token cache lives in
	# memory, so the gate has never seen the pool when a round starts.
	echo
	echo "fresh tokens signed with RS256 (separate data directory, Caddy restarted for each round):"
	stop_caddy
	data="$work/data-rs256" alg=RS256
	start_caddy
	fresh_elsewhere fresh_rs "$work/rs256.tokens"
	stop_caddy
	data="$work/data" alg=ES256
	start_caddy
	printf "  oauth_protect+proxy, fresh RS256 tokens (best of %s): %.0f/s (p50 %s ms, p99 %s ms) vs plain proxy %.0f/s: ratio %s\n" "$rounds" \
		"${rps[protect_fresh_rs]}" "${p50[protect_fresh_rs]}" "${p99[protect_fresh_rs]}" "${rps[proxy_fresh_rs]}" \
		"$(awk -v a="${rps[protect_fresh_rs]}" -v b="${rps[proxy_fresh_rs]}" 'BEGIN { printf "%.3f", (b > 0 ? a / b : 0) }')"
fi

if ((seed > 0)); then
	echo
	echo "large database: $seed live refresh-token grants"
	stop_caddy
	"$work/seed" -db "$data/oauth.db" -n "$seed" -out "$work/sample.txt" | sed 's/^/  /'
	start_caddy
	"$work/grantload" -mode check -tokens "$work/sample.txt" | sed 's/^/  /' || die "seeded grants do not refresh"
	mem() {
		awk '/^VmRSS/ { r = $2 } /^RssAnon/ { a = $2 } /^RssFile/ { f = $2 }
			END { printf "RSS %.1f MB (anonymous %.1f MB, file-backed %.1f MB)", r / 1024, a / 1024, f / 1024 }' "/proc/$caddy_pid/status"
	}
	echo "  after start and 64 refreshes: $(mem)"
	rss_start_kb=$(awk '/^VmRSS/ { print $2 }' "/proc/$caddy_pid/status")
	out=$("$work/grantload" -mode refresh -scope api -c "$conc" -d "${secs}s") || { echo "$out"; die "refresh load on the large database failed"; }
	echo "  with $seed grants stored: $out"
	echo "  after that load: $(mem) — file-backed pages are the binary and the bbolt pages read, reclaimable page cache"
	rss_kb=$(awk '/^VmRSS/ { print $2 }' "/proc/$caddy_pid/status")
	size=$(stat -c %s "$data/oauth.db")
	printf "  bbolt file %.1f MB\n" "$(awk -v b="$size" 'BEGIN { print b / 1048576 }')"
	goal "RSS with $seed grants <=150MB (after start)" "$(awk -v k="$rss_start_kb" 'BEGIN { printf "%.1f", k / 1024 }')" MAX 150 MB
	goal "RSS with $seed grants <=150MB (after the load)" "$(awk -v k="$rss_kb" 'BEGIN { printf "%.1f", k / 1024 }')" MAX 150 MB
fi

echo
joined=$(printf '%s; ' "${summary[@]}")
echo "goals: ${joined%; }"

if [[ $strict == 1 && $all_met == 0 ]]; then
	exit 1
fi
