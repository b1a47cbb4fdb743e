#!/usr/bin/env bash
# The example backend in Python (examples/backend-python): makes its venv
# (examples/backend-python/.venv, gitignored) with the pinned requirements,
# then runs its end-to-end test: app.py against target/debug/herald (or
# HERALD_BIN) and the official socketcluster-client from tests/node (run
# `npm ci` there first; scripts/test.sh does).
set -euo pipefail
cd "$(dirname "$0")/.."

example=examples/backend-python
if [ ! -x "$example/.venv/bin/python" ]; then
  if ! python3 -m venv "$example/.venv"; then
    # Debian's python3 makes venvs only with python3-venv.
    rm -rf "$example/.venv"
    echo "installing python3-venv (apt)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q --no-install-recommends python3-venv
    python3 -m venv "$example/.venv"
  fi
fi
"$example/.venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$example/requirements.txt"
node --test --test-concurrency=1 "$example/test/"
