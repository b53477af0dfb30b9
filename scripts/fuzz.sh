#!/usr/bin/env bash
# Fuzzes the parsers of untrusted bytes: entries read from Redis (envelope_decode),
# messages on the invalidation channel (invalidation_message), HTTP responses read by
# the load generator (h1_response), scraped /metrics text (promtext), stored proxy
# responses (entry_decode), origin/client caching headers (response_headers), origin
# responses read by the proxy's HTTP/1.1 client (origin_response) and PostgreSQL wire
# bytes from either side (wire). Needs a nightly toolchain (cargo fuzz builds with sanitizers) and cargo-fuzz:
#   rustup toolchain install nightly && cargo install cargo-fuzz
# Usage: scripts/fuzz.sh [seconds per target, default 60]
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
secs="${1:-60}"
run() {
  local dir="$1"; shift
  for target in "$@"; do
    echo "== $target ($secs s)"
    (cd "$root/$dir" && cargo +nightly fuzz run "$target" -- -max_total_time="$secs")
  done
}
run crates/strata-cache/fuzz envelope_decode invalidation_message
run crates/strata-bench/fuzz h1_response promtext
run crates/strata-http/fuzz entry_decode response_headers origin_response
run crates/strata-pg/fuzz wire
