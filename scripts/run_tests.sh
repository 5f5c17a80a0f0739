#!/usr/bin/env bash
# Set up the environment and run the test suite (what CI runs).
# Usage: bash scripts/run_tests.sh [pytest options]
set -euo pipefail
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$REPO_ROOT/scripts/setup_env.sh"
cd "$REPO_ROOT"
export GLOG_v="${GLOG_v:-3}"
exec "$REPO_ROOT/.venv/bin/python" -m pytest -q "$@" tests
