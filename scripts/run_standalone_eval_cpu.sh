#!/usr/bin/env bash
# Evaluate a checkpoint on one CPU device (test split unless --eval_split says otherwise).
# Usage: bash run_standalone_eval_cpu.sh [DATA_PATH] [CKPT_PATH] [DEVICE_ID] [CONFIG_FILE] [-- eval.py options]
source "$(dirname "${BASH_SOURCE[0]}")/_common.sh"
run_standalone eval CPU default_config_cpu.yaml "$@"
