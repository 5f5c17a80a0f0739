#!/usr/bin/env bash
# The C++ inference path on CPU with MindSpore Lite: fetch the Lite SDK (cached),
# build ascend310_infer/ against it, convert the ONNX export to a MindIR that Lite
# loads, preprocess (optional), run, postprocess (acc.log in the current folder).
# Usage: bash run_infer_cpu.sh [ONNX_PATH] [DATA_PATH] [NEED_PREPROCESS] [-- preprocess.py options]
#   ONNX_PATH        model exported by export.py --file_format ONNX
#   DATA_PATH        folder with the converted MindRecord splits
#   NEED_PREPROCESS  y: write the .bin inputs with preprocess.py first; n: reuse ./preprocess_Result
# Options after "--" go to preprocess.py and must give the export's batch size, e.g.
#   -- --model NAME --export_batch_size 1024 --config_path default_config_cpu.yaml
# LITE_SDK_DIR sets the SDK cache (default: .cache/mindspore-lite-2.0.0 in the repository).
# INFER_TIMEOUT stops the inference program after that many seconds (default 3600; 0: never).
# INFER_PROFILE=true also times every kernel: time_Result/kernel_times.txt, shown at the end.
source "$(dirname "${BASH_SOURCE[0]}")/_common.sh"
split_extra "$@"
set -- "${POSITIONAL[@]}"
[[ $# -eq 3 ]] || usage "[ONNX_PATH] [DATA_PATH] [NEED_PREPROCESS]" \
  "ONNX_PATH        model exported by export.py --file_format ONNX" \
  "DATA_PATH        folder with the converted MindRecord splits (prepare_data.py)" \
  "NEED_PREPROCESS  y or n: write the .bin inputs first"
ONNX="$(abs_path "$1")"
need_file "$ONNX" ONNX_PATH
[[ "${ONNX,,}" == *.onnx ]] || die "ONNX_PATH must be an ONNX export (export.py --file_format ONNX" \
  "writes <name>.onnx), got '$1'; a MINDIR export runs on Ascend with run_infer_310.sh"
DATA="$(abs_path "$2")"
need_dir "$DATA" DATA_PATH
[[ "$3" == y || "$3" == n ]] || die "NEED_PREPROCESS must be y or n, got '$3'"
INFER_TIMEOUT="${INFER_TIMEOUT:-3600}"
need_int "$INFER_TIMEOUT" INFER_TIMEOUT
INFER_PROFILE="${INFER_PROFILE:-false}"
need_bool "$INFER_PROFILE" INFER_PROFILE
WORK="$PWD"
PRE="$WORK/preprocess_Result"
if [[ "$3" == y ]]; then
  (cd "$REPO_ROOT" && "$PYTHON" preprocess.py --config_path default_config_cpu.yaml --data_path "$DATA" \
     --infer_data_path "$PRE" "${EXTRA_ARGS[@]}") > "$WORK/preprocess.log" 2>&1 \
    || { tail -n 5 "$WORK/preprocess.log" >&2; die "preprocess failed (preprocess.log)"; }
fi
[[ -f "$PRE/manifest.json" ]] || die "$PRE/manifest.json not found: run with NEED_PREPROCESS=y"
SDK="$(bash "$REPO_ROOT/scripts/fetch_lite_sdk.sh")" || die "could not fetch the MindSpore Lite SDK"
bash "$REPO_ROOT/ascend310_infer/build.sh" "$SDK" mindspore-extendrt_python > "$WORK/build.log" 2>&1 \
  || { tail -n 20 "$WORK/build.log" >&2; die "building the inference program failed (build.log)"; }
OUT="$REPO_ROOT/ascend310_infer/out"
MODEL="$WORK/$(basename "${ONNX%.onnx}")_lite"
"$OUT/convert_onnx" "$ONNX" "$MODEL" > "$WORK/convert.log" 2>&1 \
  || { tail -n 20 "$WORK/convert.log" >&2; die "converting $ONNX failed (convert.log)"; }
INPUTS="$("$PYTHON" -c 'import json, sys; m = json.load(open(sys.argv[1]))
print(",".join(sys.argv[2] + "/" + i["name"] for i in m["inputs"]))' "$PRE/manifest.json" "$PRE")"
rm -rf "$WORK/result_Files" "$WORK/time_Result"
status=0
timeout "$INFER_TIMEOUT" "$OUT/main" --mindir_path="$MODEL.mindir" --input_paths="$INPUTS" \
  --device_target=CPU --result_dir="$WORK/result_Files" --time_dir="$WORK/time_Result" \
  --profile="$INFER_PROFILE" \
  > "$WORK/infer.log" 2>&1 || status=$?
[[ $status -ne 124 ]] || die "inference did not finish within INFER_TIMEOUT=$INFER_TIMEOUT s (infer.log)"
[[ $status -eq 0 ]] || { cat "$WORK/infer.log" >&2; die "inference failed (infer.log)"; }
cat "$WORK/time_Result/test_perform_static.txt"
[[ "$INFER_PROFILE" == false ]] || cat "$WORK/time_Result/kernel_times.txt"
(cd "$WORK" && "$PYTHON" "$REPO_ROOT/postprocess.py" --infer_data_path "$PRE" \
   --result_path "$WORK/result_Files")
