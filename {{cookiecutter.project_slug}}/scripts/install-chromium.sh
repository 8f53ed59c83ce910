#!/usr/bin/env bash
# Install headless Chromium for tests/test_history.py (Debian/Ubuntu; needs root or sudo).
#
#   bash scripts/install-chromium.sh
#
# Idempotent: does nothing when /usr/bin/chromium and /usr/bin/chromedriver exist.
# The tests skip with a reason where Chromium is absent; CI runs this first.
set -euo pipefail

if [[ -x /usr/bin/chromium && -x /usr/bin/chromedriver ]]; then
  echo "chromium already installed: $(/usr/bin/chromium --version 2>/dev/null || echo unknown)"
  exit 0
fi

sudo=()
if [[ "$(id -u)" != 0 ]]; then
  command -v sudo >/dev/null || { echo "error: need root or sudo to apt-get install chromium" >&2; exit 1; }
  sudo=(sudo)
fi
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -q
"${sudo[@]}" apt-get install -y -q chromium chromium-driver
/usr/bin/chromium --version
