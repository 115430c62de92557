#!/usr/bin/env bash
# The flood guard (`[cognito] bad_signature_per_minute`) under load. One client address floods
# never-seen forgeries (random signatures under the right kid, issuer and exp, each token
# different); another sends one valid token. The gateway runs on core 0, wrk and the upstream on
# core 1; 127.0.0.1 is a trusted proxy, so X-Forwarded-For names the two clients. Medians of
# ROUNDS runs of SECS seconds each:
#   forged-unseen    the flood alone, guard off (an RSA check per request) and on (120)
#   forged-repeated  one forgery sent again and again, guard off: the repeated-garbage path
#   valid            the valid client alone; beside another client's valid token (the normal
#                    neighbour); beside the flood, guard off and on
# Reported: requests/s, p99 and CPU microseconds per request of the gateway.
#
# Usage: bench/flood.sh [ROUNDS] [SECONDS]     (defaults: 3 rounds of 3 s)
set -euo pipefail
source "$(dirname "$0")/common.sh"
ROUNDS=${1:-3}
SECS=${2:-3}
bench_setup
start_upstream
bench_token
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
FLOODER="192.0.2.66"
USER_ADDR="192.0.2.67"

# 10,000 never-seen forgeries: each with its own jti, and a random 256-byte signature below
# the modulus (a leading zero byte).
python3 - "$ISSUER" "$work/forged.txt" <<'PY'
import base64, json, os, sys, time
b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
iss, out = sys.argv[1], sys.argv[2]
now = int(time.time())
h = b64(json.dumps({"kid": "k1", "alg": "RS256"}).encode())
with open(out, "w") as f:
    for i in range(10000):
        c = {"sub": f"forged-{i}", "aud": "bench-client", "token_use": "id", "iss": iss,
             "exp": now + 7200, "iat": now, "jti": os.urandom(8).hex()}
        sig = bytes(1) + os.urandom(255)
        f.write(f"{h}.{b64(json.dumps(c).encode())}.{b64(sig)}\n")
PY
# The same forgery 10,000 times, and the valid token from the other clients: sent through the
# same kind of wrk script as the flood, so that the load generator's cost is alike.
for _ in $(seq 10000); do head -1 "$work/forged.txt"; done > "$work/repeated.txt"
for _ in $(seq 10000); do echo "$TOKEN"; done > "$work/valid.txt"
rotate_lua "$work/forged.txt" "$FLOODER" > "$work/flood.lua"
rotate_lua "$work/repeated.txt" "$FLOODER" > "$work/repeated.lua"
rotate_lua "$work/valid.txt" "$USER_ADDR" > "$work/valid.lua"
rotate_lua "$work/valid.txt" "192.0.2.68" > "$work/neighbour.lua"

GW=$(free_port)
config() { # budget
  cat <<EOF
[server]
listen = "127.0.0.1:$GW"
trusted_proxies = ["127.0.0.1/32"]
[log]
level = "error"
$(jwt_api "bad_signature_per_minute = $1")
EOF
}
config 0 > "$work/off.toml"
config 120 > "$work/on.toml"

ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
# run CONFIG MODE -> "req/s p99_ms cpu_us_per_request" of the measured client
# MODE: flood | repeated | valid | valid+valid | valid+flood
run() {
  taskset -c 0 "$GATE" --config "$1" 2>/dev/null & local gpid=$!
  for _ in $(seq 100); do curl -sf -o /dev/null "http://127.0.0.1:$GW/x" -H "Authorization: Bearer $TOKEN" && break; sleep 0.05; done
  local url="http://127.0.0.1:$GW/x" before after out reqs bg=""
  before=$(ticks "$gpid")
  local w=(taskset -c 1 wrk -t1 -d"${SECS}s" --latency)
  case $2 in
    flood) out=$("${w[@]}" -c64 -s "$work/flood.lua" "$url") ;;
    repeated) out=$("${w[@]}" -c64 -s "$work/repeated.lua" "$url") ;;
    valid) out=$("${w[@]}" -c32 -s "$work/valid.lua" "$url") ;;
    valid+*)
      # The other client for one second more, so that it runs for the whole measurement.
      local other=$work/flood.lua
      [ "$2" = valid+valid ] && other=$work/neighbour.lua
      taskset -c 1 wrk -t1 -c32 -d"$((SECS + 1))s" -s "$other" "$url" >/dev/null & bg=$!
      out=$("${w[@]}" -c32 -s "$work/valid.lua" "$url") ;;
  esac
  after=$(ticks "$gpid")
  [ -n "$bg" ] && wait "$bg"
  kill "$gpid"; wait "$gpid" 2>/dev/null || true
  reqs=$(awk '/requests in/ {print $1}' <<<"$out")
  echo "$(wrk_summary "$out") $(python3 -c "print(round(($after-$before)/100/$reqs*1e6, 1))")"
}

declare -A rows
names=("forged-unseen off" "forged-unseen on" "forged-repeated off" "valid on" "valid+valid on" "valid+flood off" "valid+flood on")
for r in $(seq "$ROUNDS"); do
  echo "round $r/$ROUNDS" >&2
  rows["forged-unseen off"]+="$(run "$work/off.toml" flood);"
  rows["forged-unseen on"]+="$(run "$work/on.toml" flood);"
  rows["forged-repeated off"]+="$(run "$work/off.toml" repeated);"
  rows["valid on"]+="$(run "$work/on.toml" valid);"
  rows["valid+valid on"]+="$(run "$work/on.toml" valid+valid);"
  rows["valid+flood off"]+="$(run "$work/off.toml" valid+flood);"
  rows["valid+flood on"]+="$(run "$work/on.toml" valid+flood);"
done
echo "scenario (guard)           req/s   p99 ms  cpu us/req   (valid+flood: the valid client's req/s and p99, and the gateway's CPU per valid request)"
for n in "${names[@]}"; do
  python3 - "$n" "${rows[$n]}" <<'PY'
import statistics, sys
rows = [list(map(float, x.split())) for x in sys.argv[2].split(";") if x.strip()]
med = lambda i: statistics.median(r[i] for r in rows)
print(f"{sys.argv[1]:<22} {med(0):>9.0f} {med(1):>8.2f} {med(2):>11.1f}")
PY
done
