#!/usr/bin/env bash
# Train on one Ascend device.
# Usage: bash run_standalone_train_ascend.sh [DATA_PATH] [DEVICE_ID] [CKPT_PATH] [CONFIG_FILE] [-- train.py options]
source "$(dirname "${BASH_SOURCE[0]}")/_common.sh"
run_standalone train Ascend default_config.yaml "$@"
