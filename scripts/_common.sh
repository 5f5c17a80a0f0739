#!/usr/bin/env bash
# Shared by the launch scripts: repository root, the project's Python,
# argument checks. Source it; do not run it.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export GLOG_v="${GLOG_v:-3}"

# The project's environment (made by scripts/setup_env.sh), else python3 on PATH.
if [[ -x "$REPO_ROOT/.venv/bin/python" ]]; then
  PYTHON="$REPO_ROOT/.venv/bin/python"
  export PATH="$REPO_ROOT/.venv/bin:$PATH"
else
  PYTHON="$(command -v python3)"
fi

die() { echo "error: $*" >&2; exit 2; }

# abs_path PATH: absolute form of PATH (which need not exist yet).
abs_path() {
  case "$1" in
    /*) echo "$1" ;;
    *) echo "$PWD/$1" ;;
  esac
}

need_dir() { [[ -d "$1" ]] || die "$2: directory '$1' does not exist"; }
need_file() { [[ -f "$1" ]] || die "$2: file '$1' does not exist"; }
need_int() { [[ "$1" =~ ^[0-9]+$ ]] || die "$2 must be a non-negative integer, got '$1'"; }

# usage "ARGUMENTS" "LINE"...: print the usage to stderr and exit 2.
usage() {
  echo "Usage: bash $(basename "$0") $1" >&2
  shift
  printf '  %s\n' "$@" >&2
  exit 2
}

DATA_HELP="DATA_PATH    folder with the converted MindRecord splits (prepare_data.py)"
DEVICE_HELP="DEVICE_ID    device number (ignored on CPU)"

# resolve_inputs DATA_PATH CONFIG_FILE_OR_EMPTY DEFAULT_CONFIG: sets DATA and CFG to
# checked absolute paths (before the cd into the repository).
resolve_inputs() {
  DATA="$(abs_path "$1")"
  CFG="$(abs_path "${2:-$REPO_ROOT/$3}")"
  need_dir "$DATA" DATA_PATH
  need_file "$CFG" CONFIG_FILE
}

# standalone_train DEVICE DEFAULT_CONFIG DATA_PATH DEVICE_ID CKPT_PATH [CONFIG_FILE]
standalone_train() {
  local device="$1" default_cfg="$2"; shift 2
  [[ $# -ge 3 && $# -le 4 ]] || usage "[DATA_PATH] [DEVICE_ID] [CKPT_PATH] [CONFIG_FILE]" \
    "$DATA_HELP" "$DEVICE_HELP" "CKPT_PATH    folder for checkpoints, metrics.jsonl and train.log" \
    "CONFIG_FILE  config file (default: $default_cfg)"
  resolve_inputs "$1" "${4:-}" "$default_cfg"
  need_int "$2" DEVICE_ID
  local ckpt; ckpt="$(abs_path "$3")"
  mkdir -p "$ckpt"
  echo "training on $device: data $DATA, checkpoints $ckpt, config $CFG (log: $ckpt/train.log)"
  cd "$REPO_ROOT"
  "$PYTHON" train.py --config_path "$CFG" --device_target "$device" --device_id "$2" \
    --data_path "$DATA" --output_path "$ckpt" "${EXTRA_ARGS[@]}" 2>&1 | tee "$ckpt/train.log"
}

# standalone_eval DEVICE DEFAULT_CONFIG DATA_PATH CKPT_FILE DEVICE_ID [CONFIG_FILE]
standalone_eval() {
  local device="$1" default_cfg="$2"; shift 2
  [[ $# -ge 3 && $# -le 4 ]] || usage "[DATA_PATH] [CKPT_PATH] [DEVICE_ID] [CONFIG_FILE]" \
    "$DATA_HELP" "CKPT_PATH    checkpoint file to evaluate, e.g. best_avg_auc.ckpt" "$DEVICE_HELP" \
    "CONFIG_FILE  config file (default: $default_cfg)"
  resolve_inputs "$1" "${4:-}" "$default_cfg"
  local ckpt; ckpt="$(abs_path "$2")"
  need_file "$ckpt" CKPT_PATH
  need_int "$3" DEVICE_ID
  local out; out="$(dirname "$ckpt")"
  cd "$REPO_ROOT"
  "$PYTHON" eval.py --config_path "$CFG" --device_target "$device" --device_id "$3" \
    --data_path "$DATA" --ckpt_file "$ckpt" --output_path "$out" "${EXTRA_ARGS[@]}" \
    2>&1 | tee "$out/eval.log"
}

EXTRA_ARGS=()

# run_standalone train|eval DEVICE DEFAULT_CONFIG ARGS... [-- EXTRA PYTHON OPTIONS]
run_standalone() {
  local what="$1" device="$2" default_cfg="$3"; shift 3
  local args=()
  while [[ $# -gt 0 ]]; do
    if [[ "$1" == "--" ]]; then shift; EXTRA_ARGS=("$@"); break; fi
    args+=("$1"); shift
  done
  "standalone_$what" "$device" "$default_cfg" "${args[@]}"
}
