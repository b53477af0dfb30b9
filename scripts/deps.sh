#!/usr/bin/env bash
# Installs what the build and the tests need when it is missing (Debian/Ubuntu,
# non-interactive). Called by scripts/test.sh and .ci/run; a no-op when all is there.
set -euo pipefail

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
updated=""
apt_install() {
  echo "installing: $*"
  if [ -z "$updated" ]; then
    $SUDO apt-get update -qq
    updated=1
  fi
  $SUDO apt-get install -y -qq --no-install-recommends "$@"
}

need_apt=()
command -v redis-server >/dev/null 2>&1 || need_apt+=(redis-server)
command -v redis-cli >/dev/null 2>&1 || need_apt+=(redis-tools)
# promtool: `strata serve`'s /metrics is checked with `promtool check metrics`.
command -v promtool >/dev/null 2>&1 || need_apt+=(prometheus)
# chromium: the load-test HTML report is checked in a headless browser.
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
# PostgreSQL server, psql and pgbench: the PostgreSQL proxy's tests run real ones.
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need_apt+=(postgresql)
command -v psql >/dev/null 2>&1 || need_apt+=(postgresql-client)
# openssl: tests make self-signed certificates for the PostgreSQL proxy's TLS.
command -v openssl >/dev/null 2>&1 || need_apt+=(openssl)
# libclang: pg_query (the PostgreSQL parser) generates its bindings with bindgen.
ls /usr/lib/llvm-*/lib/libclang.so >/dev/null 2>&1 || need_apt+=(libclang-dev)
if [ ${#need_apt[@]} -gt 0 ]; then
  apt_install "${need_apt[@]}"
  # Debian starts redis-server and postgresql at install; the tests start their own.
fi

# Extensions for the server version that is there: hypopg (hypothetical indexes for
# the advisor); pg_stat_statements comes with the server.
for bin in /usr/lib/postgresql/*/bin; do
  [ -d "$bin" ] || continue
  v=$(basename "$(dirname "$bin")")
  [ -f "/usr/share/postgresql/$v/extension/hypopg.control" ] || apt_install "postgresql-$v-hypopg"
done
