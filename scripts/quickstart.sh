#!/usr/bin/env bash
# The main job on a small built-in default: set up the environment, generate
# Census-Income files in the real raw format, convert them to MindRecord,
# train MMoE on CPU, evaluate the best checkpoint on the test split, print
# the per-task AUCs and draw the run's curves.
# Usage: bash scripts/quickstart.sh [WORK_DIR]   (default: ./quickstart)
set -euo pipefail
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$REPO_ROOT/scripts/setup_env.sh"
source "$REPO_ROOT/scripts/_common.sh"
WORK="$(abs_path "${1:-quickstart}")"
cd "$REPO_ROOT"

echo "== 1/5 generating synthetic Census-Income raw files in $WORK/raw"
"$PYTHON" -m src.synth.census --output_dir "$WORK/raw" --train_rows 40000 --test_rows 20000 --seed 7
echo "== 2/5 converting to MindRecord in $WORK/mindrecord"
"$PYTHON" prepare_data.py --config_path default_config_cpu.yaml \
  --raw_data_path "$WORK/raw" --data_path "$WORK/mindrecord"
echo "== 3/5 training MMoE on CPU"
# a run of an earlier quick start moves to $WORK/output/replaced-<time>/
"$PYTHON" train.py --config_path default_config_cpu.yaml --data_path "$WORK/mindrecord" \
  --output_path "$WORK/output" --epoch_size 4 --batch_size 256 --learning_rate 0.005 \
  --warmup_epochs 1 --log_every_steps 50 --replace_run True
echo "== 4/5 evaluating the best checkpoint on the held-out test split"
"$PYTHON" eval.py --config_path default_config_cpu.yaml --data_path "$WORK/mindrecord" \
  --output_path "$WORK/output" --ckpt_file "$WORK/output/best_avg_auc.ckpt"
echo "== 5/5 drawing the curves (loss and learning rate per step, validation metrics per epoch)"
"$PYTHON" plot.py "$WORK/output"
echo "done: per-task AUCs above are on the test split; checkpoints, metrics.jsonl, steps.jsonl" \
     "and curves.png in $WORK/output"
