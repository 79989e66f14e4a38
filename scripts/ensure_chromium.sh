#!/usr/bin/env bash
# Makes headless Chromium and its WebDriver available for the browser test
# (tests/e2e/test_browser_leadflow_page.py): installs the Debian packages `chromium` and
# `chromium-driver` with apt-get when they are missing. Needs root for the install.
set -euo pipefail
if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" != "0" ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "Chromium is missing; install the Debian packages 'chromium' and 'chromium-driver' as root." >&2
  exit 1
fi
echo "installing Chromium and chromedriver (apt-get) for the browser test..."
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null
command -v chromium >/dev/null && command -v chromedriver >/dev/null
