#!/usr/bin/env bash
# User-space instructions per pass-through request, counted by valgrind's callgrind,
# for nginx `proxy_pass` and for strata (and, given BASE, an older strata binary),
# on the setup of bench/ab-pass.sh: an 885-byte JSON from an nginx origin on a
# route strata does not cache.
#
#   bench/ir-pass.sh [REQUESTS] [BASE]          (default 2000 requests)
#   PROFILE=1 bench/ir-pass.sh                  # also strata's top functions
#   STRATA=target/profiling/strata bench/ir-pass.sh   # a binary built elsewhere
#   FLOORS=1 bench/ir-pass.sh                   # also the relays of bench/floors
#
# `cargo build --profile profiling` makes the release build with line tables, for
# `callgrind_annotate` by source line (the dump is kept with KEEP=DIR).
# bench/cg.py reads kept dumps per request: self and inclusive costs, callers,
# callees, and the difference between two dumps (the breakdowns in
# docs/benchmarks.md come from it).
#
# Why: on the shared 2-core machine, latency and CPU time drift by more between
# rounds than a change of a few µs is worth (bench/ab-pass.sh has to compare within
# rounds to see one at all). Instructions executed do not drift: the same binary
# and the same requests count the same within a fraction of a percent, so a change
# to the request path can be judged in one run. They are user space only (the
# kernel's share, two-thirds of a pass-through request's CPU, is not counted) and
# instructions are not time; this measures the part of the cost the code controls.
#
# Each proxy runs alone under callgrind (nginx as one process, `master_process
# off`), gets 200 warm-up requests over one keep-alive connection, has its counters
# zeroed, then serves REQUESTS more, one at a time, after which the counters are
# dumped. Needs nginx and valgrind (Debian: nginx valgrind); installs them if missing.
set -euo pipefail
cd "$(dirname "$0")/.."
REQUESTS=${1:-2000}
BASE=${2:-}
. bench/lib.sh
need nginx:nginx valgrind:valgrind curl:curl
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
[ -z "$BASE" ] || test -x "$BASE" || { echo "$BASE: not an executable" >&2; exit 2; }

STRATA=${STRATA:-}
if [ -z "$STRATA" ]; then bench_setup; STRATA=target/release/strata; else
  work=$(mktemp -d)
  trap 'kill $(cat "$work"/*.pid 2>/dev/null) 2>/dev/null || true; rm -rf "$work"' EXIT
fi
OPORT=$(free_port)
http_origin_setup "$work" "$OPORT"
as_service "$NGINX" -c "$work/origin.conf" -p "$work/origin" >/dev/null 2>&1 & echo $! > "$work/o.pid"
wait_url "http://127.0.0.1:$OPORT/nocache/item"

# Sends N GETs over one keep-alive connection, one at a time, and checks each body.
get_n() {
  python3 - "$1" "$2" "$work/item" <<'PY'
import http.client, sys
port, n, item = int(sys.argv[1]), int(sys.argv[2]), open(sys.argv[3], "rb").read()
c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
for _ in range(n):
    c.request("GET", "/nocache/item")
    r = c.getresponse()
    body = r.read()
    if r.status != 200 or body != item:
        sys.exit(f"bad response: {r.status}, {len(body)} bytes")
PY
}

# A callgrind command is read when the process next runs: strata's workers tick at
# least once a second, nginx waits for a request, so one request wakes both (it is
# counted on one side of the command or the other: 1 in REQUESTS).
control() {
  local pid=$1 port=$2 flag=$3
  callgrind_control "$flag" "$pid" >/dev/null 2>&1 & local ctl=$!
  sleep 0.5
  while kill -0 "$ctl" 2>/dev/null; do get_n "$port" 1; sleep 0.5; done
}

# measure NAME PORT CMD...: prints instructions per request.
measure() {
  local name=$1 port=$2; shift 2
  # Names uncompressed: a dump taken on command may refer to names compressed in
  # an earlier one, and callgrind_annotate then charges everything to `clone`.
  valgrind --tool=callgrind --compress-strings=no --compress-pos=no \
    --callgrind-out-file="$work/$name.%p.out" "$@" \
    > "$work/$name.log" 2>&1 &
  local pid=$!
  echo "$pid" > "$work/$name.pid"
  for _ in $(seq 600); do curl -sf "http://127.0.0.1:$port/nocache/item" >/dev/null && break; sleep 0.1; done
  get_n "$port" 200
  control "$pid" "$port" -z
  get_n "$port" "$REQUESTS"
  control "$pid" "$port" -d
  kill "$pid"; wait "$pid" 2>/dev/null || true
  rm -f "$work/$name.pid"
  # The dump taken on command is the file with a numbered suffix.
  local dump
  dump=$(ls "$work/$name".*.out.* | head -1)
  [ "$name" = strata ] && cp "$dump" "$work/profile.out"
  [ -z "${KEEP:-}" ] || { mkdir -p "$KEEP" && cp "$dump" "$KEEP/$name.out"; }
  awk -v n="$REQUESTS" '/^(summary|totals):/ {print int($2 / n); exit}' "$dump"
}

PPORT=$(free_port)
pass_nginx_conf "$work" "$PPORT" "$OPORT" "master_process off;" > "$work/proxy.conf"

echo "user-space instructions per pass-through request (callgrind, $REQUESTS requests, one at a time)"
n=$(measure nginx "$PPORT" "$NGINX" -c "$work/proxy.conf" -p "$work/nginx")
echo "nginx proxy_pass   $n"
PPORT=$(free_port); pass_strata_conf "$PPORT" "$OPORT" > "$work/s.toml"
s=$(RUST_LOG=warn measure strata "$PPORT" "$STRATA" serve --config "$work/s.toml" \
  --listen "127.0.0.1:$(free_port)")
echo "strata             $s  ($(python3 -c "print(f'{$s / $n:.2f}')")x nginx)"
if [ -n "$BASE" ]; then
  cp "$work/profile.out" "$work/profile-new.out"
  PPORT=$(free_port); pass_strata_conf "$PPORT" "$OPORT" > "$work/b.toml"
  b=$(RUST_LOG=warn measure strata "$PPORT" "$BASE" serve --config "$work/b.toml" \
    --listen "127.0.0.1:$(free_port)")
  echo "BASE               $b  ($(python3 -c "print(f'{$b / $n:.2f}')")x nginx; this tree $(python3 -c "print(f'{($s - $b) / $b * 100:+.1f}')")%)"
  cp "$work/profile-new.out" "$work/profile.out"
fi
if [ "${FLOORS:-0}" = 1 ]; then
  floors=$(build_floors)
  for relay in tokio_relay hyper_relay; do
    PPORT=$(free_port)
    r=$(measure "$relay" "$PPORT" "$floors/$relay" "127.0.0.1:$PPORT" "127.0.0.1:$OPORT")
    printf '%-18s %s  (%sx nginx)\n' "$relay" "$r" "$(python3 -c "print(f'{$r / $n:.2f}')")"
  done
fi
if [ "${PROFILE:-0}" = 1 ]; then
  callgrind_annotate --threshold=90 "$work/profile.out" | sed -n '/^Ir/,$p' | head -45
fi
