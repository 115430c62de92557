#!/usr/bin/env bash
# Benchmark: what request-scoped logging and OpenTelemetry cost on the hot path. The same jwt
# route (one valid token, RS256 verified once then cached, 64 keep-alive connections, an nginx
# upstream answering a fixed body, the access log on at info) through:
#   base     an earlier build given as $1 (before request spans; e.g. a worktree's release binary)
#   off      this build, no [tracing]
#   on-1     this build, [tracing] exporting every request (OTLP/HTTP to a local sink)
#   on-0     this build, [tracing] with sample_ratio = 0 (spans made, none exported)
# interleaved A/B/C/D for ROUNDS rounds. The gateway runs on core 0; wrk, the upstream and the
# OTLP sink (a Python server answering 200) on core 1. Reports requests/s, p99 and the gateway's
# CPU microseconds per request (utime+stime from /proc over the run / requests), medians.
#
# Usage: bench/observe.sh BASE_BINARY [ROUNDS] [SECONDS]    (defaults: 3 rounds of 5 s)
set -euo pipefail
cd "$(dirname "$0")/.."
BASE=${1:?usage: bench/observe.sh BASE_BINARY [ROUNDS] [SECONDS]}
ROUNDS=${2:-3}
SECS=${3:-5}
root=$(pwd)
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
cargo build --release --quiet
GATE="${CARGO_TARGET_DIR:-$root/target}/release/cognito-gate"
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
UP=$(free_port); SINK=$(free_port)
ISSUER="https://cognito-idp.ap-northeast-1.amazonaws.com/ap-northeast-1_TestPool"

cat > "$work/up.conf" <<EOF2
worker_processes 1; daemon off; pid $work/up.pid; error_log /dev/null crit;
events { worker_connections 4000; }
http { access_log off; keepalive_requests 1000000;
  server { listen 127.0.0.1:$UP; location / { return 200 "ok\n"; } } }
EOF2
taskset -c 1 "$NGINX" -c "$work/up.conf" -e /dev/null & pids+=($!)
# The OTLP sink: answers every export 200 with an empty protobuf body.
cat > "$work/sink.py" <<'EOF2'
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length", 0)))
        self.send_response(200); self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0"); self.end_headers()
    def log_message(self, *a): pass
ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
EOF2
taskset -c 1 python3 "$work/sink.py" "$SINK" & pids+=($!)

# A token signed with the k1 fixture key.
TOKEN=$(python3 - "$ISSUER" <<'PY'
import base64, json, subprocess, sys, time
b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
now = int(time.time())
h = {"kid": "k1", "alg": "RS256"}
c = {"sub": "bench", "aud": "bench-client", "token_use": "id", "iss": sys.argv[1],
     "exp": now + 7200, "iat": now, "auth_time": now, "cognito:username": "bench"}
si = f"{b64(json.dumps(h).encode())}.{b64(json.dumps(c).encode())}"
sig = subprocess.run(["openssl", "dgst", "-sha256", "-sign", "tests/fixtures/rsa-k1.pem"],
                     input=si.encode(), capture_output=True, check=True).stdout
print(f"{si}.{b64(sig)}")
PY
)
python3 -c 'import json,sys; print(json.dumps({"keys":[json.load(open("tests/fixtures/rsa-k1.jwk.json"))]}))' > "$work/jwks.json"

config() { # port, tracing section
  cat <<EOF2
[server]
listen = "127.0.0.1:$1"
worker_threads = 1
shutdown_drain = "0s"
[log]
level = "info"
format = "json"
$2
[cognito]
issuer = "$ISSUER"
app_clients = []
[cognito.jwks]
file = "$work/jwks.json"
[[routes]]
name = "api"
path_prefix = "/"
upstream = "http://127.0.0.1:$UP"
auth = ["jwt"]
EOF2
}
declare -A PORT BIN
for v in base off on-1 on-0; do PORT[$v]=$(free_port); done
config "${PORT[base]}" "" > "$work/base.toml"
config "${PORT[off]}" "" > "$work/off.toml"
config "${PORT[on-1]}" "[tracing]
otlp_endpoint = \"http://127.0.0.1:$SINK\"
sample_ratio = 1.0" > "$work/on-1.toml"
config "${PORT[on-0]}" "[tracing]
otlp_endpoint = \"http://127.0.0.1:$SINK\"
sample_ratio = 0.0" > "$work/on-0.toml"
BIN[base]=$BASE; BIN[off]=$GATE; BIN[on-1]=$GATE; BIN[on-0]=$GATE

run() { # variant -> "rps p99_ms cpu_us"
  local v=$1 port=${PORT[$1]}
  taskset -c 0 "${BIN[$v]}" --config "$work/$v.toml" 2>/dev/null & local gpid=$!
  for _ in $(seq 100); do curl -sf -o /dev/null "http://127.0.0.1:$port/x" -H "Authorization: Bearer $TOKEN" && break; sleep 0.05; done
  local before after
  before=$(awk '{print $14+$15}' /proc/$gpid/stat)
  local out; out=$(taskset -c 1 wrk -t1 -c64 -d"${SECS}s" --latency -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$port/x")
  after=$(awk '{print $14+$15}' /proc/$gpid/stat)
  kill "$gpid"; wait "$gpid" 2>/dev/null || true
  local reqs rps p99
  reqs=$(awk '/requests in/ {print $1}' <<<"$out")
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  p99=$(awk '$1=="99%" {v=$2; if (v ~ /us$/) {sub(/us/,"",v); v=v/1000} else if (v ~ /ms$/) {sub(/ms/,"",v)} else if (v ~ /s$/) {sub(/s/,"",v); v=v*1000}; print v}' <<<"$out")
  echo "$rps $p99 $(python3 -c "print(round(($after-$before)/100/$reqs*1e6, 1))")"
}
declare -A R
for r in $(seq "$ROUNDS"); do
  for v in base off on-1 on-0; do R[$v]+="$(run "$v");"; done
  echo "round $r done" >&2
done
printf '%-6s %10s %8s %12s\n' variant req/s p99_ms cpu_us/req
for v in base off on-1 on-0; do
  python3 - "$v" "${R[$v]}" <<'PY'
import statistics, sys
rows = [list(map(float, x.split())) for x in sys.argv[2].split(";") if x.strip()]
med = lambda i: statistics.median(r[i] for r in rows)
print(f"{sys.argv[1]:<6} {med(0):>10.0f} {med(1):>8.2f} {med(2):>12.1f}")
PY
done
