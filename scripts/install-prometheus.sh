#!/usr/bin/env bash
# Installs Debian's `prometheus` server for tests/observability (idempotent).
#
# The dashboard test runs a real Prometheus and evaluates every panel's query through its
# HTTP API; a mock would accept queries Prometheus rejects. Debian ships the server as a
# package, so CI installs it the ordinary way. Already installed: does nothing.
# Set PROMETHEUS_BIN to use another binary instead (then this script is not needed).
set -euo pipefail

if [[ -n "${PROMETHEUS_BIN:-}" && -x "${PROMETHEUS_BIN}" ]]; then
  echo "install-prometheus: using PROMETHEUS_BIN=${PROMETHEUS_BIN}"
  exit 0
fi
if command -v prometheus >/dev/null 2>&1; then
  echo "install-prometheus: $(command -v prometheus) already installed"
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "install-prometheus: no apt-get here; install Prometheus >= 2.x and put it on PATH" >&2
  exit 1
fi

SUDO=""
if [[ "$(id -u)" != "0" ]]; then
  SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# --no-install-recommends: only the server, not the node exporter and friends.
$SUDO apt-get install -y -qq --no-install-recommends prometheus >/dev/null
# The package enables a system service; the tests start their own server on loopback,
# so the packaged one is stopped where a service manager exists (containers have none).
if command -v systemctl >/dev/null 2>&1 && [[ -d /run/systemd/system ]]; then
  $SUDO systemctl disable --now prometheus >/dev/null 2>&1 || true
fi
echo "install-prometheus: installed $(command -v prometheus)"
