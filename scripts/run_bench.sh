#!/usr/bin/env bash
# Run the benchmark suite (bench/): this project against its PyTorch peer, side
# by side; writes docs/benchmarks.md and docs/benchmarks.json (a partial run:
# .cache/bench/partial/).
# Usage: bash scripts/run_bench.sh [bench.run options]   (--help lists them)
# Installs bench/requirements.txt (the peer's PyTorch, CPU build) into .venv
# first, unless --sides ours is given.
set -euo pipefail
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$REPO_ROOT/scripts/setup_env.sh"
PYTHON="$REPO_ROOT/.venv/bin/python"
if [[ " $* " != *" --sides ours "* ]] && ! "$PYTHON" -c 'import torch' 2>/dev/null; then
  echo "installing the peer's requirements (bench/requirements.txt) into .venv"
  "$PYTHON" -m pip install --quiet -r "$REPO_ROOT/bench/requirements.txt" \
    --extra-index-url https://download.pytorch.org/whl/cpu
fi
cd "$REPO_ROOT"
export GLOG_v="${GLOG_v:-3}"
exec "$PYTHON" -m bench.run "$@"
