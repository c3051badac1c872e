#!/bin/sh
# Installs the Debian packages the tests and benchmarks use, only those that are missing.
set -eu
need=""
command -v chromium >/dev/null 2>&1 || need="$need chromium"
command -v xmlsec1 >/dev/null 2>&1 || need="$need xmlsec1"
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need="$need nginx"
command -v wrk >/dev/null 2>&1 || need="$need wrk"
{ command -v promtool && command -v prometheus; } >/dev/null 2>&1 || need="$need prometheus"  # promtool and the server (tests/test_fleet_prometheus.py)
[ -z "$need" ] && exit 0
if [ "$(id -u)" != 0 ]; then
  echo "missing Debian packages:$need (run as root, or: sudo apt-get install$need)" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# shellcheck disable=SC2086
apt-get install -y -qq $need >/dev/null  # as verified here (recommends included: fonts for chromium)
