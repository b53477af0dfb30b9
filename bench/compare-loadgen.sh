#!/usr/bin/env bash
# The load generator itself: the most requests/s `strata load-test` and `wrk` can
# generate against one trivial HTTP server (nginx returning a 2-byte body), at the
# same number of connections, in one run.
#
#   bench/compare-loadgen.sh [DURATION] [ROUNDS] [CONNECTIONS]   (defaults: 10s, 3, 50)
#
# wrk runs with 2 threads (one per core, its best here); strata load-test runs its
# default runtime (a thread per core) in a closed loop of CONNECTIONS users, each with
# its own connection, as wrk's are. Rounds alternate. Prints requests/s of each and
# the ratio. Needs wrk and nginx (Debian: wrk nginx); installs them if missing.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:-10s}
ROUNDS=${2:-3}
CONNS=${3:-50}

. bench/lib.sh
need wrk:wrk nginx:nginx curl:curl
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

bench_setup
chmod 755 "$work"
PORT=$(free_port)
mkdir -p "$work/nginx"
cat > "$work/nginx.conf" <<CONF
worker_processes 1;
daemon off;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log warn;
events { worker_connections 4096; }
http {
$(nginx_http_common "$work")
  server {
    listen 127.0.0.1:$PORT;
    location / { return 200 "ok"; }
  }
}
CONF
"$NGINX" -c "$work/nginx.conf" -p "$work/nginx" > /dev/null 2>&1 &
echo $! > "$work/nginx.pid"
wait_url "http://127.0.0.1:$PORT/x"

wrk_rps() {
  wrk -t2 -c"$CONNS" -d"$DURATION" "http://127.0.0.1:$PORT/x" | awk '/Requests\/sec/ {print $2}'
}
strata_rps() {
  target/release/strata load-test "http://127.0.0.1:$PORT/x" -u "$CONNS" -d "$DURATION" -q \
    --json "$work/run.json" > /dev/null
  python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); assert r["error_rate"] == 0, r["errors"]; print(round(r["rps"]))' "$work/run.json"
}

wrk -t2 -c"$CONNS" -d2s "http://127.0.0.1:$PORT/x" > /dev/null
printf "%-6s %14s %14s %8s\n" round "wrk req/s" "strata req/s" ratio
: > "$work/ratios"
for r in $(seq "$ROUNDS"); do
  w=$(wrk_rps); s=$(strata_rps)
  ratio=$(python3 -c "print(f'{$s/$w:.2f}')")
  printf "%-6s %14.0f %14.0f %7sx\n" "$r" "$w" "$s" "$ratio"
  echo "$ratio" >> "$work/ratios"
done
python3 -c 'import statistics,sys; v=[float(l) for l in open(sys.argv[1])]; print(f"strata load-test / wrk: median {statistics.median(v):.2f}x")' "$work/ratios"
