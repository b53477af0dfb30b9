#!/usr/bin/env bash
# What an idle `strata serve` costs the machine, beside an idle redis-server.
#
#   bench/idle.sh [SECONDS]      (default: 20)
#
# Starts `strata serve` on its embedded defaults (release build), a second one that
# also proxies PostgreSQL (no client ever connects, so no server is needed), and a
# redis-server (defaults, no persistence); lets them settle for 3 s (strata's clock
# ticker and query-insight thread slow down after 1 s with nothing to do), then
# prints for each the CPU ticks (user + system, 1/100 s) and the voluntary context
# switches of all its threads over SECONDS: how often it wakes up for nothing.
# Needs redis-server (Debian: redis-server); installs it if missing.
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-20}

. bench/lib.sh
need redis-server:redis-server curl:curl
bench_setup

SPORT=$(free_port); PPORT=$(free_port); PGPORT=$(free_port); RPORT=$(free_port)
RUST_LOG=warn target/release/strata serve --listen "127.0.0.1:$SPORT" > "$work/strata.log" 2>&1 &
echo $! > "$work/strata.pid"
RUST_LOG=warn target/release/strata serve --listen "127.0.0.1:$PPORT" \
  --pg-listen "127.0.0.1:$PGPORT" --pg-upstream "postgres://127.0.0.1:1" > "$work/strata-pg.log" 2>&1 &
echo $! > "$work/strata-pg.pid"
redis-server --port "$RPORT" --bind 127.0.0.1 --save '' --appendonly no --daemonize no \
  > "$work/redis.log" 2>&1 &
echo $! > "$work/redis.pid"
wait_url "http://127.0.0.1:$SPORT/health"
wait_url "http://127.0.0.1:$PPORT/health"
sleep 3

wakeups() { cat /proc/"$1"/task/*/status | awk '/^voluntary_ctxt_switches/ {s += $2} END {print s}'; }
declare -A t0 w0
for name in strata strata-pg redis; do
  pid=$(cat "$work/$name.pid"); t0[$name]=$(ticks "$pid"); w0[$name]=$(wakeups "$pid")
done
sleep "$SECS"
echo "idle for $SECS s:"
for name in strata strata-pg redis; do
  pid=$(cat "$work/$name.pid")
  dt=$(( $(ticks "$pid") - t0[$name] )); dw=$(( $(wakeups "$pid") - w0[$name] ))
  printf "%-10s %4d CPU ticks  %6d wake-ups (%d/s)\n" "$name" "$dt" "$dw" $(( dw / SECS ))
done
