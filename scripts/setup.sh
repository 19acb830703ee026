#!/usr/bin/env bash
# Set up what rtclab needs on a fresh machine: Debian packages (when root), a venv, pip packages.
#   scripts/setup.sh           # runtime only (the demo)
#   scripts/setup.sh --test    # plus everything the test suite needs
set -euo pipefail
cd "$(dirname "$0")/.."
extras=""
apt_packages=()
if [ "${1:-}" = "--test" ]; then
  extras="[test]"
  # Debian packages the real-component tests use: TURN server, headless browser (driven by
  # Playwright with executable_path, never a downloaded browser), namespaces and NAT, Redis.
  apt_packages=(coturn chromium iproute2 nftables iptables redis-server)
fi

missing=()
for pkg in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "installing Debian packages: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "warning: not root, cannot install Debian packages: ${missing[*]}" >&2
  fi
fi

PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -U pip
.venv/bin/python -m pip install -q --disable-pip-version-check -e ".${extras}"
