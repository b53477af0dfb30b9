#!/usr/bin/env bash
# The test command: installs what the tests need when it is missing, then runs every
# test of the workspace. Services the tests start (redis-server, Redis Cluster) are
# required: a missing one fails the run, it is never skipped.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v redis-server >/dev/null 2>&1 || need_apt+=(redis-server)
command -v redis-cli >/dev/null 2>&1 || need_apt+=(redis-tools)
# promtool: `strata serve`'s /metrics is checked with `promtool check metrics`.
command -v promtool >/dev/null 2>&1 || need_apt+=(prometheus)
# chromium: the load-test HTML report is checked in a headless browser.
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "installing: ${need_apt[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}"
  # Debian starts a redis-server on 6379 at install; the tests start their own.
fi

export STRATA_REQUIRE_SERVICES=1
export RUST_BACKTRACE=1

if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast
else
  cargo test --workspace --no-fail-fast
fi
# nextest does not run doc tests; the examples in docs are tests too.
cargo test --workspace --doc
