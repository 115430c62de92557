#!/usr/bin/env bash
# Release checks, run by .ci/run before the test suite:
# - cargo deny: licences, banned crates and duplicate versions, sources (deny.toml says what is
#   allowed and why); advisories too where the RustSec database can be fetched (it is cloned
#   from GitHub, which a closed network does not reach: then the check says so and goes on).
# - the production build: without the default `dev-idp` feature there is no `rsa` in the
#   dependency graph, the binary refuses to start without a configuration, and a `[dev_idp]`
#   section is a configuration error.
# cargo-deny is installed from crates.io when missing (a faster, unoptimised-LTO build of it).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
if ! cargo deny --version >/dev/null 2>&1; then
  echo "installing cargo-deny from crates.io" >&2
  CARGO_PROFILE_RELEASE_LTO=off CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 \
    CARGO_PROFILE_RELEASE_OPT_LEVEL=1 CARGO_TARGET_DIR="$root/target/cargo-deny-build" \
    cargo install --locked --quiet cargo-deny@0.20.2
fi
# Every crate of the lock file, for every platform (cargo deny reads them all; a build fetches
# only this one's): from crates.io, the one network CI has.
cargo fetch --locked --quiet
cargo deny --offline check licenses bans sources
if timeout 20 git ls-remote --quiet https://github.com/RustSec/advisory-db HEAD >/dev/null 2>&1; then
  cargo deny check advisories
else
  echo "cargo deny advisories: skipped, the RustSec advisory database (github.com) is unreachable from here" >&2
fi

echo "production build (--no-default-features)" >&2
if cargo tree --locked --no-default-features -e normal -i rsa >/dev/null 2>&1; then
  echo "rsa is in the production dependency graph:" >&2
  cargo tree --locked --no-default-features -e normal -i rsa >&2
  exit 1
fi
cargo clippy --locked --no-default-features --bin cognito-gate -- -D warnings
cargo build --locked --no-default-features --bin cognito-gate
bin="$root/target/debug/cognito-gate"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
expect_refusal() { # what, expected text, command...
  local what=$1 want=$2
  shift 2
  local out code=0
  out=$(cd "$work" && "$@" 2>&1) || code=$?
  if [ "$code" -ne 1 ] || ! grep -qF "$want" <<<"$out"; then
    echo "production build, $what: expected exit 1 and \"$want\", got exit $code:" >&2
    echo "$out" >&2
    exit 1
  fi
}
expect_refusal "serve without a configuration" "no configuration" timeout 10 "$bin"
expect_refusal "check-config without a configuration" "no configuration" "$bin" check-config
printf '[dev_idp]\nlisten = "127.0.0.1:0"\n' >"$work/dev.toml"
expect_refusal "a [dev_idp] section" "this build has no development IdP" "$bin" check-config --config "$work/dev.toml"
echo "release checks passed" >&2
