#!/usr/bin/env bash
# The whole job for one model on a small built-in default: set up the
# environment, generate its data set's raw files in the real format, convert
# them to MindRecord, train on CPU, evaluate the best checkpoint on the test
# split, export it, run the C++ inference program on it (MindSpore Lite on
# CPU) and draw the run's curves. Sizes and settings: the model's spec
# (src/<model>/spec.py, quick_start).
# Usage: bash scripts/quickstart.sh [MODEL] [WORK_DIR]
#   MODEL     a registered model (default: default_config.yaml's)
#   WORK_DIR  default ./quickstart/<MODEL> (a relative path is taken from the repository)
# QUICKSTART_SMALL=1 runs the model's contract trial instead (smaller; what CI runs);
# QUICKSTART_CPP=0 skips the C++ inference (it fetches the Lite SDK on first use).
set -euo pipefail
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$REPO_ROOT/scripts/_common.sh"       # answers --help before the set-up
bash "$REPO_ROOT/scripts/setup_env.sh"
find_python                                  # the environment just made
cd "$REPO_ROOT"
MODELS="$("$PYTHON" -c 'from src.registry import model_names; print(" ".join(model_names()))')"
if [[ $# -ge 1 && " $MODELS " == *" $1 "* ]]; then
  CHOSEN="$1"; shift
elif [[ $# -ge 2 ]]; then
  die "MODEL must be one of: $MODELS (got '$1')"
elif [[ "${1:-}" == -* ]]; then
  die "unknown option '$1' (bash scripts/quickstart.sh --help: the usage)"
elif [[ $# -eq 1 && "$1" != */* && ! -d "$1" ]]; then
  # a misspelt model must not run the default model into a folder of that name
  die "'$1' is neither a model ($MODELS) nor an existing folder; for a new WORK_DIR of the default model write ./$1 (--help: the usage)"
else
  CHOSEN="$("$PYTHON" -c 'from src.config import parse_config; print(parse_config([]).model)')"
fi
[[ $# -le 1 ]] || usage "[MODEL] [WORK_DIR]" "MODEL     one of: $MODELS" "WORK_DIR  default ./quickstart/<MODEL>"
SMALL=()
[[ "${QUICKSTART_SMALL:-0}" == 1 ]] && SMALL=(--small)
eval "$("$PYTHON" -m src.quickstart plan "$CHOSEN" "${SMALL[@]}")"
WORK="$(abs_path "${1:-quickstart/$MODEL}")"
OUT="$WORK/output"
CPU=(--config_path default_config_cpu.yaml --model "$MODEL")
STEPS=6
[[ "${QUICKSTART_CPP:-1}" == 0 ]] && STEPS=5

echo "== 1/$STEPS generating $DATASET raw files (real format) in $WORK/raw"
"$PYTHON" -m src.quickstart data "$MODEL" "$WORK/raw" "${SMALL[@]}"
echo "== 2/$STEPS converting to MindRecord in $WORK/mindrecord"
"$PYTHON" prepare_data.py "${CPU[@]}" --raw_data_path "$WORK/raw" --data_path "$WORK/mindrecord" \
  "${PREPARE_ARGS[@]}"
echo "== 3/$STEPS training $TITLE on CPU"
# a run of an earlier quick start moves to $OUT/replaced-<time>/
"$PYTHON" train.py "${CPU[@]}" --data_path "$WORK/mindrecord" --output_path "$OUT" \
  "${TRAIN_ARGS[@]}" --replace_run True
CKPT="$OUT/best_$MONITOR.ckpt"
echo "== 4/$STEPS evaluating the best checkpoint on the held-out test split"
"$PYTHON" eval.py "${CPU[@]}" --data_path "$WORK/mindrecord" --output_path "$OUT" --ckpt_file "$CKPT" \
  | tee "$WORK/eval.log"
echo "== 5/$STEPS drawing the curves (loss and learning rate per step, validation metrics per epoch)"
"$PYTHON" plot.py "$OUT"
if [[ $STEPS == 6 ]]; then
  echo "== 6/6 exporting to ONNX and running the C++ inference program on CPU (MindSpore Lite)"
  mkdir -p "$WORK/infer"
  "$PYTHON" export.py "${CPU[@]}" --data_path "$WORK/mindrecord" --ckpt_file "$CKPT" \
    --file_format ONNX --export_batch_size 64 --file_name "$WORK/infer/$MODEL"
  (cd "$WORK/infer" && bash "$REPO_ROOT/scripts/run_infer_cpu.sh" "$MODEL.onnx" "$WORK/mindrecord" y \
     -- --model "$MODEL" --export_batch_size 64)
fi
echo "done: $TITLE on generated $DATASET data. Checkpoints, metrics.jsonl, steps.jsonl and"
echo "  curves.png in $OUT; the C++ program's inputs, results and acc.log in $WORK/infer"
grep "result (" "$WORK/eval.log"
