#!/usr/bin/env bash
# Data-parallel training on the Ascend devices of one server, with an HCCL rank table
# (make one with: python scripts/hccl_tools.py --device_num "[0,8)").
# Usage: bash run_distribute_ascend.sh [RANK_TABLE_FILE] [DATA_PATH] [CKPT_PATH] [CONFIG_FILE] [-- train.py options]
# One process per device in the table, pinned to its share of the CPU cores, each
# with its own folder CKPT_PATH/device<rank>/ holding train.log; rank 0 writes the
# checkpoints and metrics.jsonl to CKPT_PATH. The script waits for all ranks and
# exits non-zero, naming the failed rank's log, if any rank fails.
source "$(dirname "${BASH_SOURCE[0]}")/_common.sh"
split_extra "$@"
set -- "${POSITIONAL[@]}"
[[ $# -ge 3 && $# -le 4 ]] || usage "[RANK_TABLE_FILE] [DATA_PATH] [CKPT_PATH] [CONFIG_FILE]" \
  "RANK_TABLE_FILE  HCCL rank table (scripts/hccl_tools.py)" "$DATA_HELP" \
  "CKPT_PATH    folder for checkpoints, metrics.jsonl and one device<rank>/ log folder per rank" \
  "CONFIG_FILE  config file (default: default_config.yaml)"
TABLE="$(abs_path "$1")"
need_file "$TABLE" RANK_TABLE_FILE
resolve_inputs "$2" "${4:-}" default_config.yaml
CKPT="$(abs_path "$3")"
mapfile -t DEVICES < <("$PYTHON" -c '
import json, sys
table = json.load(open(sys.argv[1]))
for server in table["server_list"]:
    for dev in server["device"]:
        print(dev["rank_id"], dev["device_id"])' "$TABLE") || die "RANK_TABLE_FILE: $TABLE is not a readable rank table"
RANK_SIZE="${#DEVICES[@]}"
[[ "$RANK_SIZE" -ge 1 ]] || die "RANK_TABLE_FILE: no devices in $TABLE"
export RANK_TABLE_FILE="$TABLE" RANK_SIZE
CORES="$(nproc)"; PER_RANK=$(( CORES / RANK_SIZE )); [[ $PER_RANK -ge 1 ]] || PER_RANK=1
echo "training on $RANK_SIZE Ascend devices: table $TABLE, data $DATA, checkpoints $CKPT, config $CFG"
cd "$REPO_ROOT"
PIDS=()
for entry in "${DEVICES[@]}"; do
  read -r rank device <<< "$entry"
  dir="$CKPT/device$rank"; mkdir -p "$dir"
  first=$(( rank * PER_RANK )); last=$(( first + PER_RANK - 1 ))
  pin=(); command -v taskset >/dev/null && pin=(taskset -c "$first-$last")
  RANK_ID="$rank" DEVICE_ID="$device" "${pin[@]}" "$PYTHON" train.py --config_path "$CFG" \
    --device_target Ascend --data_path "$DATA" --output_path "$CKPT" "${EXTRA_ARGS[@]}" \
    > "$dir/train.log" 2>&1 &
  PIDS+=("$!")
  echo "  rank $rank on device $device (pid $!): log $dir/train.log"
done
# wait for every rank; when one fails, stop the others (they would wait for it in a collective)
declare -A RANK_OF
for i in "${!PIDS[@]}"; do RANK_OF[${PIDS[$i]}]=$i; done
failed=0
for _ in "${PIDS[@]}"; do
  finished=""
  if ! wait -n -p finished; then
    [[ -n "$finished" ]] || break
    rank="${RANK_OF[$finished]}"
    echo "error: rank $rank failed; its log: $CKPT/device$rank/train.log" >&2
    failed=1
    kill "${PIDS[@]}" 2>/dev/null || true
  fi
done
exit $failed
