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
. "$(dirname "$0")/common.sh"
BASE=${1:?usage: bench/observe.sh BASE_BINARY [ROUNDS] [SECONDS]}
ROUNDS=${2:-3}
SECS=${3:-5}
bench_setup
start_upstream
SINK=$(free_port)
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

bench_token

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
$(jwt_api)
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

run() { wrk_run "${PORT[$1]}" "${BIN[$1]}" "$work/$1.toml"; }
declare -A R
for r in $(seq "$ROUNDS"); do
  for v in base off on-1 on-0; do R[$v]+="$(run "$v");"; done
  echo "round $r done" >&2
done
printf '%-6s %10s %8s %12s\n' variant req/s p99_ms cpu_us/req
for v in base off on-1 on-0; do medians "$v" "${R[$v]}"; done
