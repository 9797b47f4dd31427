#!/usr/bin/env bash
# The nightly fuzz run (not CI: it needs the nightly toolchain and minutes per target). Each libFuzzer
# target starts from its committed seeds (fuzz/seeds/TARGET: made with `gatehouse allowlist sign` and
# `gatehouse dsar sign`) and runs FUZZ_SECONDS (default 600). What it learns goes to fuzz/corpus/TARGET
# (not committed; keep it between nightly runs). A crash leaves its input under fuzz/artifacts/TARGET/:
# fix the bug and keep the input as a regression test (tests/properties.rs says how).
#   FUZZ_SECONDS=60 scripts/fuzz-nightly.sh            # all targets, a minute each
#   scripts/fuzz-nightly.sh envelope                   # one target
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
command -v cargo-fuzz >/dev/null 2>&1 || cargo install --locked cargo-fuzz --version 0.13.2
rustup toolchain list | grep -q '^nightly' || { echo "needs the nightly toolchain: rustup toolchain install nightly" >&2; exit 2; }
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(envelope chunks command)
for t in "${targets[@]}"; do
  echo "== fuzz $t for ${FUZZ_SECONDS:-600} s"
  mkdir -p "fuzz/corpus/$t"
  cargo +nightly fuzz run "$t" "fuzz/corpus/$t" "fuzz/seeds/$t" -- -max_total_time="${FUZZ_SECONDS:-600}" -rss_limit_mb=2048
done
