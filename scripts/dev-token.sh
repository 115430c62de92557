#!/usr/bin/env bash
# Prints a Cognito-shaped ID token signed with the development key (certs/dev-idp.key), valid for
# the shipped config.toml (kid dev-idp-1, the dev IdP's ID-token key). For local demos only; the
# dev IdP itself (POST /auth/login on the gateway) issues the same kind of token.
# Usage: scripts/dev-token.sh [USERNAME] [GROUP,...]
set -euo pipefail
cd "$(dirname "$0")/.."
user=${1:-test-user}
groups=${2:-admins}
python3 - "$user" "$groups" <<'PY'
import base64, hashlib, json, subprocess, sys, time, uuid
user, groups = sys.argv[1], [g for g in sys.argv[2].split(",") if g]
b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
now = int(time.time())
# The same stable sub the embedded dev IdP gives the user (src/dev_idp/tokens.rs, stable_sub).
h = bytearray(hashlib.sha256(b"cognito-gate dev-idp:" + user.encode()).digest()[:16])
h[6], h[8] = (h[6] & 0x0F) | 0x80, (h[8] & 0x3F) | 0x80
sub = str(uuid.UUID(bytes=bytes(h)))
header = {"kid": "dev-idp-1", "alg": "RS256"}
claims = {
    "sub": sub, "aud": "dev-client", "email_verified": True,
    "token_use": "id", "auth_time": now, "iss": "http://127.0.0.1:4577/dev-pool",
    "cognito:username": user, "exp": now + 3600, "iat": now, "jti": str(uuid.uuid4()),
    "origin_jti": str(uuid.uuid4()), "email": f"{user}@example.com",
}
if groups:
    claims["cognito:groups"] = groups
signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
sig = subprocess.run(["openssl", "dgst", "-sha256", "-sign", "certs/dev-idp.key"],
                     input=signing_input.encode(), capture_output=True, check=True).stdout
print(f"{signing_input}.{b64(sig)}")
PY
