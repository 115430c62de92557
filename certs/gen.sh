#!/usr/bin/env bash
# Regenerates the development certificates and keys in this folder. For development only:
# never use these files in production. Requires openssl and python3.
#   bash certs/gen.sh        # everything: CA, server and client certificates, dev IdP key, JWKS
#   bash certs/gen.sh jwks   # only dev-jwks.json, from the existing dev-idp.key
set -euo pipefail
cd "$(dirname "$0")"
days=3650
mode=${1:-all}
case "$mode" in all|jwks) ;; *) echo "usage: $0 [jwks]" >&2; exit 64 ;; esac

if [ "$mode" = all ]; then
  # Development CA, server certificate (localhost, 127.0.0.1) and a client certificate for mTLS.
  openssl req -x509 -newkey rsa:2048 -nodes -sha256 -days "$days" -subj "/CN=cognito-gate dev CA" \
    -keyout dev-ca.key -out dev-ca.crt 2>/dev/null
  cp dev-ca.crt client-ca.crt
  openssl req -newkey rsa:2048 -nodes -sha256 -subj "/CN=localhost" -keyout server.key -out server.csr 2>/dev/null
  printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' > server.ext
  openssl x509 -req -in server.csr -CA dev-ca.crt -CAkey dev-ca.key -CAcreateserial -days "$days" -sha256 \
    -extfile server.ext -out server.crt 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -sha256 -subj "/CN=dev-client" -keyout client.key -out client.csr 2>/dev/null
  printf 'extendedKeyUsage=clientAuth\n' > client.ext
  openssl x509 -req -in client.csr -CA dev-ca.crt -CAkey dev-ca.key -CAcreateserial -days "$days" -sha256 \
    -extfile client.ext -out client.crt 2>/dev/null
  rm -f server.csr client.csr server.ext client.ext dev-ca.srl

  # RS256 signing key of the development IdP (config.toml: dev_idp.signing_keys).
  openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out dev-idp.key 2>/dev/null
fi

# The JWKS that publishes it (config.toml: cognito.jwks.file, the seed keys).
python3 - dev-idp.key dev-jwks.json <<'PY'
import base64, json, subprocess, sys
key, out = sys.argv[1], sys.argv[2]
text = subprocess.run(["openssl", "rsa", "-in", key, "-noout", "-modulus"], check=True,
                      capture_output=True, text=True).stdout
n = bytes.fromhex(text.strip().split("=", 1)[1])
b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
# The dev IdP (dev_idp.signing_keys) signs ID tokens as "dev-idp-1" and access tokens as
# "dev-idp-2" with this one key; both kids are published.
jwks = {"keys": [{"kty": "RSA", "alg": "RS256", "use": "sig", "kid": kid, "n": b64(n),
                  "e": b64((65537).to_bytes(3, "big"))} for kid in ("dev-idp-1", "dev-idp-2")]}
with open(out, "w") as f:
    json.dump(jwks, f, indent=2)
    f.write("\n")
PY
echo "regenerated development files ($mode) in $(pwd)"
