#!/usr/bin/env bash
# Set up the environment and run the test suite (what CI runs), the test
# files shared among worker processes (pytest-xdist): one per core, at most 4
# (TEST_WORKERS=N sets N; 0 or 1 runs everything in this process). Most tests
# spend their time in one core's worth of Python and graph compiles.
# Usage: bash scripts/run_tests.sh [pytest options]
set -euo pipefail
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$REPO_ROOT/scripts/setup_env.sh"
cd "$REPO_ROOT"
export GLOG_v="${GLOG_v:-3}"
WORKERS="${TEST_WORKERS:-$(nproc 2>/dev/null || echo 1)}"
[[ "$WORKERS" =~ ^[0-9]+$ ]] || { echo "error: TEST_WORKERS must be a number, got '$WORKERS'" >&2; exit 2; }
if [[ -z "${TEST_WORKERS:-}" && "$WORKERS" -gt 4 ]]; then WORKERS=4; fi
PARALLEL=()
if [[ "$WORKERS" -ge 2 ]]; then PARALLEL=(-n "$WORKERS" --dist loadfile); fi
exec "$REPO_ROOT/.venv/bin/python" -m pytest -q "${PARALLEL[@]}" "$@" tests
