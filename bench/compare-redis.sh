#!/usr/bin/env bash
# strata's L2 read path vs redis-benchmark on the same redis-server, in one run.
# Prints ops/s of each and the ratio. Needs redis-server and redis-benchmark
# (Debian: redis-server redis-tools); installs them if missing.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v redis-benchmark >/dev/null || ! command -v redis-server >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server redis-tools
fi
exec cargo bench -p strata-cache --bench l2_get
