# Sourced by bench/observe.sh, throttle.sh, memory.sh and flood.sh: the set-up their runs share. The
# gateway under test runs on core 0; wrk, the nginx upstream and any helper on core 1.
#   bench_setup       builds the release binary (GATE), a work folder removed on exit, cleanup
#   start_upstream    nginx answering 200 "ok" on UP (core 1)
#   bench_token       TOKEN: an ID token signed with the k1 fixture (sub "bench"), and
#                     $work/jwks.json with its key
#   wrk_run PORT BIN CONFIG
#                     starts BIN on core 0, waits for it, runs wrk for SECS seconds with TOKEN,
#                     prints "req/s p99_ms cpu_us_per_request requests"
#   medians NAME ROWS one line of medians of what wrk_run printed (rows separated by ";")
#   jwt_api           the [cognito] section and one jwt route to the upstream
#   rotate_lua        a wrk script sending a file's tokens in turn
cd "$(dirname "$0")/.."
root=$(pwd)
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
ISSUER="https://cognito-idp.ap-northeast-1.amazonaws.com/ap-northeast-1_TestPool"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

bench_setup() {
  cargo build --release --quiet
  GATE="${CARGO_TARGET_DIR:-$root/target}/release/cognito-gate"
  work=$(mktemp -d)
  pids=()
  trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"' EXIT
}

start_upstream() {
  UP=$(free_port)
  cat > "$work/up.conf" <<EOF2
worker_processes 1; daemon off; pid $work/up.pid; error_log /dev/null crit;
events { worker_connections 4000; }
http { access_log off; keepalive_requests 1000000;
  server { listen 127.0.0.1:$UP; location / { return 200 "ok\n"; } } }
EOF2
  taskset -c 1 "$NGINX" -c "$work/up.conf" -e /dev/null & pids+=($!)
}

bench_token() {
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
  python3 -c 'import json; print(json.dumps({"keys":[json.load(open("tests/fixtures/rsa-k1.jwk.json"))]}))' > "$work/jwks.json"
}

wrk_run() { # port, binary, config
  local port=$1
  taskset -c 0 "$2" --config "$3" 2>/dev/null & local gpid=$!
  for _ in $(seq 100); do curl -sf -o /dev/null "http://127.0.0.1:$port/x" -H "Authorization: Bearer $TOKEN" && break; sleep 0.05; done
  local before after out reqs
  before=$(awk '{print $14+$15}' /proc/$gpid/stat)
  out=$(taskset -c 1 wrk -t1 -c64 -d"${SECS}s" --latency -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$port/x")
  after=$(awk '{print $14+$15}' /proc/$gpid/stat)
  kill "$gpid"; wait "$gpid" 2>/dev/null || true
  reqs=$(awk '/requests in/ {print $1}' <<<"$out")
  echo "$(wrk_summary "$out") $(python3 -c "print(round(($after-$before)/100/$reqs*1e6, 1))") $reqs"
}

wrk_summary() { # wrk's output (with --latency) -> "req/s p99_ms"
  local rps p99
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$1")
  p99=$(awk '$1=="99%" {v=$2; if (v ~ /us$/) {sub(/us/,"",v); v=v/1000} else if (v ~ /ms$/) {sub(/ms/,"",v)} else if (v ~ /s$/) {sub(/s/,"",v); v=v*1000}; print v}' <<<"$1")
  echo "$rps $p99"
}

medians() { # name, rows
  python3 - "$1" "$2" <<'PY'
import statistics, sys
rows = [list(map(float, x.split())) for x in sys.argv[2].split(";") if x.strip()]
med = lambda i: statistics.median(r[i] for r in rows)
print(f"{sys.argv[1]:<7} {med(0):>10.0f} {med(1):>8.2f} {med(2):>12.1f}")
PY
}

# jwt_api [COGNITO_LINES] [ROUTE_LINES]: the [cognito] section with the k1 key of bench_token and
# one jwt route, "api", for every path to the upstream; extra lines go into each.
jwt_api() {
  cat <<EOF2
[cognito]
issuer = "$ISSUER"
app_clients = []
${1:-}
[cognito.jwks]
file = "$work/jwks.json"
[[routes]]
name = "api"
path_prefix = "/"
upstream = "http://127.0.0.1:$UP"
auth = ["jwt"]
${2:-}
EOF2
}

# rotate_lua FILE [CLIENT]: a wrk script sending the tokens of FILE in turn as Bearer tokens
# (from X-Forwarded-For CLIENT when given); requests are formatted once, in init.
rotate_lua() {
  local xff=""
  [ -n "${2:-}" ] && xff=", [\"X-Forwarded-For\"] = \"$2\""
  cat <<EOF2
local reqs = {}
local i = 0
init = function(args)
  for line in io.lines("$1") do
    reqs[#reqs + 1] = wrk.format("GET", nil, { ["Authorization"] = "Bearer " .. line$xff })
  end
end
request = function()
  i = i % #reqs + 1
  return reqs[i]
end
EOF2
}
