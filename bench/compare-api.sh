#!/usr/bin/env bash
# strata's cache API vs nginx serving the same bytes as a static file, in one run.
#
#   bench/compare-api.sh [DURATION] [ROUNDS]      (defaults: 10s, 3)
#
# wrk -t1 -c50 GETs an 885-byte value: from `strata serve` (memory tier, release
# build, a runtime thread per core) and from nginx (`worker_processes auto`: a worker
# per core, sendfile, access log off). Rounds alternate so
# both see the same machine noise. Prints requests/s and latency percentiles of each,
# and the ratios. Needs wrk and nginx (Debian: wrk nginx); installs them if missing.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:-10s}
ROUNDS=${2:-3}

. bench/lib.sh
need wrk:wrk nginx:nginx curl:curl
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

bench_setup

SPORT=$(free_port); NPORT=$(free_port)

# The value: 885 bytes of JSON-like text.
json_885 > "$work/value.json"
test "$(wc -c < "$work/value.json")" -eq 885

# strata
# Both servers in sessions of their own, as services run (bench/lib.sh, as_service).
RUST_LOG=warn as_service target/release/strata serve --listen "127.0.0.1:$SPORT" > "$work/strata.log" 2>&1 &
echo $! > "$work/strata.pid"
wait_url "http://127.0.0.1:$SPORT/health"
curl -sf -X PUT -H 'content-type: application/json' --data-binary @"$work/value.json" \
  "http://127.0.0.1:$SPORT/v1/cache/bench/item" >/dev/null

# nginx
mkdir -p "$work/www" "$work/nginx"
cp "$work/value.json" "$work/www/item"
# nginx workers may run as another user (nobody when started as root).
chmod 755 "$work" "$work/www" && chmod 644 "$work/www/item"
cat > "$work/nginx.conf" <<CONF
worker_processes auto;
daemon off;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log warn;
events { worker_connections 1024; }
http {
$(nginx_http_common "$work")
  server {
    listen 127.0.0.1:$NPORT;
    location / { root $work/www; default_type application/json; }
  }
}
CONF
as_service "$NGINX" -c "$work/nginx.conf" -p "$work/nginx" > /dev/null 2>&1 &
echo $! > "$work/nginx.pid"
wait_url "http://127.0.0.1:$NPORT/item"
show_groups "$work/strata.pid" "$work/nginx.pid"
cmp <(curl -s "http://127.0.0.1:$SPORT/v1/cache/bench/item") <(curl -s "http://127.0.0.1:$NPORT/item")


# Warm-up, then alternate.
wrk -t1 -c50 -d2s "http://127.0.0.1:$SPORT/v1/cache/bench/item" > /dev/null
wrk -t1 -c50 -d2s "http://127.0.0.1:$NPORT/item" > /dev/null
printf "%-6s %-7s %12s %9s %9s\n" round server "requests/s" "p50 ms" "p99 ms"
: > "$work/results"
for r in $(seq "$ROUNDS"); do
  read -r srps sp50 sp99 < <(wrk_run "http://127.0.0.1:$SPORT/v1/cache/bench/item")
  read -r nrps np50 np99 < <(wrk_run "http://127.0.0.1:$NPORT/item")
  printf "%-6s %-7s %12s %9s %9s\n" "$r" strata "$srps" "$sp50" "$sp99" "$r" nginx "$nrps" "$np50" "$np99"
  echo "$srps $sp99 $nrps $np99" >> "$work/results"
done
python3 - "$work/results" <<'PY'
import statistics, sys
rows = [list(map(float, l.split())) for l in open(sys.argv[1])]
rps = [s / n for s, _, n, _ in rows]
p99 = [sp / np for _, sp, _, np in rows]
print(f"strata/nginx requests/s: median {statistics.median(rps):.2f}x (rounds: {', '.join(f'{x:.2f}' for x in rps)})")
print(f"strata/nginx p99:        median {statistics.median(p99):.2f}x (lower is better; rounds: {', '.join(f'{x:.2f}' for x in p99)})")
PY
