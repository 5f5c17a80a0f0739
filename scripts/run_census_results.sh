#!/usr/bin/env bash
# Real-data results on Census-Income, as docs/results.md reports them: convert
# with the CPU config, fit the classical baselines, train and evaluate every
# model on Census-Income with each seed, and write one mean +- std table per
# model.
# Usage: bash scripts/run_census_results.sh RAW_DIR OUT_DIR [SEEDS] [-- train.py options]
#   RAW_DIR: census-income.data(.gz) and census-income.test(.gz): UCI's files,
#            or the pair python -m src.data.census_split makes from one file
#   OUT_DIR: gets mindrecord/, baselines.json, runs/<model>_s<seed>/, results_<model>.md
#   SEEDS:   comma-separated training seeds (default 1,2,3)
# Environment: CONFIG (default default_config_cpu.yaml); MODELS, comma-separated
#   Census-Income models to run (default all); CONVERT_ARGS, extra
#   prepare_data.py options, e.g. "--numeric_buckets 0" (the train.py options
#   after "--" go to train.py and eval.py); REFIT=1: after each seed's run,
#   train it again on train and val together for the epochs its best avg_auc
#   took (train_splits train,val), evaluate that run's last checkpoint too, and
#   write those tables as results_<model>_refit.md; the baselines are fitted
#   again the same way (refit_test_auc in baselines.json)
source "$(dirname "${BASH_SOURCE[0]}")/_common.sh"
[[ $# -ge 2 ]] || usage "RAW_DIR OUT_DIR [SEEDS] [-- train.py options]" \
  "Converts RAW_DIR with default_config_cpu.yaml, then trains and evaluates every" \
  "Census-Income model ($(models_on census)) once per seed; tables in OUT_DIR."
RAW_DIR="$(abs_path "$1")"; OUT="$(abs_path "$2")"; shift 2
SEEDS="1,2,3"
if [[ $# -gt 0 && "$1" != "--" ]]; then SEEDS="$1"; shift; fi
[[ $# -gt 0 && "$1" == "--" ]] && shift
[[ "$SEEDS" =~ ^[0-9]+(,[0-9]+)*$ ]] || die "SEEDS must be comma-separated integers, got '$SEEDS'"
REFIT="${REFIT:-0}"
[[ "$REFIT" == 0 || "$REFIT" == 1 ]] || die "REFIT must be 0 or 1, got '$REFIT'"
need_dir "$RAW_DIR" RAW_DIR
CONFIG="$(abs_path "${CONFIG:-$REPO_ROOT/default_config_cpu.yaml}")"
need_file "$CONFIG" CONFIG
ALL="$(models_on census)"
[[ "$ALL" != MODEL ]] || die "cannot list the models: set up the environment first (scripts/setup_env.sh)"
MODELS="${MODELS:-${ALL//|/,}}"
for model in ${MODELS//,/ }; do
  [[ "|$ALL|" == *"|$model|"* ]] || die "MODELS: '$model' is not a Census-Income model (${ALL//|/, })"
done
[[ -n "${MODELS//,/}" ]] || die "MODELS names no model"
FIRST="${ALL%%|*}"
mkdir -p "$OUT"
cd "$REPO_ROOT"

"$PYTHON" prepare_data.py --config_path "$CONFIG" --model "$FIRST" \
  --raw_data_path "$RAW_DIR" --data_path "$OUT/mindrecord" ${CONVERT_ARGS:-}
REFIT_BASELINES=(); [[ "$REFIT" == 0 ]] || REFIT_BASELINES=(--refit)
"$PYTHON" -m src.baselines --dataset census --data_path "$OUT/mindrecord" \
  --output "$OUT/baselines.json" "${REFIT_BASELINES[@]}"
BEST_EPOCH='import sys; from src.runs import Run; print(Run(sys.argv[1]).best_epoch("avg_auc"))'
for model in ${MODELS//,/ }; do
  runs=(); refits=()
  for seed in ${SEEDS//,/ }; do
    run="$OUT/runs/${model}_s${seed}"
    "$PYTHON" train.py --config_path "$CONFIG" --model "$model" --seed "$seed" \
      --data_path "$OUT/mindrecord" --output_path "$run" --replace_run True "$@"
    "$PYTHON" eval.py --config_path "$CONFIG" --model "$model" --data_path "$OUT/mindrecord" \
      --ckpt_file "$run/best_avg_auc.ckpt" "$@"
    runs+=("$run")
    [[ "$REFIT" == 1 ]] || continue
    epochs="$("$PYTHON" -c "$BEST_EPOCH" "$run")"
    "$PYTHON" train.py --config_path "$CONFIG" --model "$model" --seed "$seed" \
      --data_path "$OUT/mindrecord" --output_path "${run}_refit" --replace_run True "$@" \
      --train_splits train,val --epoch_size "$epochs"
    last=("${run}_refit/${model}-${epochs}_"*.ckpt)
    [[ -f "${last[0]}" ]] || die "${run}_refit holds no checkpoint of epoch $epochs"
    "$PYTHON" eval.py --config_path "$CONFIG" --model "$model" --data_path "$OUT/mindrecord" \
      --ckpt_file "${last[0]}" "$@"
    refits+=("${run}_refit")
  done
  "$PYTHON" report.py "${runs[@]}" --out "$OUT/results_${model}.md"
  [[ "$REFIT" == 0 ]] || "$PYTHON" report.py "${refits[@]}" --out "$OUT/results_${model}_refit.md"
done
echo "tables: $OUT/results_*.md; baselines: $OUT/baselines.json"
