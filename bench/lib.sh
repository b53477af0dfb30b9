# Shared by bench/*.sh: package installs, free ports, and one wrk run parsed into
# "requests/s p50_ms p99_ms". Source it after `set -euo pipefail`.

# Installs Debian packages for the commands given as cmd:package pairs, when missing.
need() {
  local missing=()
  for pair in "$@"; do
    local cmd=${pair%%:*} pkg=${pair##*:}
    command -v "$cmd" >/dev/null || [ -x "/usr/sbin/$cmd" ] || missing+=("$pkg")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
  fi
}

# Builds strata (release) and makes $work, a temp dir removed on exit after the
# processes whose pids were written to $work/*.pid are killed.
bench_setup() {
  cargo build --release -q -p strata
  work=$(mktemp -d)
  trap 'kill $(cat "$work"/*.pid 2>/dev/null) 2>/dev/null || true; rm -rf "$work"' EXIT
}

# Runs a server under test the way a service runs: in a session of its own. Where the
# kernel groups CPU time by session (sched_autogroup, on by default in many distros),
# a server left in this script's session would share one group's share with the load
# generator. Use as `as_service CMD ARGS... &`: it execs, so `$!` is the server's pid.
# OWN_SESSION=0 keeps servers in this session, to see the effect.
as_service() {
  if [ "${OWN_SESSION:-1}" = 1 ]; then exec setsid "$@"; else exec "$@"; fi
}

# Prints the scheduling group of each pid file given, when sched_autogroup is on.
show_groups() {
  [ "$(cat /proc/sys/kernel/sched_autogroup_enabled 2>/dev/null)" = 1 ] || return 0
  local line="scheduling groups (sched_autogroup): load generator $(cut -d' ' -f1 /proc/self/autogroup)"
  for f in "$@"; do
    line+=", $(basename "$f" .pid) $(cut -d' ' -f1 "/proc/$(cat "$f")/autogroup")"
  done
  echo "$line"
}

# CPU ticks (user + system, 1/100 s) a process has used so far, from /proc.
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# "user system" CPU ticks the given processes and their children have used so far
# (a process that has exited since counts 0).
tree_ticks() {
  local pids=() p
  for p in "$@"; do pids+=("$p" $(pgrep -P "$p" || true)); done
  for p in "${pids[@]}"; do cat "/proc/$p/stat" 2>/dev/null || true; done |
    awk '{u += $14; s += $15} END {print u + 0, s + 0}'
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# Waits until a URL answers 2xx (10 s).
wait_url() {
  for _ in $(seq 100); do curl -sf "$1" >/dev/null && return 0; sleep 0.1; done
  echo "no answer from $1" >&2; return 1
}

# wrk_run URL [CONNECTIONS] [DURATION] [PACE_MS]: prints "rps p50_ms p99_ms"; fails on
# non-2xx. With PACE_MS, each connection waits that long between a response and its
# next request (bench/paced.lua): a fixed load below saturation instead of a closed loop.
wrk_run() {
  local target=("$1")
  if [ -n "${4:-}" ]; then target=(-s bench/paced.lua "$1" -- "$4"); fi
  wrk -t1 -c"${2:-50}" -d"${3:-$DURATION}" --latency "${target[@]}" | python3 -c '
import re, sys
t = sys.stdin.read()
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", t).group(1))
def ms(q):
    v, unit = re.search(r"^\s+" + q + r"%\s+([\d.]+)(us|ms|s)\s*$", t, re.M).groups()
    return float(v) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]
errors = re.search(r"Non-2xx or 3xx responses: (\d+)", t)
if errors: sys.exit("non-2xx responses: " + errors.group(1))
p50, p99 = ms("50"), ms("99")
print(f"{rps:.0f} {p50:.3f} {p99:.3f}")'
}

# The nginx `http {}` preamble every bench config shares: no access log, temp
# paths inside $1 (the work dir), long keep-alive.
nginx_http_common() {
  cat <<CONF
  access_log off;
  sendfile on;
  tcp_nopush on;
  keepalive_requests 1000000;
  client_body_temp_path $1/nginx;
  proxy_temp_path $1/nginx;
  fastcgi_temp_path $1/nginx;
  uwsgi_temp_path $1/nginx;
  scgi_temp_path $1/nginx;
CONF
}

# The 885-byte JSON document every HTTP benchmark serves, on standard output.
json_885() {
  python3 -c 'import json; e = json.dumps({"id": 42, "name": "Ada Lovelace", "bio": ""}); print(json.dumps({"id": 42, "name": "Ada Lovelace", "bio": "x" * (885 - len(e))}), end="")'
}

# The origin the HTTP proxy benchmarks sit in front of: $1/origin.conf, one nginx
# worker on port $2 serving $1/www with `Cache-Control: max-age=3600`, where
# /item and /nocache/item are json_885 (also left in $1/item).
http_origin_setup() {
  local work=$1 port=$2
  json_885 > "$work/item"
  test "$(wc -c < "$work/item")" -eq 885
  mkdir -p "$work/www/nocache" "$work/nginx" "$work/origin"
  cp "$work/item" "$work/www/item"; cp "$work/item" "$work/www/nocache/item"
  chmod -R a+rX "$work"
  cat > "$work/origin.conf" <<CONF
worker_processes 1;
daemon off;
pid $work/origin/nginx.pid;
error_log $work/origin/error.log warn;
events { worker_connections 1024; }
http {
$(nginx_http_common "$work")
  server {
    listen 127.0.0.1:$port;
    location / { root $work/www; default_type application/json; add_header Cache-Control "max-age=3600"; }
  }
}
CONF
}

# The pass-through setup of bench/ab-pass.sh and bench/ir-pass.sh, on origin port $3.
# pass_nginx_conf WORK PORT ORIGIN_PORT PROCESSES [same]: an nginx `proxy_pass` of
# /nocache/ with keep-alive to the origin; PROCESSES is its first line
# (`worker_processes auto;`, or `master_process off;` for one process). With
# `same`, nginx also does the per-request work strata's pass-through does: the
# forwarding fields and `Via` (and a `Surrogate-Capability`) to the origin, and
# `X-Cache`, `X-Process-Time` and `Server-Timing` with its times to the client.
# (A location's own `proxy_set_header` lines replace all of the server's, hence
# `Connection` again.)
pass_nginx_conf() {
  local same=""
  if [ "${5:-}" = same ]; then
    same='proxy_set_header Connection "";
      proxy_set_header Host $proxy_host;
      proxy_set_header X-Forwarded-Host $http_host;
      proxy_set_header X-Forwarded-Proto $scheme;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_set_header Via "1.1 nginx";
      proxy_set_header Surrogate-Capability '"'"'nginx="Surrogate/1.0"'"'"';
      add_header X-Cache BYPASS;
      add_header X-Process-Time $request_time;
      add_header Server-Timing "cache;desc=BYPASS, origin;dur=$upstream_response_time, total;dur=$request_time";'
  fi
  cat <<CONF
$4
daemon off;
pid $1/nginx/nginx.pid;
error_log $1/nginx/error.log warn;
events { worker_connections 1024; }
http {
$(nginx_http_common "$1")
  upstream origin { server 127.0.0.1:$3; keepalive 64; }
  server {
    listen 127.0.0.1:$2;
    proxy_http_version 1.1;
    proxy_set_header Connection "";
    location /nocache/ { proxy_pass http://origin; $same }
  }
}
CONF
}

# pass_strata_conf PORT ORIGIN_PORT: strata's proxy with /nocache/* not cached.
pass_strata_conf() {
  printf '[http]\nlisten = "127.0.0.1:%s"\nupstream = "http://127.0.0.1:%s"\n' "$1" "$2"
  printf '[[http.routes]]\nmatch = "/nocache/*"\ncache = false\n'
}

# pass_ready WORK ORIGIN_PORT PROXY_PORT...: waits for the origin and each proxy of
# the pass-through setup, checks each proxy relays the origin's body unchanged, and
# warms each with a short wrk run.
pass_ready() {
  local work=$1 port; shift
  for port in "$@"; do wait_url "http://127.0.0.1:$port/nocache/item"; done
  shift
  for port in "$@"; do
    cmp <(curl -s "http://127.0.0.1:$port/nocache/item") "$work/item"
    wrk -t1 -c10 -d2s "http://127.0.0.1:$port/nocache/item" >/dev/null
  done
}

# Builds the reference relays of bench/floors (release) with the workspace's
# versions of tokio, hyper and httparse; prints the directory holding them.
build_floors() {
  cp Cargo.lock bench/floors/Cargo.lock
  CARGO_TARGET_DIR=target/floors cargo build --release -q --manifest-path bench/floors/Cargo.toml
  echo target/floors/release
}
