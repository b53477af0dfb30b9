#!/usr/bin/env bash
# Where a pass-through request's added latency goes: strata and nginx `proxy_pass`
# beside two reference relays (bench/floors), one request at a time, in one run.
#
#   bench/floor-pass.sh [DURATION] [ROUNDS]      (defaults: 3s, 20)
#
#   tokio_relay  a tokio relay that copies the request head to a kept-alive origin
#                connection and the response back, touching no header: the floor
#                of a tokio proxy on this machine.
#   hyper_relay  hyper's HTTP/1.1 server (header-read timeout on, as strata runs
#                it) with the least relay behind it (fields passed as they came,
#                the response parsed with httparse, a response timeout): a
#                pass-through on hyper before any of a proxy's own work.
#   nginx_same   nginx `proxy_pass` doing the per-request work strata's
#                pass-through does beyond a plain relay: forwarding fields and
#                `Via` to the origin, `X-Cache`, `X-Process-Time` and
#                `Server-Timing` to the client (bench/lib.sh, pass_nginx_conf).
#
# Each round runs `wrk -t1 -c1` on the origin directly and on each proxy, in an
# order that reverses every round, and reads each proxy's CPU ticks from /proc.
# The summary gives, per proxy, the median p50 added over the origin's, its ratio
# to nginx's (of the medians, and the median of per-round ratios), and user and
# system CPU per request; then strata's ratios to nginx_same. The origin and
# routes are those of bench/ab-pass.sh.
# Needs wrk and nginx (Debian: wrk nginx); installs them if missing.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:-3s}
ROUNDS=${2:-20}
. bench/lib.sh
need wrk:wrk nginx:nginx curl:curl
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

bench_setup
FLOORS=$(build_floors)
OPORT=$(free_port); NPORT=$(free_port); SPORT=$(free_port); TPORT=$(free_port); HPORT=$(free_port); EPORT=$(free_port)
http_origin_setup "$work" "$OPORT"
pass_nginx_conf "$work" "$NPORT" "$OPORT" "worker_processes auto;" > "$work/proxy.conf"
pass_nginx_conf "$work/e" "$EPORT" "$OPORT" "worker_processes auto;" same > "$work/e.conf"
mkdir -p "$work/e/nginx"
pass_strata_conf "$SPORT" "$OPORT" > "$work/s.toml"
as_service "$NGINX" -c "$work/origin.conf" -p "$work/origin" >/dev/null 2>&1 & echo $! > "$work/o.pid"
as_service "$NGINX" -c "$work/proxy.conf" -p "$work/nginx" >/dev/null 2>&1 & echo $! > "$work/n.pid"
as_service "$NGINX" -c "$work/e.conf" -p "$work/e/nginx" >/dev/null 2>&1 & echo $! > "$work/e.pid"
RUST_LOG=warn as_service target/release/strata serve --config "$work/s.toml" \
  --listen "127.0.0.1:$(free_port)" > "$work/s.log" 2>&1 &
echo $! > "$work/s.pid"
as_service "$FLOORS/tokio_relay" "127.0.0.1:$TPORT" "127.0.0.1:$OPORT" > "$work/t.log" 2>&1 &
echo $! > "$work/t.pid"
as_service "$FLOORS/hyper_relay" "127.0.0.1:$HPORT" "127.0.0.1:$OPORT" > "$work/h.log" 2>&1 &
echo $! > "$work/h.pid"
port_of() { case $1 in o) echo "$OPORT" ;; n) echo "$NPORT" ;; s) echo "$SPORT" ;; t) echo "$TPORT" ;; h) echo "$HPORT" ;; e) echo "$EPORT" ;; esac; }
pass_ready "$work" "$OPORT" "$NPORT" "$SPORT" "$TPORT" "$HPORT" "$EPORT"
# nginx_same answers with the fields strata adds.
curl -s -D - -o /dev/null "http://127.0.0.1:$EPORT/nocache/item" | grep -qi '^server-timing: cache;desc=BYPASS'
curl -s -D - -o /dev/null "http://127.0.0.1:$SPORT/nocache/item" | grep -qi '^server-timing: cache;desc=BYPASS'

: > "$work/rounds"
echo "round  p50 in ms, one request at a time (o origin, n nginx, e nginx_same, s strata, t tokio_relay, h hyper_relay)"
for r in $(seq "$ROUNDS"); do
  order="o n e s t h"; ((r % 2)) || order="h t s e n o"
  line="$r"
  for w in $order; do
    read -r u0 s0 < <(tree_ticks "$(cat "$work/$w.pid")")
    read -r rps p50 _ < <(wrk_run "http://127.0.0.1:$(port_of "$w")/nocache/item" 1 "$DURATION")
    read -r u1 s1 < <(tree_ticks "$(cat "$work/$w.pid")")
    line="$line $w=$p50,$rps,$((u1 - u0)),$((s1 - s0))"
  done
  echo "$line" | tee -a "$work/rounds"
done

python3 - "$work/rounds" "${DURATION%s}" <<'PY'
import re, statistics as st, sys
secs = float(sys.argv[2])
rows = [{w: tuple(map(float, v.split(","))) for w, v in re.findall(r"(\w)=([\d.,]+)", l)}
        for l in open(sys.argv[1])]
added = {w: [(r[w][0] - r["o"][0]) * 1000 for r in rows] for w in "nesth"}
names = {"n": "nginx", "e": "nginx_same", "s": "strata", "t": "tokio_relay", "h": "hyper_relay"}
print("            added p50 (µs)  / nginx  per-round / nginx  CPU per request (µs): user  system")
for w in "nesth":
    user = st.median(r[w][2] * 1e4 / (r[w][1] * secs) for r in rows)
    system = st.median(r[w][3] * 1e4 / (r[w][1] * secs) for r in rows)
    ratio = st.median(added[w]) / st.median(added["n"])
    per_round = st.median(a / max(n, 1e-3) for a, n in zip(added[w], added["n"]))
    print(f"{names[w]:12} {st.median(added[w]):10.1f}  {ratio:7.2f}x  {per_round:9.2f}x"
          f"  {user:24.1f}  {system:6.1f}")
same = st.median(added["e"])
print(f"strata / nginx_same: {st.median(added['s']) / same:.2f}x of the medians, "
      f"{st.median(a / max(e, 1e-3) for a, e in zip(added['s'], added['e'])):.2f}x median per round")
PY
