#!/usr/bin/env bash
# The test command: installs what the tests need when it is missing, then runs every
# test of the workspace. Services the tests start (redis-server, Redis Cluster,
# PostgreSQL) are required: a missing one fails the run, it is never skipped.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/deps.sh

export STRATA_REQUIRE_SERVICES=1
export RUST_BACKTRACE=1

if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast
else
  cargo test --workspace --no-fail-fast
fi
# nextest does not run doc tests; the examples in docs are tests too.
cargo test --workspace --doc
