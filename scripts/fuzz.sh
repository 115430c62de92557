#!/usr/bin/env bash
# Runs every fuzz target (fuzz/fuzz_targets, bodies in src/fuzz_harness) for SECONDS each
# (default 60) and prints, per target, executions per second, the coverage libFuzzer reached
# (cov: edges, ft: features), the corpus size and whether it crashed. Exits 1 when a target
# crashed, panicked, timed out or ran out of memory: the input is in fuzz/artifacts/<target>/;
# once fixed, add it to fuzz/regressions/<target>/ so that tests/fuzz_corpus.rs replays it.
#
# Needs the nightly toolchain (`cargo +nightly`); installs cargo-fuzz from crates.io when it is
# missing. Without nightly it prints why and exits 0 (FUZZ_REQUIRE_NIGHTLY=1: exits 1 instead).
# The repository's corpus is not modified: each run starts from a scratch copy of
# fuzz/corpus/<target> (and reads fuzz/regressions/<target>); set FUZZ_KEEP_CORPUS=DIR to keep
# the grown corpora in DIR. FUZZ_SANITIZER: none (default: the crate forbids unsafe code, and
# without ASan a target runs 6-8 times faster) or address (for a longer run now and then);
# FUZZ_BUILD: release (default: optimised with debug assertions, about 9 minutes to build cold
# on 2 cores) or dev (unoptimised, about 3 minutes cold, each target 5-20 times slower; what CI
# uses for its short run); FUZZ_TARGETS: a space-separated subset; FUZZ_RSS_LIMIT_MB: libFuzzer's
# memory limit (2048).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
sanitizer=${FUZZ_SANITIZER:-none}
rss_limit=${FUZZ_RSS_LIMIT_MB:-2048}
targets=${FUZZ_TARGETS:-token basic path routes config response jwks}
case ${FUZZ_BUILD:-release} in
  release) build=(-s "$sanitizer") ;;
  dev) build=(-s "$sanitizer" --dev) ;;
  *) echo "fuzz: FUZZ_BUILD must be release or dev, not ${FUZZ_BUILD}" >&2; exit 2 ;;
esac

if ! cargo +nightly --version >/dev/null 2>&1; then
  echo "fuzz: skipped, no nightly toolchain (rustup toolchain install nightly)" >&2
  [[ ${FUZZ_REQUIRE_NIGHTLY:-} == 1 ]] && exit 1
  exit 0
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz: installing cargo-fuzz" >&2
  cargo install cargo-fuzz --locked
fi

cargo +nightly fuzz build "${build[@]}"

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
failed=()
printf '%-9s %8s %10s %9s %7s %7s %7s  %s\n' target seconds runs exec/s cov ft corpus result
for t in $targets; do
  corpus="$scratch/corpus/$t"
  mkdir -p "$corpus"
  cp fuzz/corpus/"$t"/* "$corpus"/
  dirs=("$corpus")
  [[ -d fuzz/regressions/$t ]] && dirs+=("fuzz/regressions/$t")
  dict=()
  [[ -f fuzz/dict/$t.dict ]] && dict=("-dict=fuzz/dict/$t.dict")
  log="$scratch/$t.log"
  status=0
  cargo +nightly fuzz run "${build[@]}" "$t" "${dirs[@]}" -- \
    -max_total_time="$seconds" -rss_limit_mb="$rss_limit" -timeout=10 \
    -print_final_stats=1 "${dict[@]}" >"$log" 2>&1 || status=$?
  # The last status line libFuzzer printed: "#RUNS ... cov: N ft: N corp: N/SIZE ...".
  last=$(grep -E '^#[0-9]+' "$log" | tail -n 1 || true)
  field() { sed -nE "s/.* $1: ([0-9]+).*/\\1/p" <<<"$last"; }
  runs=$(sed -nE 's/^stat::number_of_executed_units: *([0-9]+)/\1/p' "$log" | tail -n 1)
  rate=$(sed -nE 's/^stat::average_exec_per_sec: *([0-9]+)/\1/p' "$log" | tail -n 1)
  corp=$(sed -nE 's/.* corp: ([0-9]+\/[0-9]+[a-zA-Z]*).*/\1/p' <<<"$last")
  if ((status == 0)); then
    result=ok
  else
    result="CRASH (exit $status): $(grep -m1 -oE 'Test unit written to .*' "$log" || echo "see log")"
    failed+=("$t")
  fi
  printf '%-9s %8s %10s %9s %7s %7s %7s  %s\n' "$t" "$seconds" "${runs:-?}" "${rate:-?}" \
    "$(field cov)" "$(field ft)" "${corp:-?}" "$result"
  if ((status != 0)); then
    grep -E -A12 'panicked at|ERROR: libFuzzer|ERROR: AddressSanitizer' "$log" | head -n 30 >&2 || true
  fi
  if [[ -n ${FUZZ_KEEP_CORPUS:-} ]]; then
    mkdir -p "$FUZZ_KEEP_CORPUS/$t"
    cp "$corpus"/* "$FUZZ_KEEP_CORPUS/$t"/
  fi
done
if ((${#failed[@]})); then
  echo "fuzz: crashed: ${failed[*]} (inputs in fuzz/artifacts/<target>/)" >&2
  exit 1
fi
