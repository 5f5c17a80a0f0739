#!/usr/bin/env bash
# Evaluate a checkpoint on one Ascend device (test split unless --eval_split says otherwise).
# Usage: bash run_standalone_eval_ascend.sh [DATA_PATH] [CKPT_PATH] [DEVICE_ID] [CONFIG_FILE] [-- eval.py options]
source "$(dirname "${BASH_SOURCE[0]}")/_common.sh"
run_standalone eval Ascend default_config.yaml "$@"
