#!/usr/bin/env bash
# Data-parallel training on DEVICE_NUM GPUs of this machine (msrun, NCCL).
# Usage: bash run_distribute_gpu.sh [DEVICE_NUM] [DATA_PATH] [CKPT_PATH] [CONFIG_FILE] [-- train.py options]
source "$(dirname "${BASH_SOURCE[0]}")/_common.sh"
split_extra "$@"
distribute_msrun GPU default_config_gpu.yaml "${POSITIONAL[@]}"
