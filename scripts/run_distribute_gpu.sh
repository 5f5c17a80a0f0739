#!/usr/bin/env bash
# Data-parallel training on DEVICE_NUM GPUs of this machine (msrun, NCCL).
# Usage: bash run_distribute_gpu.sh [DEVICE_NUM] [DATA_PATH] [CKPT_PATH] [CONFIG_FILE] [-- train.py options]
# Several hosts: run the same command on each host with NODES (host count), NODE_RANK
# (0..NODES-1; 0 on the host at MASTER_ADDR), MASTER_ADDR and MASTER_PORT set;
# WORKER_NUM is then the processes of each host. CKPT_PATH must be a folder every
# host sees when an embedding table is sharded (each rank writes its shard there).
source "$(dirname "${BASH_SOURCE[0]}")/_common.sh"
split_extra "$@"
distribute_msrun GPU default_config_gpu.yaml "${POSITIONAL[@]}"
