#!/usr/bin/env bash
# Install DistilSelect on a fresh Debian/Ubuntu machine: system packages (requirements-apt.txt),
# a virtual environment in .venv with the pinned Python packages (requirements.txt), and the
# project itself in editable mode (so `tasks`, `corpora`, `selection`, `lobes` and `common` import from anywhere).
set -euo pipefail
cd "$(dirname "$0")"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
$SUDO apt-get update -qq
grep -v '^#' requirements-apt.txt | xargs $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends >/dev/null
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -r requirements.txt
.venv/bin/python -m pip install -q --no-deps -e .
echo "DistilSelect installed in $(pwd)/.venv"
