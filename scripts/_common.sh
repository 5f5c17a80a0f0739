#!/usr/bin/env bash
# Shared by the launch scripts: repository root, the project's Python,
# argument checks. Source it; do not run it.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export GLOG_v="${GLOG_v:-3}"

# find_python: PYTHON is the project's environment (made by scripts/setup_env.sh),
# else python3 on PATH.
find_python() {
  if [[ -x "$REPO_ROOT/.venv/bin/python" ]]; then
    PYTHON="$REPO_ROOT/.venv/bin/python"
    export PATH="$REPO_ROOT/.venv/bin:$PATH"
  else
    PYTHON="$(command -v python3)"
  fi
}
find_python

die() { echo "error: $*" >&2; exit 2; }

# -h or --help as the script's first argument (this file is sourced without
# arguments, so $1 is the script's): its header comment, which says what it
# does and how to call it, on stdout; exit 0.
if [[ "${1:-}" == -h || "${1:-}" == --help ]]; then
  sed -n '2,/^[^#]/{/^#/s/^# \{0,1\}//p}' "$0"
  exit 0
fi

# abs_path PATH: absolute form of PATH (which need not exist yet).
abs_path() {
  case "$1" in
    /*) echo "$1" ;;
    *) echo "$PWD/$1" ;;
  esac
}

# The registered models on data set $1 as "a|b" (src/<model>/spec.py), or MODEL
# when they cannot be listed (no Python environment yet).
models_on() {
  "$PYTHON" -c 'import sys; sys.path.insert(0, sys.argv[2]); from src.registry import models_on
print("|".join(models_on(sys.argv[1])) or "MODEL")' "$1" "$REPO_ROOT" 2>/dev/null || echo MODEL
}
# hold_lock FILE: wait for, then hold until the script ends, an exclusive lock
# on FILE, so that two runs of one step (e.g. fetching the SDK) take turns
# instead of writing the same files; without flock(1), no lock.
hold_lock() {
  command -v flock >/dev/null 2>&1 || return 0
  mkdir -p "$(dirname "$1")"
  exec {HELD_LOCK_FD}>"$1"
  flock "$HELD_LOCK_FD"
}
need_dir() { [[ -d "$1" ]] || die "$2: directory '$1' does not exist"; }
need_file() { [[ -f "$1" ]] || die "$2: file '$1' does not exist"; }
need_int() { [[ "$1" =~ ^[0-9]+$ ]] || die "$2 must be a non-negative integer, got '$1'"; }
need_bool() { [[ "$1" == true || "$1" == false ]] || die "$2 must be true or false, got '$1'"; }

# usage "ARGUMENTS" "LINE"...: print the usage to stderr and exit 2.
usage() {
  echo "Usage: bash $(basename "$0") $1" >&2
  shift
  printf '  %s\n' "$@" >&2
  echo "(bash $(basename "$0") --help: what it does, and the environment variables it reads)" >&2
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

# log_header LOG WHAT: a dated line that opens this run's part of LOG (logs are
# appended to, never truncated: a refused re-run keeps the earlier run's log).
log_header() {
  echo "===== $(date '+%Y-%m-%d %H:%M:%S') $2 (pid $$) =====" >> "$1"
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
  log_header "$ckpt/train.log" train.py
  "$PYTHON" train.py --config_path "$CFG" --device_target "$device" --device_id "$2" \
    --data_path "$DATA" --output_path "$ckpt" "${EXTRA_ARGS[@]}" 2>&1 | tee -a "$ckpt/train.log"
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
  log_header "$out/eval.log" eval.py
  "$PYTHON" eval.py --config_path "$CFG" --device_target "$device" --device_id "$3" \
    --data_path "$DATA" --ckpt_file "$ckpt" --output_path "$out" "${EXTRA_ARGS[@]}" \
    2>&1 | tee -a "$out/eval.log"
}

# download URL FILE: fetch URL to FILE via FILE.part, so an interrupted download
# is never taken for a complete one; a run that stops (network, Ctrl-C) keeps the
# part and the next run continues it (HTTP ranges); gzip files are checked.
download() {
  local url="$1" dest="$2" status=0
  if [[ -s "$dest.part" ]]; then
    echo "resuming $url ($(du -h "$dest.part" | cut -f1) already in $dest.part)"
  else
    echo "downloading $url"
  fi
  local tool
  if command -v curl >/dev/null 2>&1; then
    tool=curl
    curl -fL --retry 3 --retry-delay 2 --connect-timeout 20 -C - -s -o "$dest.part" "$url" \
      || status=$?
  elif command -v wget >/dev/null 2>&1; then
    tool=wget
    wget -q -c --timeout=20 --tries=3 -O "$dest.part" "$url" || status=$?
  else
    echo "error: downloading needs curl or wget; install one (apt-get install curl)" >&2
    exit 1
  fi
  if [[ $status -ne 0 ]]; then
    local why="the download failed ($tool exit status $status)"
    case "$tool:$status" in
      curl:5|curl:6|curl:7|curl:28|wget:4)
        why="the network or the server is unreachable (no internet here?)";;
      curl:22|wget:8) why="the server refused the request (HTTP error; is the URL still right?)";;
      curl:33) why="the server cannot resume; delete $dest.part and run again";;
    esac
    echo "error: $url: $why; what arrived is kept in $dest.part and the next run resumes it" >&2
    exit 1
  fi
  if [[ "$dest" == *.gz ]]; then
    gzip -t "$dest.part" 2>/dev/null || {
      echo "error: $url is not a valid gzip file (kept as $dest.part for a look)" >&2; exit 1; }
  fi
  mv "$dest.part" "$dest"
}

EXTRA_ARGS=()

# split_extra ARGS... [-- EXTRA]: sets POSITIONAL and EXTRA_ARGS.
split_extra() {
  POSITIONAL=()
  while [[ $# -gt 0 ]]; do
    if [[ "$1" == "--" ]]; then shift; EXTRA_ARGS=("$@"); break; fi
    POSITIONAL+=("$1"); shift
  done
}

# free_port: an unused TCP port for the msrun scheduler.
free_port() {
  "$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# last_part LOG: the lines of LOG after its last log_header line (this run's).
last_part() {
  [[ -f "$1" ]] || return 0
  tac "$1" | sed '/^===== /q' | tac
}

# report_failed_workers LOG_DIR [MSRUN_LOG] [SCHEDULER_LINES]: name the workers that died or
# raised, with their logs; SCHEDULER_LINES: the lines of LOG_DIR/scheduler.log before this run.
report_failed_workers() {
  local dir="$1" mslog="${2:-$1/msrun.log}" skip="${3:-0}" pid code log rank found=0
  # a worker on another host that died: msrun's scheduler (on the first host) notes
  # "The node: <id> is timed out"; with --node_rank msrun gives worker <index> of a host
  # the node id node_rank * local workers + index, which also names its worker_<id>.log
  if [[ -f "$dir/scheduler.log" ]]; then
    while read -r rank; do
      echo "error: worker_$rank stopped answering (msrun's scheduler: node $rank timed out; it may run on another host); its log: $dir/worker_$rank.log" >&2
      found=1
    done < <(tail -n +"$((skip + 1))" "$dir/scheduler.log" | grep -oE "The node: [0-9]+ is timed out" |
             awk '{print $3}' | sort -un)
  fi
  # msrun notes "Worker process <pid> exit with exception. Error code: <code>";
  # train.py writes "rank <r> of <n>: pid <pid>" to its worker log
  while read -r pid code; do
    log="$(grep -lE "^([0-9:]{8} )?rank [0-9]+ of [0-9]+: pid $pid\$" "$dir"/worker_*.log 2>/dev/null | head -n 1 || true)"
    if [[ -n "$log" ]]; then
      echo "error: $(basename "$log" .log) (pid $pid) exited with code $code; its log: $log" >&2
      grep -m 1 "^error: " "$log" | sed 's/^/    /' >&2 || true
    else
      echo "error: a worker (pid $pid) exited with code $code; logs in $dir" >&2
    fi
    found=1
  done < <(last_part "$mslog" |
           grep -oE "Worker process [0-9]+ exit with exception\. Error code: -?[0-9]+" |
           awk '{print $3, $NF}')
  for log in "$dir"/worker_*.log; do
    [[ -f "$log" ]] || continue
    if grep -q "^Traceback" "$log"; then
      echo "error: $(basename "$log" .log) raised an error; its log: $log" >&2
      grep -E "^[A-Za-z.]*(Error|Exception|Diverged):" "$log" | tail -n 1 | sed 's/^/    /' >&2 || true
      found=1
    fi
  done
  [[ $found -eq 1 ]] || echo "error: the distributed job failed; see the logs in $dir" >&2
}

# distribute_msrun DEVICE DEFAULT_CONFIG WORKER_NUM DATA_PATH CKPT_PATH [CONFIG_FILE]:
# one msrun job of WORKER_NUM processes on this machine, or this host's part of
# a job over NODES hosts (environment: NODES, NODE_RANK, MASTER_ADDR, MASTER_PORT;
# the same command on every host, NODE_RANK 0 on the host at MASTER_ADDR).
distribute_msrun() {
  local device="$1" default_cfg="$2"; shift 2
  local what="WORKER_NUM"; [[ "$device" == GPU ]] && what="DEVICE_NUM"
  [[ $# -ge 3 && $# -le 4 ]] || usage "[$what] [DATA_PATH] [CKPT_PATH] [CONFIG_FILE]" \
    "$what   processes to start (one per device on GPU)" "$DATA_HELP" \
    "CKPT_PATH    folder for checkpoints and metrics.jsonl (rank 0) and the workers' logs (log/)" \
    "CONFIG_FILE  config file (default: $default_cfg)"
  need_int "$1" "$what"
  [[ "$1" -ge 1 ]] || die "$what must be at least 1"
  resolve_inputs "$2" "${4:-}" "$default_cfg"
  local workers="$1" ckpt; ckpt="$(abs_path "$3")"
  mkdir -p "$ckpt/log"
  command -v msrun >/dev/null || die "msrun not found: install the requirements (scripts/setup_env.sh)"
  local nodes="${NODES:-1}" node_rank="${NODE_RANK:-0}" master="${MASTER_ADDR:-127.0.0.1}" port
  need_int "$nodes" NODES
  need_int "$node_rank" NODE_RANK
  [[ "$nodes" -ge 1 && "$node_rank" -lt "$nodes" ]] || die "NODE_RANK ($node_rank) must lie in 0..NODES-1 (NODES $nodes)"
  if [[ "$nodes" -gt 1 ]]; then
    [[ -n "${MASTER_ADDR:-}" && -n "${MASTER_PORT:-}" ]] \
      || die "a job over NODES=$nodes hosts needs MASTER_ADDR and MASTER_PORT: the address and a free port of the host with NODE_RANK 0, the same on every host"
    port="$MASTER_PORT"
    need_int "$port" MASTER_PORT
  else
    port="${MASTER_PORT:-$(free_port)}"
  fi
  local first=$((node_rank * workers))     # this host's first rank (msrun numbers hosts in order)
  local where=""
  [[ "$nodes" -gt 1 ]] && where=" (host $node_rank of $nodes, $((workers * nodes)) in all)"
  echo "training on $workers $device workers$where: data $DATA, checkpoints $ckpt, config $CFG,"        "logs $ckpt/log/worker_<rank>.log"
  cd "$REPO_ROOT"
  local mslog="$ckpt/log/msrun.log"      # one per host: CKPT_PATH may be shared
  [[ "$nodes" -gt 1 ]] && mslog="$ckpt/log/msrun_host$node_rank.log"
  log_header "$mslog" msrun
  local sched_lines=0
  [[ -f "$ckpt/log/scheduler.log" ]] && sched_lines="$(wc -l < "$ckpt/log/scheduler.log")"
  # msrun starts "python" from PATH: _common.sh put the project's environment first
  msrun --worker_num="$((workers * nodes))" --local_worker_num="$workers" --master_addr="$master" \
    --master_port="$port" --node_rank="$node_rank" \
    --log_dir="$ckpt/log" --join=True --cluster_time_out="${CLUSTER_TIME_OUT:-600}" \
    train.py --config_path "$CFG" --device_target "$device" --data_path "$DATA" \
    --output_path "$ckpt" "${EXTRA_ARGS[@]}" >> "$mslog" 2>&1 &
  local runner=$! status=0
  # rank 0's progress on the console while the job runs (every rank's log stays in log/)
  tail -F -n 0 --pid="$runner" "$ckpt/log/worker_$first.log" 2>/dev/null \
    | grep --line-buffered -v '^\[' | sed -u "s/^/rank $first: /" || true
  wait "$runner" || status=$?
  if [[ $status -ne 0 ]]; then
    report_failed_workers "$ckpt/log" "$mslog" "$sched_lines"
    exit 1
  fi
}


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
