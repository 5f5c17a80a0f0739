#!/usr/bin/env bash
# Inference of an exported model on Ascend310 with the C++ program in ascend310_infer/:
# preprocess (optional), build, run, postprocess (acc.log).
# Usage: bash run_infer_310.sh [MINDIR_PATH] [DATA_PATH] [NEED_PREPROCESS] [DEVICE_ID] [-- options]
#   MINDIR_PATH      model exported by export.py (its batch size must be --export_batch_size)
#   DATA_PATH        folder with the converted MindRecord splits
#   NEED_PREPROCESS  y: write the .bin inputs with preprocess.py first; n: reuse ./preprocess_Result
#   DEVICE_ID        Ascend device
# Options after "--" go to preprocess.py (e.g. --model NAME --export_batch_size 1024
# --config_path FILE). INFER_DEVICE_TARGET (default Ascend310; Ascend310P, GPU, CPU)
# and MINDSPORE_PATH (the package with include/api and lib) are read from the environment;
# INFER_PROFILE=true also times every kernel (time_Result/kernel_times.txt, shown at the end).
source "$(dirname "${BASH_SOURCE[0]}")/_common.sh"
split_extra "$@"
set -- "${POSITIONAL[@]}"
[[ $# -eq 4 ]] || usage "[MINDIR_PATH] [DATA_PATH] [NEED_PREPROCESS] [DEVICE_ID]" \
  "MINDIR_PATH      model exported by export.py" \
  "DATA_PATH        folder with the converted MindRecord splits (prepare_data.py)" \
  "NEED_PREPROCESS  y or n: write the .bin inputs first" "DEVICE_ID        Ascend device"
MODEL="$(abs_path "$1")"
need_file "$MODEL" MINDIR_PATH
[[ "${MODEL,,}" == *.mindir ]] || die "MINDIR_PATH must be a MindIR export (export.py" \
  "--file_format MINDIR writes <name>.mindir), got '$1'; an ONNX export runs on CPU with run_infer_cpu.sh"
DATA="$(abs_path "$2")"
need_dir "$DATA" DATA_PATH
[[ "$3" == y || "$3" == n ]] || die "NEED_PREPROCESS must be y or n, got '$3'"
need_int "$4" DEVICE_ID
INFER_PROFILE="${INFER_PROFILE:-false}"
need_bool "$INFER_PROFILE" INFER_PROFILE
WORK="$PWD"
PRE="$WORK/preprocess_Result"
if [[ "$3" == y ]]; then
  (cd "$REPO_ROOT" && "$PYTHON" preprocess.py --data_path "$DATA" --infer_data_path "$PRE" \
     "${EXTRA_ARGS[@]}") > "$WORK/preprocess.log" 2>&1 || { tail -n 5 "$WORK/preprocess.log" >&2; die "preprocess failed (preprocess.log)"; }
fi
[[ -f "$PRE/manifest.json" ]] || die "$PRE/manifest.json not found: run with NEED_PREPROCESS=y"
INPUTS="$("$PYTHON" -c 'import json, sys; m = json.load(open(sys.argv[1]))
print(",".join(sys.argv[2] + "/" + i["name"] for i in m["inputs"]))' "$PRE/manifest.json" "$PRE")"
bash "$REPO_ROOT/ascend310_infer/build.sh" "${MINDSPORE_PATH:-}" "${MS_LIB:-mindspore}" > "$WORK/build.log" 2>&1 \
  || { tail -n 20 "$WORK/build.log" >&2; die "building the inference program failed (build.log)"; }
rm -rf "$WORK/result_Files" "$WORK/time_Result"
"$REPO_ROOT/ascend310_infer/out/main" --mindir_path="$MODEL" --input_paths="$INPUTS" \
  --device_target="${INFER_DEVICE_TARGET:-Ascend310}" --device_id="$4" \
  --result_dir="$WORK/result_Files" --time_dir="$WORK/time_Result" --profile="$INFER_PROFILE" \
  > "$WORK/infer.log" 2>&1 \
  || { cat "$WORK/infer.log" >&2; die "inference failed (infer.log)"; }
cat "$WORK/time_Result/test_perform_static.txt"
[[ "$INFER_PROFILE" == false ]] || cat "$WORK/time_Result/kernel_times.txt"
(cd "$WORK" && "$PYTHON" "$REPO_ROOT/postprocess.py" --infer_data_path "$PRE" \
   --result_path "$WORK/result_Files")
