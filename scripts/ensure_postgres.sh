#!/usr/bin/env bash
# Makes PostgreSQL server binaries available for the database tests (installs them with apt-get
# when missing; the tests start their own throw-away cluster, they never touch a system one).
set -euo pipefail
if ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" != "0" ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "PostgreSQL server binaries are missing; install the 'postgresql' package (or set LEADFLOW_TEST_PG_URL)." >&2
  exit 1
fi
echo "installing PostgreSQL (apt-get) for the database tests..."
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -y -qq postgresql >/dev/null
