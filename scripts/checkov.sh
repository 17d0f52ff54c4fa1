#!/usr/bin/env bash
# Runs checkov from its own virtual environment (.venv-checkov/), created on first use.
# checkov pins heavy dependencies that must not enter mlserve's .venv.
# Usage: scripts/checkov.sh [checkov args...]   (no args: only make sure it is installed)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${MLSERVE_CHECKOV_VENV:-$ROOT/.venv-checkov}"
VERSION="${MLSERVE_CHECKOV_VERSION:-3.3.30}"
PYTHON="${PYTHON:-python3}"
if [ ! -x "$VENV/bin/checkov" ] || [ "$(cat "$VENV/.checkov-version" 2>/dev/null)" != "$VERSION" ]; then
  "$PYTHON" -m venv "$VENV" >&2
  "$VENV/bin/python" -m pip install --quiet --upgrade pip >&2
  "$VENV/bin/python" -m pip install --quiet "checkov==$VERSION" >&2
  echo "$VERSION" > "$VENV/.checkov-version"
fi
if [ "$#" -gt 0 ]; then
  exec "$VENV/bin/checkov" "$@"
fi
