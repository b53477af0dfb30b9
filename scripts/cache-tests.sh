#!/usr/bin/env bash
# Runs the HTTP caching conformance suite (cache-tests.fyi, npm package
# http-cache-tests) against `strata serve`'s proxy, as a newcomer would: the
# suite's origin server behind strata, the suite's client in front.
#
#   scripts/cache-tests.sh            # exit 1 if a required test fails unexpectedly
#
# Needs node and npm (installed with apt when missing) and the npm registry. Not
# part of scripts/test.sh: it depends on the network for the suite itself.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
command -v node >/dev/null && command -v npm >/dev/null || {
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm
}
work=$(mktemp -d)
# The suite's server writes its pid file without a newline: kill pid by pid.
trap 'for f in "$work"/*.pid; do kill "$(cat "$f")" 2>/dev/null || true; done; rm -rf "$work"' EXIT
(cd "$work" && npm install --silent --no-audit --no-fund http-cache-tests@0.4.5 >/dev/null)
suite="$work/node_modules/http-cache-tests"
cp "$root/scripts/cache-tests/summary.mjs" "$suite/"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
OPORT=$(free_port); PPORT=$(free_port); APORT=$(free_port)

(cd "$suite" && npm_config_port=$OPORT npm_config_protocol=http npm_config_pidfile="$work/origin.pid" \
  node server/server.mjs > "$work/origin.log" 2>&1 &)
cargo build --release -q -p strata
printf '[http]\nlisten = "127.0.0.1:%s"\nupstream = "http://127.0.0.1:%s"\n' "$PPORT" "$OPORT" > "$work/strata.toml"
RUST_LOG=warn "$root/target/release/strata" serve --config "$work/strata.toml" --listen "127.0.0.1:$APORT" \
  > "$work/strata.log" 2>&1 & echo $! > "$work/strata.pid"
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$PPORT/" >/dev/null && break; sleep 0.1; done

(cd "$suite" && npm_config_base="http://127.0.0.1:$PPORT" npm_package_config_id= \
  node --no-warnings cli.mjs > "$work/results.json")
(cd "$suite" && node summary.mjs "$work/results.json" "$root/scripts/cache-tests/known-failures.txt")
