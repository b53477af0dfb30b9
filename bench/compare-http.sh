#!/usr/bin/env bash
# strata's caching proxy vs nginx proxy_cache, in one run, in front of the same
# origin.
#
#   bench/compare-http.sh [DURATION] [ROUNDS]      (defaults: 10s, 3)
#
# The origin is an nginx (one worker) serving an 885-byte JSON file with
# `Cache-Control: max-age=3600`. In front of it: `strata serve --upstream`
# (release build) and an nginx with `proxy_cache` (workers per core, keep-alive
# upstream), each server in a session of its own (bench/lib.sh, as_service). Two
# measurements, each a wrk run on strata and one on nginx, in turn strata first and
# nginx first from round to round, so both see the same noise:
#   hits:   wrk -t1 -c50 on the cached URL (every request a cache hit), closed
#           loop (as fast as each proxy answers), then paced: each connection
#           waits PACE_MS (default 3) between a response and its next request
#           (bench/paced.lua), so both proxies serve the same load below
#           saturation and their tails compare at equal throughput;
#   misses: wrk -t1 -c10 on a route neither caches (strata `cache = false`,
#           nginx plain proxy_pass), plus the origin directly, to get the
#           latency each proxy adds: closed loop (at saturation, where p50 is
#           mostly queueing behind CPU), then paced with MISS_PACE_MS (default 1)
#           between requests, so the three serve the same load and the p50
#           difference is the latency the proxy itself adds. During the paced
#           runs the script also reads each proxy's and the origin's CPU ticks
#           (/proc) and prints CPU per request, user and system. Last, one
#           connection (-c1), unloaded: each request alone on the machine, so
#           the p50 difference is the time each proxy adds to a single request.
# ALLOCS=1 measures something else and stops: heap allocations per request of
# each proxy, on both routes at the paced miss load, counted with a uprobe on
# glibc's malloc (`perf probe`; needs perf and root).
# Needs wrk and nginx (Debian: wrk nginx); installs them if missing.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:-10s}
ROUNDS=${2:-3}
PACE_MS=${PACE_MS:-3}
MISS_PACE_MS=${MISS_PACE_MS:-1}
. bench/lib.sh
need wrk:wrk nginx:nginx curl:curl
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

bench_setup
OPORT=$(free_port); NPORT=$(free_port); SPORT=$(free_port); APORT=$(free_port)

http_origin_setup "$work" "$OPORT"
mkdir -p "$work/cache"
cat > "$work/proxy.conf" <<CONF
worker_processes auto;
daemon off;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log warn;
events { worker_connections 1024; }
http {
$(nginx_http_common "$work")
  proxy_cache_path $work/cache keys_zone=strata_bench:10m;
  upstream origin { server 127.0.0.1:$OPORT; keepalive 64; }
  server {
    listen 127.0.0.1:$NPORT;
    proxy_http_version 1.1;
    proxy_set_header Connection "";
    location /nocache/ { proxy_pass http://origin; }
    location / { proxy_pass http://origin; proxy_cache strata_bench; add_header X-Cache \$upstream_cache_status; }
  }
}
CONF
cat > "$work/strata.toml" <<CONF
[http]
listen = "127.0.0.1:$SPORT"
upstream = "http://127.0.0.1:$OPORT"
[[http.routes]]
match = "/nocache/*"
cache = false
CONF
# Each server in a session of its own, as services run (bench/lib.sh, as_service).
as_service "$NGINX" -c "$work/origin.conf" -p "$work/origin" >/dev/null 2>&1 & echo $! > "$work/origin.pid"
as_service "$NGINX" -c "$work/proxy.conf" -p "$work/nginx" >/dev/null 2>&1 & echo $! > "$work/nginx.pid"
RUST_LOG=warn as_service target/release/strata serve --config "$work/strata.toml" --listen "127.0.0.1:$APORT" > "$work/strata.log" 2>&1 &
echo $! > "$work/strata.pid"
wait_url "http://127.0.0.1:$OPORT/item"; wait_url "http://127.0.0.1:$NPORT/item"; wait_url "http://127.0.0.1:$SPORT/item"
show_groups "$work/origin.pid" "$work/nginx.pid" "$work/strata.pid"
cmp <(curl -s "http://127.0.0.1:$SPORT/item") <(curl -s "http://127.0.0.1:$NPORT/item")
# Both must be answering hits, not passing through.
curl -s "http://127.0.0.1:$NPORT/item" >/dev/null
test "$(curl -s -o /dev/null -w '%header{x-cache}' "http://127.0.0.1:$SPORT/item")" = HIT
test "$(curl -s -o /dev/null -w '%header{x-cache}' "http://127.0.0.1:$NPORT/item")" = HIT

for u in "$SPORT/item" "$NPORT/item" "$SPORT/nocache/item" "$NPORT/nocache/item"; do
  wrk -t1 -c50 -d2s "http://127.0.0.1:$u" >/dev/null
done
if [ "${ALLOCS:-0}" = 1 ]; then
  perf probe -q -x "$(ldd target/release/strata | awk '/libc.so.6/ {print $3}')" malloc 2>/dev/null || true
  nginx_workers=$(pgrep -f "nginx: worker" -P "$(cat "$work/nginx.pid")" | paste -sd,)
  for path in /nocache/item /item; do
    for who in strata nginx; do
      port=$SPORT pids=$(cat "$work/strata.pid"); [ $who = nginx ] && { port=$NPORT pids=$nginx_workers; }
      wrk -t1 -c10 -d12s -s bench/paced.lua "http://127.0.0.1:$port$path" -- "$MISS_PACE_MS" > "$work/wrk.out" &
      wrk_pid=$!
      sleep 3
      m=$(perf stat -x, -e probe_libc:malloc -p "$pids" -- sleep 6 2>&1 | awk -F, '/malloc/ {print $1}')
      wait "$wrk_pid"
      rps=$(awk '/Requests\/sec/ {print $2}' "$work/wrk.out")
      printf "%-14s %-7s mallocs per request: %s\n" "$path" "$who" "$(python3 -c "print(round($m / ($rps * 6), 1))")"
    done
  done
  exit 0
fi
printf "%-6s %-14s %12s %9s %9s\n" round target "requests/s" "p50 ms" "p99 ms"
: > "$work/hits"; : > "$work/paced"; : > "$work/misses"; : > "$work/pmisses"; : > "$work/umisses"; : > "$work/cpu"
# pair PATH CONNECTIONS [PACE_MS]: one wrk run on strata and one on nginx, strata
# first in odd rounds and nginx first in even ones; sets s1 s50 s99 and n1 n50 n99,
# and scpu / ncpu: "user_ticks system_ticks origin_ticks" each proxy and the origin
# used during its run.
pair() {
  local who
  for who in $( ((r % 2)) && echo "s n" || echo "n s"); do
    local port=$SPORT pid u0 s0 u1 s1_ ou0 os0 ou1 os1; [ "$who" = n ] && port=$NPORT
    pid=$(cat "$work/$([ "$who" = n ] && echo nginx || echo strata).pid")
    read -r u0 s0 < <(tree_ticks "$pid"); read -r ou0 os0 < <(tree_ticks "$(cat "$work/origin.pid")")
    read -r "${who}1" "${who}50" "${who}99" < <(wrk_run "http://127.0.0.1:$port$1" "$2" "$DURATION" "${3:-}")
    read -r u1 s1_ < <(tree_ticks "$pid"); read -r ou1 os1 < <(tree_ticks "$(cat "$work/origin.pid")")
    printf -v "${who}cpu" "%s %s %s" $((u1 - u0)) $((s1_ - s0)) $((ou1 + os1 - ou0 - os0))
  done
}
for r in $(seq "$ROUNDS"); do
  pair /item 50
  printf "%-6s %-14s %12s %9s %9s\n" "$r" "strata hit" "$s1" "$s50" "$s99" "$r" "nginx hit" "$n1" "$n50" "$n99"
  echo "$s1 $s99 $n1 $n99" >> "$work/hits"
  pair /item 50 "$PACE_MS"
  printf "%-6s %-14s %12s %9s %9s\n" "$r" "strata paced" "$s1" "$s50" "$s99" "$r" "nginx paced" "$n1" "$n50" "$n99"
  echo "$s1 $s99 $n1 $n99" >> "$work/paced"
  read -r o1 o50 o99 < <(wrk_run "http://127.0.0.1:$OPORT/nocache/item" 10)
  pair /nocache/item 10
  printf "%-6s %-14s %12s %9s %9s\n" "$r" "origin direct" "$o1" "$o50" "$o99" "$r" "strata pass" "$s1" "$s50" "$s99" "$r" "nginx pass" "$n1" "$n50" "$n99"
  echo "$o50 $s50 $n50 $s99 $n99 $s1 $n1" >> "$work/misses"
  read -r o1 o50 o99 < <(wrk_run "http://127.0.0.1:$OPORT/nocache/item" 10 "$DURATION" "$MISS_PACE_MS")
  pair /nocache/item 10 "$MISS_PACE_MS"
  printf "%-6s %-14s %12s %9s %9s\n" "$r" "origin paced" "$o1" "$o50" "$o99" "$r" "strata pass p" "$s1" "$s50" "$s99" "$r" "nginx pass p" "$n1" "$n50" "$n99"
  echo "$o50 $s50 $n50 $s99 $n99 $s1 $n1" >> "$work/pmisses"
  echo "$s1 $scpu $n1 $ncpu" >> "$work/cpu"
  read -r o1 o50 o99 < <(wrk_run "http://127.0.0.1:$OPORT/nocache/item" 1)
  pair /nocache/item 1
  printf "%-6s %-14s %12s %9s %9s\n" "$r" "origin -c1" "$o1" "$o50" "$o99" "$r" "strata pass 1" "$s1" "$s50" "$s99" "$r" "nginx pass 1" "$n1" "$n50" "$n99"
  echo "$o50 $s50 $n50 $s99 $n99 $s1 $n1" >> "$work/umisses"
done
python3 - "$work/hits" "$work/misses" "$work/paced" "$PACE_MS" "$work/pmisses" "$MISS_PACE_MS" "$work/cpu" "${DURATION%s}" "$work/umisses" <<'PY'
import statistics, sys
med = statistics.median
hits = [list(map(float, l.split())) for l in open(sys.argv[1])]
rps = [s / n for s, _, n, _ in hits]
p99 = [sp / np for _, sp, _, np in hits]
f = lambda xs: ", ".join(f"{x:.2f}" for x in xs)
print(f"hits   strata/nginx requests/s: median {med(rps):.2f}x (rounds: {f(rps)})")
print(f"hits   strata/nginx p99:        median {med(p99):.2f}x (lower is better; rounds: {f(p99)})")
paced = [list(map(float, l.split())) for l in open(sys.argv[3])]
prps = [s / n for s, _, n, _ in paced]
pp99 = [sp / np for _, sp, _, np in paced]
print(f"paced  ({sys.argv[4]} ms between a response and the next request; same load if requests/s ~1.00x)")
print(f"paced  strata/nginx requests/s: median {med(prps):.2f}x (rounds: {f(prps)})")
print(f"paced  strata/nginx p99:        median {med(pp99):.2f}x (lower is better; rounds: {f(pp99)})")
def misses(label, path):
    miss = [list(map(float, l.split())) for l in open(path)]
    # Each row: origin p50, strata p50, nginx p50, strata p99, nginx p99, strata rps, nginx rps.
    added = [(s - o) / max(n - o, 1e-3) for o, s, n, _, _, _, _ in miss]
    p50 = [s / n for _, s, n, _, _, _, _ in miss]
    mp99 = [s / n for _, _, _, s, n, _, _ in miss]
    mrps = [s / n for _, _, _, _, _, s, n in miss]
    added_us = lambda i: ", ".join(f"{(r[i] - r[0]) * 1000:.0f}" for r in miss)
    print(f"{label} strata/nginx p50:        median {med(p50):.2f}x (rounds: {f(p50)})")
    print(f"{label} strata/nginx p50 added over the origin's: median {med(added):.2f}x (rounds: {f(added)})")
    print(f"{label}   added p50 in us, strata: {added_us(1)}; nginx: {added_us(2)}")
    print(f"{label} strata/nginx p99:        median {med(mp99):.2f}x (rounds: {f(mp99)})")
    print(f"{label} strata/nginx requests/s: median {med(mrps):.2f}x (rounds: {f(mrps)})")
misses("misses", sys.argv[2])
print(f"paced misses ({sys.argv[6]} ms between a response and the next request)")
misses("pmiss ", sys.argv[5])
print("unloaded misses (one connection)")
misses("umiss ", sys.argv[9])
# CPU per request during the paced misses: ticks are 1/100 s; requests = rps x seconds.
# The machine's speed drifts between runs, so each proxy's CPU is also shown divided
# by the origin's in the same run (the same nginx serving the same requests).
cpu = [list(map(float, l.split())) for l in open(sys.argv[7])]
secs = float(sys.argv[8])
per_request_us = lambda ticks, rps: ticks * 1e4 / (rps * secs)
rows = [tuple(per_request_us(t, rps) for t, rps in ((su, sr), (ss, sr), (so, sr), (nu, nr), (ns, nr), (no, nr)))
        for sr, su, ss, so, nr, nu, ns, no in cpu]
print("paced misses, CPU per request (us): strata user/system, nginx user/system, per round")
print("       " + "; ".join(f"{a:.1f}/{b:.1f} vs {d:.1f}/{e:.1f}" for a, b, _, d, e, _ in rows))
print(f"pmiss  strata/nginx user CPU per request:  median {med([a / d for a, _, _, d, _, _ in rows]):.2f}x")
print(f"pmiss  strata/nginx total CPU per request: median {med([(a + b) / (d + e) for a, b, _, d, e, _ in rows]):.2f}x")
print(f"pmiss  strata user CPU / origin CPU: median {med([a / c for a, _, c, _, _, _ in rows]):.2f}"
      f" (nginx: {med([d / f for _, _, _, d, _, f in rows]):.2f})")
PY
