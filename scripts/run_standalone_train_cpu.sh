#!/usr/bin/env bash
# Train on one CPU device.
# Usage: bash run_standalone_train_cpu.sh [DATA_PATH] [DEVICE_ID] [CKPT_PATH] [CONFIG_FILE] [-- train.py options]
source "$(dirname "${BASH_SOURCE[0]}")/_common.sh"
run_standalone train CPU default_config_cpu.yaml "$@"
