#!/usr/bin/env bash
# Makes libfaketime available for the calendar test (tests/integration/test_calendar_independence.py),
# which runs the date-sensitive tests with the system clock moved: installs the Debian package
# `faketime` with apt-get when it is missing. Needs root for the install.
set -euo pipefail
if command -v faketime >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" != "0" ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "faketime is missing; install the Debian package 'faketime' as root." >&2
  exit 1
fi
echo "installing faketime (apt-get) for the calendar test..."
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -y -qq --no-install-recommends faketime >/dev/null
command -v faketime >/dev/null
