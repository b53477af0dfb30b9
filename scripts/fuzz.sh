#!/usr/bin/env bash
# Fuzzes the parsers of untrusted bytes: entries read from Redis (envelope_decode) and
# messages on the invalidation channel (invalidation_message). Needs a nightly
# toolchain (cargo fuzz builds with sanitizers) and cargo-fuzz:
#   rustup toolchain install nightly && cargo install cargo-fuzz
# Usage: scripts/fuzz.sh [seconds per target, default 60]
set -euo pipefail
cd "$(dirname "$0")/../crates/strata-cache/fuzz"
secs="${1:-60}"
for target in envelope_decode invalidation_message; do
  echo "== $target ($secs s)"
  cargo +nightly fuzz run "$target" -- -max_total_time="$secs"
done
