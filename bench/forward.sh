#!/usr/bin/env bash
# Benchmark of the forward proxy: the same GETs on a jwt route, sent directly to the gateway
# (plain HTTP, the route's Host) and through its forward proxy (CONNECT, TLS terminated with a
# certificate from the gateway's CA, then keep-alive requests inside the tunnel), against a
# fixed-body upstream (nginx). The gateway (release, one worker thread) on core 0; the load
# generator (examples/forward_load.rs, since wrk cannot speak through a proxy) and the upstream
# on core 1. 64 keep-alive connections; interleaved rounds; medians.
#
# Usage: bench/forward.sh [ROUNDS] [SECONDS]     (defaults: 3 rounds of 3 s)
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}
SECS=${2:-3}
root=$(pwd)
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
cargo build --release --quiet --example forward_load
cargo build --release --quiet
T="${CARGO_TARGET_DIR:-$root/target}/release"
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
UP=$(free_port); GW=$(free_port); IDP=$(free_port)
cat > "$work/up.conf" <<EOF
worker_processes 1; daemon off; pid $work/up.pid; error_log /dev/null crit;
events { worker_connections 8000; }
http { access_log off; keepalive_requests 1000000;
  server { listen 127.0.0.1:$UP; location / { return 200 "ok\n"; } } }
EOF
taskset -c 1 "$NGINX" -c "$work/up.conf" -e /dev/null & pids+=($!)
"$T/cognito-gate" ca init --out "$work/ca" >/dev/null
cat > "$work/gate.toml" <<EOF
[server]
listen = "127.0.0.1:$GW"
worker_threads = 1
[log]
level = "error"
[cognito]
issuer = "http://127.0.0.1:$IDP/bench-pool"
app_clients = []
[cognito.jwks]
url = "http://127.0.0.1:$IDP/dev/jwks"
[exchange]
client_id = "bench-client"
user_pool_id = "bench-pool"
[dev_idp]
listen = "127.0.0.1:$IDP"
signing_keys = "$root/certs/dev-idp.key"
[[dev_idp.users]]
username = "bench"
password = "Bench-P@ss-1"
[login_api]
path_prefix = "/auth"
[forward_proxy]
intercept = ["orders.internal.example"]
ca_cert = "$work/ca/ca.pem"
ca_key = "$work/ca/ca.key"
[[routes]]
name = "orders"
host = "orders.internal.example"
path_prefix = "/"
upstream = "http://127.0.0.1:$UP"
auth = ["jwt"]
EOF
taskset -c 0 "$T/cognito-gate" --config "$work/gate.toml" 2>"$work/gate.log" & pids+=($!)
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$GW/readyz" >/dev/null && break; sleep 0.1; done
TOKEN=$(curl -sf -X POST "http://127.0.0.1:$GW/auth/login" -H 'content-type: application/json' \
  -d '{"username":"bench","password":"Bench-P@ss-1"}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["AuthenticationResult"]["IdToken"])')
LOAD="$T/examples/forward_load"
results="$work/results.jsonl"
run() { # MODE CONNS SECONDS LABEL
  local out; out=$(taskset -c 1 "$LOAD" "$1" "127.0.0.1:$GW" orders.internal.example "$work/ca/ca.pem" "$2" "$3" "$TOKEN")
  echo "{\"mode\":\"$4\",\"run\":$out}" >> "$results"
}
for r in $(seq "$ROUNDS"); do
  echo "round $r/$ROUNDS" >&2
  run direct 64 "$SECS" direct
  run connect 64 "$SECS" through-connect
done
mkdir -p bench/results
python3 - "$results" <<'PY' | tee bench/results/forward.txt
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
modes = {}
for r in rows: modes.setdefault(r["mode"], []).append(r["run"])
print(f"{'mode':<18}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'non-2xx':>9}")
for m, rs in modes.items():
    med = lambda k: statistics.median(x[k] for x in rs)
    print(f"{m:<18}{med('rps'):>9.0f}{med('p50_ms'):>9.2f}{med('p99_ms'):>9.2f}{sum(x['non_2xx'] for x in rs):>9}")
PY
