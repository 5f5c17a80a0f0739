#!/usr/bin/env bash
# Data-parallel training with WORKER_NUM processes on this machine's CPU (msrun, mccl).
# Usage: bash run_distribute_cpu.sh [WORKER_NUM] [DATA_PATH] [CKPT_PATH] [CONFIG_FILE] [-- train.py options]
source "$(dirname "${BASH_SOURCE[0]}")/_common.sh"
split_extra "$@"
distribute_msrun CPU default_config_cpu.yaml "${POSITIONAL[@]}"
