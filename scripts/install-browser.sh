#!/usr/bin/env bash
# Debian's chromium and chromium-driver, for the browser tests; only when missing. Tests skip without them.
set -uo pipefail
if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "curate: no root or sudo: browser tests will be skipped"; exit 0; }
  SUDO=sudo
fi
echo "curate: installing chromium and chromium-driver for the browser tests"
$SUDO apt-get update -qq >/dev/null 2>&1
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium chromium-driver >/dev/null 2>&1 \
  || echo "curate: could not install chromium: browser tests will be skipped"
exit 0
