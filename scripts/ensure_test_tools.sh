#!/usr/bin/env bash
# Makes the programs the test suite runs for real available, installing the missing ones with one
# apt-get call (needs root): PostgreSQL server binaries (the database tests start their own
# throw-away cluster and never touch a system one), headless Chromium and its WebDriver (the
# browser test), libfaketime (the calendar test runs date-sensitive tests with the clock moved).
set -euo pipefail
missing=()
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v chromedriver >/dev/null 2>&1 || missing+=(chromium-driver)
command -v faketime >/dev/null 2>&1 || missing+=(faketime)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != "0" ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "missing for the tests: ${missing[*]}; install these Debian packages as root" \
       "(or set LEADFLOW_TEST_PG_URL for an existing PostgreSQL)." >&2
  exit 1
fi
echo "installing ${missing[*]} (apt-get) for the test suite..."
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
