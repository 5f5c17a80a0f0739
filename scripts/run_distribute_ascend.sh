#!/usr/bin/env bash
# Data-parallel training on the Ascend devices of one server, with an HCCL rank table
# (make one with: python scripts/hccl_tools.py --device_num "[0,8)").
# Usage: bash run_distribute_ascend.sh [RANK_TABLE_FILE] [DATA_PATH] [CKPT_PATH] [CONFIG_FILE] [-- train.py options]
# One process per device in the table, pinned to its share of the CPU cores, each
# with its own folder CKPT_PATH/device<rank>/ holding train.log; rank 0 writes the
# checkpoints and metrics.jsonl to CKPT_PATH. The script waits for all ranks and
# exits non-zero, naming the failed rank's log, if any rank fails.
# Several servers: a merged table (hccl_tools.py --merge) and the same command on every
# server; each starts the devices of its own entry (SERVER_ID, default: this host's
# first address), RANK_SIZE counts every server's devices.
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
SERVER_ID="${SERVER_ID:-$(hostname -I 2>/dev/null | awk '{print $1}')}"
mapfile -t DEVICES < <("$PYTHON" -c '
import json, sys
table = json.load(open(sys.argv[1]))
servers = table["server_list"]
print(sum(len(server["device"]) for server in servers))
if len(servers) > 1:
    servers = [s for s in servers if s["server_id"] == sys.argv[2]]
    if not servers:
        sys.exit(f"no server {sys.argv[2]!r} in the table: set SERVER_ID to this server'"'"'s server_id")
for server in servers:
    for dev in server["device"]:
        print(dev["rank_id"], dev["device_id"])' "$TABLE" "$SERVER_ID") || die "RANK_TABLE_FILE: $TABLE is not a readable rank table for this server"
RANK_SIZE="${DEVICES[0]}"; DEVICES=("${DEVICES[@]:1}")
[[ "${#DEVICES[@]}" -ge 1 ]] || die "RANK_TABLE_FILE: no devices in $TABLE"
export RANK_TABLE_FILE="$TABLE" RANK_SIZE
CORES="$(nproc)"; PER_RANK=$(( CORES / ${#DEVICES[@]} )); [[ $PER_RANK -ge 1 ]] || PER_RANK=1
echo "training on ${#DEVICES[@]} of $RANK_SIZE Ascend devices: table $TABLE, data $DATA, checkpoints $CKPT, config $CFG"
cd "$REPO_ROOT"
PIDS=()
for local in "${!DEVICES[@]}"; do
  read -r rank device <<< "${DEVICES[$local]}"
  dir="$CKPT/device$rank"; mkdir -p "$dir"
  first=$(( local * PER_RANK )); last=$(( first + PER_RANK - 1 ))
  pin=(); command -v taskset >/dev/null && pin=(taskset -c "$first-$last")
  RANK_ID="$rank" DEVICE_ID="$device" "${pin[@]}" "$PYTHON" train.py --config_path "$CFG" \
    --device_target Ascend --data_path "$DATA" --output_path "$CKPT" "${EXTRA_ARGS[@]}" \
    > "$dir/train.log" 2>&1 &
  PIDS+=("$!")
  echo "  rank $rank on device $device (pid $!): log $dir/train.log"
done
# wait for every rank; when one fails, stop the others (they would wait for it in a collective)
declare -A RANK_OF
for i in "${!PIDS[@]}"; do read -r RANK_OF[${PIDS[$i]}] _ <<< "${DEVICES[$i]}"; done
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
