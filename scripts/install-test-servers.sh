#!/usr/bin/env bash
# Installs the Debian servers the tests run for real on loopback (idempotent):
#   prometheus    tests/observability: every dashboard panel's query is evaluated by a
#                 real Prometheus; a mock would accept queries Prometheus rejects.
#   redis-server  tests/ray/test_head_restart.py: Ray's GCS fault tolerance keeps its
#                 state in Redis, which is what lets a restarted head recover.
# Debian ships both as packages, so CI installs them the ordinary way. A server already
# on PATH (or named by PROMETHEUS_BIN / REDIS_SERVER_BIN) is left alone.
set -euo pipefail

missing=()
need() {  # need <package> <binary> <override variable>
  local package=$1 binary=$2 override=${!3:-}
  if [[ -n "$override" && -x "$override" ]]; then
    echo "install-test-servers: using $3=$override"
  elif command -v "$binary" >/dev/null 2>&1; then
    echo "install-test-servers: $(command -v "$binary") already installed"
  else
    missing+=("$package")
  fi
}
need prometheus prometheus PROMETHEUS_BIN
need redis-server redis-server REDIS_SERVER_BIN
[[ ${#missing[@]} -eq 0 ]] && exit 0

if ! command -v apt-get >/dev/null 2>&1; then
  echo "install-test-servers: no apt-get here; install ${missing[*]} and put them on PATH" >&2
  exit 1
fi
SUDO=""
if [[ "$(id -u)" != "0" ]]; then
  SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# --no-install-recommends: only the servers, not Prometheus's exporters and friends.
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# The packages enable system services; the tests start their own servers on loopback,
# so the packaged ones are stopped where a service manager exists (containers have none).
if command -v systemctl >/dev/null 2>&1 && [[ -d /run/systemd/system ]]; then
  for package in "${missing[@]}"; do
    $SUDO systemctl disable --now "$package" >/dev/null 2>&1 || true
  done
fi
echo "install-test-servers: installed ${missing[*]}"
