"""Process set-up shared by every entry point: device, graph mode, seeds."""
import random

import numpy as np

import mindspore as ms

from src.engine.distributed import device_id_from_env, launched_distributed


def setup_runtime(cfg):
    """GRAPH_MODE on ``cfg.device_target`` / ``cfg.device_id``, every seed from
    ``cfg.seed`` (Python, NumPy, MindSpore): the same config and seed give the
    same result on CPU."""
    mode = ms.GRAPH_MODE if str(cfg.get("mode", "GRAPH")).upper() == "GRAPH" else ms.PYNATIVE_MODE
    ms.set_context(mode=mode)
    device_id = cfg.get("device_id")
    if launched_distributed():        # each rank's launcher assigns its device
        device_id = device_id_from_env(device_id)
    if cfg.device_target == "CPU" or device_id is None:
        ms.set_device(cfg.device_target)
    else:
        ms.set_device(cfg.device_target, int(device_id))
    seed = int(cfg.seed)
    random.seed(seed)
    np.random.seed(seed)
    ms.set_seed(seed)
    if cfg.get("deterministic"):
        ms.set_deterministic(True)
