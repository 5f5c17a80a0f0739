#!/usr/bin/env bash
# Create the project's virtual environment (.venv) with Python 3.11 and
# install requirements.txt into it. Re-running is cheap: the install is
# skipped while requirements.txt is unchanged.
# Usage: bash scripts/setup_env.sh
set -euo pipefail
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$REPO_ROOT/.venv"

pick_python() {
  for candidate in python3.11 python3; do
    if command -v "$candidate" >/dev/null 2>&1 &&
       "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
      echo "$candidate"; return 0
    fi
  done
  return 1
}

if [[ ! -x "$VENV/bin/python" ]]; then
  PY="$(pick_python)" || { echo "error: Python 3.11 is required (mindspore 2.10.0 wheels); install it first" >&2; exit 2; }
  echo "creating $VENV with $("$PY" --version)"
  "$PY" -m venv "$VENV"
fi

stamp="$VENV/.requirements.sha256"
want="$(sha256sum "$REPO_ROOT/requirements.txt" | cut -d' ' -f1)"
if [[ ! -f "$stamp" || "$(cat "$stamp")" != "$want" ]]; then
  echo "installing requirements into $VENV (first time: a few minutes)"
  "$VENV/bin/python" -m pip install --quiet --upgrade pip
  "$VENV/bin/python" -m pip install --quiet -r "$REPO_ROOT/requirements.txt"
  echo "$want" > "$stamp"
fi
"$VENV/bin/python" -c 'import mindspore, numpy; print(f"environment ready: mindspore {mindspore.__version__}, numpy {numpy.__version__}")'
