#!/usr/bin/env bash
# Makes the Redis server binary available for the Celery end-to-end test (tests/e2e/
# test_celery_cluster.py), which starts a throw-away redis-server of its own on a free loopback
# port, the way tests/conftest.py starts PostgreSQL; a system Redis is never used or touched.
# Installs the Debian package `redis-server` when it is missing (needs root), and stops the
# service the package may start: the test needs only the binary.
set -euo pipefail
command -v redis-server >/dev/null 2>&1 && exit 0
if [ "$(id -u)" != "0" ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "missing for the tests: redis-server; install the Debian package redis-server as root" >&2
  exit 1
fi
echo "installing redis-server (apt-get) for the Celery test..."
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
# policy-rc.d 101: the package's post-install must not start a system-wide server
policy=/usr/sbin/policy-rc.d
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy"
  trap 'rm -f "$policy"' EXIT
fi
apt-get install -y -qq --no-install-recommends redis-server >/dev/null
command -v redis-server >/dev/null
