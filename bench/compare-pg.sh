#!/usr/bin/env bash
# strata's PostgreSQL proxy (insight on) vs pgbouncer (session mode) vs PostgreSQL
# directly, in one run, against the same server.
#
#   bench/compare-pg.sh [SECONDS] [ROUNDS] [CLIENTS]      (defaults: 30, 3, 20)
#
# A throwaway PostgreSQL (initdb in a temp dir, pgbench scale 10) and, in front of
# it, `strata serve --pg-upstream` (release build) and pgbouncer with
# pool_mode = session (strata with one session thread; STRATA_PG_WORKERS=n to change),
# each in a session of its own as pgbouncer -d puts itself (bench/lib.sh, as_service).
# Each round runs `pgbench -S -c CLIENTS -j 2 -T SECONDS`
# (select-only, simple protocol) against the three, in turn (the order rotates from
# round to round), so all see the same noise. Prints TPS and mean latency per target
# and round, then the ratios of the medians, then the CPU ticks each proxy spends at a
# fixed CPU_RATE (default 8000 transactions/s), then what each proxy adds to one
# client's round trip on an unloaded machine (`-c 1` for LAT_SECONDS, default 5, per
# target and round; 0 skips it). pgbench itself shares the machine: on 2 cores every
# target is CPU-bound at CLIENTS = 20.
# Needs PostgreSQL, pgbench and pgbouncer (Debian: postgresql pgbouncer).
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER_RUN=${1:-30}
ROUNDS=${2:-3}
CLIENTS=${3:-20}
. bench/lib.sh
need pgbouncer:pgbouncer pgbench:postgresql
PGBIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)

cargo build --release -q -p strata
work=$(mktemp -d)
chmod 755 "$work"
cleanup() {
  kill "$(cat "$work/strata.pid" 2>/dev/null)" "$(cat "$work/bouncer.pid" 2>/dev/null)" 2>/dev/null || true
  as_pg "$PGBIN/pg_ctl" -D "$work/data" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
# PostgreSQL and pgbouncer refuse to run as root: run them as `postgres` then.
as_pg() { if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
[ "$(id -u)" -ne 0 ] || chown postgres "$work"

PGPORT=$(free_port); BPORT=$(free_port); SPORT=$(free_port); APORT=$(free_port)
as_pg "$PGBIN/initdb" -D "$work/data" -U postgres --auth=trust --no-sync >/dev/null
cat >> "$work/data/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $PGPORT
unix_socket_directories = '$work'
fsync = off
max_connections = 200
shared_buffers = 128MB
CONF
as_pg "$PGBIN/pg_ctl" -D "$work/data" -l "$work/pg.log" -w start >/dev/null

cat > "$work/bouncer.ini" <<CONF
[databases]
postgres = host=127.0.0.1 port=$PGPORT
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $BPORT
auth_type = trust
auth_file = $work/users.txt
pool_mode = session
max_client_conn = 1000
default_pool_size = 100
logfile = $work/bouncer.log
pidfile = $work/bouncer.pid
unix_socket_dir =
CONF
echo '"postgres" ""' > "$work/users.txt"
[ "$(id -u)" -ne 0 ] || chown postgres "$work/bouncer.ini" "$work/users.txt"
as_pg pgbouncer -d "$work/bouncer.ini"

# One session thread, as pgbouncer has one: on a 2-core machine shared with pgbench
# and PostgreSQL a second one costs more in wake-ups than it gives (docs/decisions.md).
# In a session of its own, as pgbouncer is after `-d` and PostgreSQL after pg_ctl
# (bench/lib.sh, as_service).
STRATA__POSTGRES__WORKERS=${STRATA_PG_WORKERS:-1} as_service target/release/strata serve \
  --listen "127.0.0.1:$APORT" --pg-upstream "postgres://127.0.0.1:$PGPORT" \
  --pg-listen "127.0.0.1:$SPORT" --log-level warn >"$work/strata.log" 2>&1 &
echo $! > "$work/strata.pid"
wait_url "http://127.0.0.1:$APORT/health"
for _ in $(seq 50); do [ -f "$work/bouncer.pid" ] && break; sleep 0.1; done
show_groups "$work/bouncer.pid" "$work/strata.pid"

pgbench -h 127.0.0.1 -p "$PGPORT" -U postgres -i -s 10 -q postgres >/dev/null 2>&1

# run PORT → "tps mean_latency_ms"
run() {
  pgbench -h 127.0.0.1 -p "$1" -U postgres -S -n -c "$CLIENTS" -j 2 -T "$SECONDS_PER_RUN" postgres 2>/dev/null \
    | python3 -c '
import re, sys
t = sys.stdin.read()
tps = float(re.search(r"tps = ([\d.]+)", t).group(1))
lat = float(re.search(r"latency average = ([\d.]+) ms", t).group(1))
failed = re.search(r"number of failed transactions: (\d+)", t)
if failed and int(failed.group(1)): sys.exit("failed transactions: " + failed.group(1))
print(f"{tps:.0f} {lat:.3f}")'
}

declare -A tps
echo "pgbench -S -c $CLIENTS -j 2 -T $SECONDS_PER_RUN, $ROUNDS rounds"
printf "%-6s %-10s %10s %10s\n" round target tps mean_ms
targets=(direct:$PGPORT pgbouncer:$BPORT strata:$SPORT)
# The targets as name:port in round $1's order: each round starts one later.
order() { for i in 0 1 2; do echo "${targets[$(( (i + $1 - 1) % 3 ))]}"; done; }
for r in $(seq "$ROUNDS"); do
  for t in $(order "$r"); do
    name=${t%%:*}; port=${t##*:}
    read -r v lat < <(run "$port")
    tps[$name]="${tps[$name]:-} $v"
    printf "%-6s %-10s %10s %10s\n" "$r" "$name" "$v" "$lat"
  done
done
median() { tr ' ' '\n' | grep -v '^$' | sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
d=$(echo "${tps[direct]}" | median); b=$(echo "${tps[pgbouncer]}" | median); s=$(echo "${tps[strata]}" | median)
python3 -c "print(f'median tps: direct $d, pgbouncer $b, strata $s'); print(f'strata / pgbouncer = {$s/$b:.2f}x   strata / direct = {$s/$d:.2f}x   pgbouncer / direct = {$b/$d:.2f}x')"
# The same ratios paired within each round (the machine's load drifts between
# rounds), with their range: the spread any comparison of two runs has to beat.
python3 - "${tps[direct]}" "${tps[pgbouncer]}" "${tps[strata]}" <<'PY'
import statistics, sys
d, b, s = ([float(x) for x in a.split()] for a in sys.argv[1:])
for name, num, den in (("strata / pgbouncer", s, b), ("strata / direct", s, d), ("pgbouncer / direct", b, d)):
    r = sorted(x / y for x, y in zip(num, den))
    print(f"{name} per round: median {statistics.median(r):.2f}x (range {r[0]:.2f}-{r[-1]:.2f})")
PY
# CPU per transaction at a fixed rate (CPU_RATE transactions/s for 8 s, 0 to skip):
# utime + stime ticks of each proxy process, from /proc, alternating; in parentheses
# the same per thread name (user/system), for threads alive at both readings.
CPU_RATE=${CPU_RATE:-8000}
if [ "$CPU_RATE" -gt 0 ]; then
  # "name|utime|stime" per thread name; the name may hold spaces, so fields are
  # counted from the closing parenthesis.
  thread_ticks() {
    for f in /proc/"$1"/task/*/stat; do sed -E 's/^[0-9]+ \((.*)\) (.*)$/\1|\2/' "$f"; done |
      awk -F'|' '{split($2, a, " "); u[$1] += a[12]; s[$1] += a[13]} END {for (n in u) print n "|" u[n] "|" s[n]}'
  }
  for r in 1 2; do
    for t in pgbouncer:$BPORT:$(cat "$work/bouncer.pid") strata:$SPORT:$(cat "$work/strata.pid"); do
      IFS=: read -r name port pid <<< "$t"
      a=$(ticks "$pid"); ta=$(thread_ticks "$pid")
      pgbench -h 127.0.0.1 -p "$port" -U postgres -S -n -c "$CLIENTS" -j 2 -T 8 -R "$CPU_RATE" postgres >/dev/null 2>&1
      split=$(python3 - "$ta" "$(thread_ticks "$pid")" <<'PY'
import sys
rows = lambda t: {n: (int(u), int(s)) for n, u, s in (l.split("|") for l in t.splitlines() if l)}
a, b = rows(sys.argv[1]), rows(sys.argv[2])
d = {n: (u - a[n][0], s - a[n][1]) for n, (u, s) in b.items() if n in a}
print(", ".join(f"{n} {u}/{s}" for n, (u, s) in sorted(d.items(), key=lambda x: -sum(x[1])) if u + s))
PY
)
      echo "cpu at $CPU_RATE tps for 8 s, round $r: $name $(( $(ticks "$pid") - a )) ticks ($split)"
    done
  done
fi
# Insight saw the traffic (the run is not measuring a proxy that dropped it).
LAT_SECONDS=${LAT_SECONDS:-5}
if [ "$LAT_SECONDS" -gt 0 ]; then
  declare -A lat
  for r in $(seq "$ROUNDS"); do
    for t in $(order "$r"); do
      name=${t%%:*}; port=${t##*:}
      v=$(pgbench -h 127.0.0.1 -p "$port" -U postgres -S -n -c 1 -T "$LAT_SECONDS" postgres 2>/dev/null \
        | grep -oP 'latency average = \K[\d.]+')
      lat[$name]="${lat[$name]:-} $v"
    done
  done
  d=$(echo "${lat[direct]}" | median); b=$(echo "${lat[pgbouncer]}" | median); s=$(echo "${lat[strata]}" | median)
  python3 -c "
d, b, s = $d, $b, $s
print(f'one client (-c 1, median of $ROUNDS x $LAT_SECONDS s): mean round trip direct {d*1000:.0f} us, pgbouncer {b*1000:.0f} us, strata {s*1000:.0f} us')
print(f'added over direct: pgbouncer {(b-d)*1000:.0f} us, strata {(s-d)*1000:.0f} us' + (f' (strata / pgbouncer = {(s-d)/(b-d):.2f}x)' if b > d else ''))"
fi
curl -sf "http://127.0.0.1:$APORT/v1/db/queries?sort=calls&limit=1" | python3 -c '
import json, sys
q = json.load(sys.stdin)["queries"][0]
print("strata insight: top query %r, %d calls, p99 %.3f ms" % (q["query"], q["calls"], q["p99_ms"]))'
