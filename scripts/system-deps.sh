#!/usr/bin/env bash
# Install the system programs mlserve's demo and tests use, when they are missing.
# As root on Debian we install them with apt-get; otherwise we say what to install.
set -euo pipefail

missing_apt=()
need() { # need BINARY DEBIAN_PACKAGE
  command -v "$1" >/dev/null 2>&1 || missing_apt+=("$2")
}

need prometheus prometheus

if [ ${#missing_apt[@]} -eq 0 ]; then
  exit 0
fi

if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing with apt-get: ${missing_apt[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing_apt[@]}" >/dev/null
  # Debian's package starts a system-wide prometheus on :9090; mlserve runs its own.
  if command -v systemctl >/dev/null 2>&1; then systemctl stop prometheus >/dev/null 2>&1 || true; fi
  pkill -x prometheus >/dev/null 2>&1 || true
else
  echo "mlserve needs these programs: ${missing_apt[*]}" >&2
  echo "install them with: sudo apt-get install ${missing_apt[*]}" >&2
  exit 1
fi
