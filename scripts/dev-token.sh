#!/usr/bin/env bash
# Prints a Cognito-shaped ID token signed with the embedded dev IdP's key, as the dev IdP itself
# would issue it (POST /auth/login on the gateway gives the same kind of token). Everything that
# must match is read from the configuration, so the token is valid for the gateway that runs it:
#   iss  the first pool's issuer ([cognito] issuer, or region + user_pool_id and issuer_format;
#        without [cognito], http://{dev_idp.listen}/{exchange.user_pool_id}), as the dev IdP forms it
#   aud  [exchange] client_id, the dev IdP's app client
#   key  [dev_idp] signing_keys (relative to the config's folder), signed as kid "dev-idp-1", the
#        dev IdP's ID-token kid for a configured key
#   exp  now + [dev_idp] token_lifetime (default 1h)
# ${NAME} and ${NAME:-default} in those values are expanded as the gateway expands them.
# For local demos only.
#
# Usage: scripts/dev-token.sh [--config PATH] [USERNAME] [GROUP,...]
#   --config PATH  the gateway's configuration (default ./config.toml, else the repository's)
#   USERNAME       default test-user
#   GROUP,...      cognito:groups, comma-separated (default admins; "" for none)
# Needs python3 (3.11 or later, for tomllib) and openssl.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
exec python3 - "$repo" "$@" <<'PY'
import argparse, base64, hashlib, json, os, re, subprocess, sys, time, tomllib, uuid

repo = sys.argv[1]
parser = argparse.ArgumentParser(
    prog="scripts/dev-token.sh",
    description="Print an ID token signed with the dev IdP's key, for the configured issuer and app client.")
parser.add_argument("--config", metavar="PATH",
                    help="the gateway's configuration (default ./config.toml, else the repository's)")
parser.add_argument("username", nargs="?", default="test-user")
parser.add_argument("groups", nargs="?", default="admins", help="comma-separated cognito:groups")
args = parser.parse_args(sys.argv[2:])


def fail(message):
    print(f"dev-token.sh: {message}", file=sys.stderr)
    sys.exit(1)


if args.config:
    config_path = args.config
elif os.path.exists("config.toml"):
    config_path = "config.toml"
else:
    config_path = os.path.join(repo, "config.toml")
config_path = os.path.abspath(config_path)
try:
    with open(config_path, "rb") as f:
        config = tomllib.load(f)
except OSError as e:
    fail(f"cannot read {config_path}: {e.strerror}")
except tomllib.TOMLDecodeError as e:
    fail(f"{config_path}: not TOML: {e}")
base_dir = os.path.dirname(config_path)


def expand(value, key):
    """${NAME} and ${NAME:-default} as the gateway expands them; $${ is a literal ${."""
    if not isinstance(value, str):
        return value
    out, rest = [], value
    while "$" in rest:
        pos = rest.index("$")
        out.append(rest[:pos])
        after = rest[pos:]
        if after.startswith("$${"):
            out.append("${")
            rest = after[3:]
        elif after.startswith("${"):
            end = after.find("}")
            if end < 0:
                fail(f"{key}: unterminated ${{ in value")
            name, sep, default = after[2:end].partition(":-")
            if not re.fullmatch(r"[A-Za-z0-9_]+", name):
                fail(f'{key}: invalid environment variable name "{name}"')
            env = os.environ.get(name)
            if env is not None and (env != "" or not sep):
                out.append(env)
            elif sep:
                out.append(default)
            else:
                fail(f"{key}: environment variable {name} is not set")
            rest = after[end + 1:]
        else:
            out.append("$")
            rest = after[1:]
    out.append(rest)
    return "".join(out)


def get(table, key, path):
    value = table.get(key)
    return expand(value, f"{path}.{key}") if value is not None else None


def duration_secs(text, key):
    """A humantime duration such as "1h", "30m", "1h 30m", "90s"."""
    units = {"ms": 0.001, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "hr": 3600, "d": 86400}
    parts = re.findall(r"(\d+)\s*([a-z]+)", text)
    if not parts or re.sub(r"[\d\sa-z]", "", text) or any(u not in units for _, u in parts):
        fail(f'{key}: not a duration: "{text}"')
    return int(sum(int(n) * units[u] for n, u in parts))


dev_idp = config.get("dev_idp")
exchange = config.get("exchange") or {}
cognito = config.get("cognito")
if not isinstance(dev_idp, dict):
    fail(f"{config_path} has no [dev_idp] section: tokens of a real user pool come from Cognito "
         "(or POST /auth/login on the gateway)")

# The issuer: the dev IdP signs as the first pool's (first accepted) issuer.
if isinstance(cognito, dict):
    pools = cognito.get("pools")
    pool, path = (pools[0], "cognito.pools[0]") if pools else (cognito, "cognito")
    issuer = get(pool, "issuer", path)
    if not issuer:
        region, pool_id = get(pool, "region", path), get(pool, "user_pool_id", path)
        if not (region and pool_id):
            fail(f"{path}: set issuer, or region and user_pool_id")
        fmt = get(pool, "issuer_format", path) or "any"
        host = "issuer-cognito-idp" if fmt == "updated" else "cognito-idp"
        issuer = f"https://{host}.{region}.amazonaws.com/{pool_id}"
    app_clients = pool.get("app_clients") or []
else:
    listen = get(dev_idp, "listen", "dev_idp")
    pool_id = get(exchange, "user_pool_id", "exchange")
    if not (listen and pool_id):
        fail("without [cognito], dev_idp.listen and exchange.user_pool_id name the issuer")
    issuer = f"http://{listen}/{pool_id}"
    app_clients = []

# The audience: the dev IdP's app client is [exchange] client_id.
audience = get(exchange, "client_id", "exchange") or (
    expand(app_clients[0], "cognito.app_clients[0]") if app_clients else None)
if not audience:
    fail("exchange.client_id is not set: it is the dev IdP's app client, the tokens' aud")

key_file = get(dev_idp, "signing_keys", "dev_idp")
if not key_file:
    fail("dev_idp.signing_keys is not set: the dev IdP then signs with fresh keys made at each "
         "start, which this script cannot know; get a token from POST /auth/login instead")
key_file = os.path.join(base_dir, key_file)
if not os.path.isfile(key_file):
    fail(f"dev_idp.signing_keys: file not found: {key_file}")
kid = "dev-idp-1"  # the dev IdP's ID-token kid with configured signing_keys (src/dev_idp/tokens.rs)
lifetime_text = get(dev_idp, "token_lifetime", "dev_idp")
lifetime = duration_secs(lifetime_text, "dev_idp.token_lifetime") if lifetime_text else 3600

user = args.username
groups = [g for g in args.groups.split(",") if g]
b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
now = int(time.time())
# The same stable sub the embedded dev IdP gives the user (src/dev_idp/tokens.rs, stable_sub).
h = bytearray(hashlib.sha256(b"cognito-gate dev-idp:" + user.encode()).digest()[:16])
h[6], h[8] = (h[6] & 0x0F) | 0x80, (h[8] & 0x3F) | 0x80
sub = str(uuid.UUID(bytes=bytes(h)))
header = {"kid": kid, "alg": "RS256"}
claims = {
    "sub": sub, "aud": audience, "email_verified": True,
    "token_use": "id", "auth_time": now, "iss": issuer,
    "cognito:username": user, "exp": now + lifetime, "iat": now, "jti": str(uuid.uuid4()),
    "origin_jti": str(uuid.uuid4()), "email": f"{user}@example.com",
}
if groups:
    claims["cognito:groups"] = groups
signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
signed = subprocess.run(["openssl", "dgst", "-sha256", "-sign", key_file],
                        input=signing_input.encode(), capture_output=True)
if signed.returncode != 0:
    fail(f"openssl could not sign with {key_file}: {signed.stderr.decode().strip()}")
print(f"{signing_input}.{b64(signed.stdout)}")
PY
