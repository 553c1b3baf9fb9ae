#!/usr/bin/env bash
# The web page's browser test drives Debian's chromium (CHROMIUM, default
# /usr/bin/chromium). Install it when missing and we may use apt-get.
set -euo pipefail
chromium=${CHROMIUM:-/usr/bin/chromium}
if [ -x "$chromium" ]; then
  exit 0
fi
if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  echo "installing Debian's chromium for the browser test"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq chromium >/dev/null
elif command -v apt-get >/dev/null 2>&1 && command -v sudo >/dev/null 2>&1; then
  echo "installing Debian's chromium for the browser test (sudo)"
  sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
if ! [ -x "$chromium" ]; then
  echo "No chromium at $chromium: install your distribution's chromium or set CHROMIUM=/path/to/chromium" >&2
  exit 1
fi
