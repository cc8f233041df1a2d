#!/usr/bin/env bash
# Installs the Debian packages ffcv compiles against, only when pkg-config cannot find them.
set -euo pipefail
if pkg-config --exists opencv4 libturbojpeg 2>/dev/null; then
  exit 0
fi
echo "curate: installing build dependencies (build-essential pkg-config libopencv-dev libturbojpeg0-dev)"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null; then SUDO=sudo; else
    echo "error: need root or sudo to apt-get install build-essential pkg-config libopencv-dev libturbojpeg0-dev" >&2
    exit 2
  fi
fi
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq build-essential pkg-config libopencv-dev libturbojpeg0-dev >/dev/null
