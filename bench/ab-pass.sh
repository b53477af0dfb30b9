#!/usr/bin/env bash
# A/B of the pass-through path: the strata built from this tree against another
# strata binary (BASE, e.g. built from an earlier commit), with nginx `proxy_pass`
# and the origin direct for scale, all in one run.
#
#   bench/ab-pass.sh BASE [DURATION] [ROUNDS]      (defaults: 3s, 30)
#   git worktree add /tmp/base HEAD~1 && CARGO_TARGET_DIR=/tmp/base-target \
#     cargo build --release -p strata --manifest-path /tmp/base/Cargo.toml
#   bench/ab-pass.sh /tmp/base-target/release/strata
#
# Each round runs `wrk -t1 -c1` (one request at a time: what a proxy adds to a
# request when nothing else is running) on the origin and on each proxy, in an
# order that reverses every round, and prints the p50s. Changes worth a few µs
# drown in the machine's drift between rounds (±15 µs on the 2-core VM), so the
# summary compares within rounds: the median of the per-round differences new
# minus base, and how many rounds each won. PACED=1 adds, per round, each proxy's
# CPU ticks (user, system) and the origin's while `wrk -c10` paces 1 request per
# ms per connection (the same load on each), and to the summary the median
# per-round ratio of user ticks, this tree / BASE.
#
# The origin is nginx serving an 885-byte JSON file with `Cache-Control:
# max-age=3600` on a route strata is told not to cache (`cache = false`), the
# same setup as the misses of bench/compare-http.sh. Needs wrk and nginx (Debian:
# wrk nginx); installs them if missing.
set -euo pipefail
cd "$(dirname "$0")/.."
BASE=${1:?usage: bench/ab-pass.sh BASE_STRATA_BINARY [DURATION] [ROUNDS]}
DURATION=${2:-3s}
ROUNDS=${3:-30}
. bench/lib.sh
need wrk:wrk nginx:nginx curl:curl
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
test -x "$BASE" || { echo "$BASE: not an executable" >&2; exit 2; }

bench_setup
OPORT=$(free_port); NPORT=$(free_port); SPORT=$(free_port); BPORT=$(free_port)
SAPORT=$(free_port); BAPORT=$(free_port)
http_origin_setup "$work" "$OPORT"
pass_nginx_conf "$work" "$NPORT" "$OPORT" "worker_processes auto;" > "$work/proxy.conf"
pass_strata_conf "$SPORT" "$OPORT" > "$work/s.toml"
pass_strata_conf "$BPORT" "$OPORT" > "$work/b.toml"
as_service "$NGINX" -c "$work/origin.conf" -p "$work/origin" >/dev/null 2>&1 & echo $! > "$work/o.pid"
as_service "$NGINX" -c "$work/proxy.conf" -p "$work/nginx" >/dev/null 2>&1 & echo $! > "$work/n.pid"
RUST_LOG=warn as_service target/release/strata serve --config "$work/s.toml" --listen "127.0.0.1:$SAPORT" > "$work/s.log" 2>&1 &
echo $! > "$work/s.pid"
RUST_LOG=warn as_service "$BASE" serve --config "$work/b.toml" --listen "127.0.0.1:$BAPORT" > "$work/b.log" 2>&1 &
echo $! > "$work/b.pid"
port_of() { case $1 in o) echo "$OPORT" ;; n) echo "$NPORT" ;; s) echo "$SPORT" ;; b) echo "$BPORT" ;; esac; }
pass_ready "$work" "$OPORT" "$NPORT" "$SPORT" "$BPORT"

: > "$work/rounds"; : > "$work/paced"
echo "round  p50 in ms, one request at a time (o origin, n nginx, s this tree, b BASE)"
for r in $(seq "$ROUNDS"); do
  order="o n s b"; ((r % 2)) || order="b s n o"
  line="$r"
  for w in $order; do
    read -r _ p50 _ < <(wrk_run "http://127.0.0.1:$(port_of "$w")/nocache/item" 1 "$DURATION")
    line="$line $w=$p50"
  done
  echo "$line" | tee -a "$work/rounds"
  [ "${PACED:-0}" = 1 ] || continue
  line="$r paced CPU ticks user,system,origin:"
  for w in $( ((r % 2)) && echo "n s b" || echo "b s n"); do
    read -r u0 s0 < <(tree_ticks "$(cat "$work/$w.pid")"); read -r ou0 os0 < <(tree_ticks "$(cat "$work/o.pid")")
    wrk_run "http://127.0.0.1:$(port_of "$w")/nocache/item" 10 "$DURATION" 1 >/dev/null
    read -r u1 s1 < <(tree_ticks "$(cat "$work/$w.pid")"); read -r ou1 os1 < <(tree_ticks "$(cat "$work/o.pid")")
    line="$line $w=$((u1 - u0)),$((s1 - s0)),$((ou1 + os1 - ou0 - os0))"
  done
  echo "$line" | tee -a "$work/paced"
done

python3 - "$work/rounds" "$work/paced" <<'PY'
import re, statistics as st, sys
rows = [{k: float(v) * 1000 for k, v in re.findall(r"(\w)=([\d.]+)", l)} for l in open(sys.argv[1])]
added = {w: [r[w] - r["o"] for r in rows] for w in "nsb"}
for w, name in (("n", "nginx"), ("s", "this tree"), ("b", "BASE")):
    per_round = st.median(a / max(n, 1e-3) for a, n in zip(added[w], added["n"]))
    print(f"{name:10} added p50 over the origin's: median {st.median(added[w]):.1f} µs, "
          f"/ nginx's median {st.median(added[w]) / st.median(added['n']):.3f}x, "
          f"median per round {per_round:.2f}x")
paced = [{k: tuple(map(int, v.split(","))) for k, v in re.findall(r"(\w)=([\d,]+)", l.split(":", 1)[1])}
         for l in open(sys.argv[2])]
if paced:
    user = st.median(p["s"][0] / max(p["b"][0], 1) for p in paced)
    print(f"paced user CPU ticks, this tree / BASE: median per round {user:.3f}x")
d = [s - b for s, b in zip(added["s"], added["b"])]
print(f"this tree - BASE, per round: median {st.median(d):+.1f} µs; "
      f"this tree faster in {sum(x < 0 for x in d)} of {len(d)} rounds, slower in {sum(x > 0 for x in d)}")
PY
