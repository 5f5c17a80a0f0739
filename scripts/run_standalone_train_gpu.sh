#!/usr/bin/env bash
# Train on one GPU device.
# Usage: bash run_standalone_train_gpu.sh [DATA_PATH] [DEVICE_ID] [CKPT_PATH] [CONFIG_FILE] [-- train.py options]
source "$(dirname "${BASH_SOURCE[0]}")/_common.sh"
run_standalone train GPU default_config_gpu.yaml "$@"
