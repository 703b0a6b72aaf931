#!/usr/bin/env bash
# Fuzzes the pure core: every target in fuzz/ (or the ones named), one after
# another, each for FUZZ_SECONDS (default 60) or, if set, FUZZ_RUNS inputs.
# Prints each target's executions and whether it crashed; exits non-zero if
# any did. Crashing inputs land in fuzz/artifacts/<target>/.
#   scripts/fuzz.sh [target…]
#   FUZZ_RUNS=100000 scripts/fuzz.sh events
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

CARGO_FUZZ_VERSION=0.13.2
# cargo-fuzz passes nightly-only rustc flags; this lets stable accept them.
export RUSTC_BOOTSTRAP=1
# The core's one unsafe call (`json::slice`, unchecked string slicing) asserts
# its bounds under debug assertions, which stay on (with overflow checks):
# AddressSanitizer would add little but a ~3x slowdown.
BUILD=(--sanitizer none --debug-assertions)

if [ "$(cargo fuzz --version 2>/dev/null)" != "cargo-fuzz $CARGO_FUZZ_VERSION" ]; then
  echo "==> installing cargo-fuzz $CARGO_FUZZ_VERSION (a minute, once)"
  cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked
fi

if [ -n "${FUZZ_RUNS:-}" ]; then
  limit="-runs=$FUZZ_RUNS"
else
  limit="-max_total_time=${FUZZ_SECONDS:-60}"
fi
if [ $# -gt 0 ]; then
  targets=("$@")
else
  mapfile -t targets < <(cargo fuzz list)
fi

cargo fuzz build "${BUILD[@]}"
mkdir -p target/logs
failed=0
for t in "${targets[@]}"; do
  # New inputs go to a scratch corpus, so fuzz/corpus keeps only the seeds;
  # fuzz/regressions holds inputs that once found a bug.
  work="target/corpus/$t"
  mkdir -p "$work"
  dirs=("$work" "corpus/$t")
  [ -d "regressions/$t" ] && dirs+=("regressions/$t")
  log="target/logs/$t.log"
  start=$SECONDS
  if cargo fuzz run "${BUILD[@]}" "$t" "${dirs[@]}" -- "$limit" -timeout=10 -print_final_stats=1 >"$log" 2>&1; then
    result="no crash"
  else
    result="CRASH (see fuzz/$log)"
    failed=1
  fi
  execs=$(awk '/stat::number_of_executed_units:/ { print $2 }' "$log")
  printf '%-14s %12s executions in %4ss  %s\n' "$t" "${execs:-0}" "$((SECONDS - start))" "$result"
  if [ "$result" != "no crash" ]; then
    grep -E -A1 "panicked at|^error" "$log" | head -4 | sed 's/^/    /'
    grep -o "Test unit written to .*" "$log" | sed 's/^/    /' || true
  fi
done
exit "$failed"
