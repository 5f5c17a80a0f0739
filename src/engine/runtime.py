"""Process set-up shared by every entry point: device, graph mode, seeds, CPU threads."""
import os
import random

import numpy as np

import mindspore as ms

from src.data.reader import quick_thread_handoff
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
    check_device(cfg.device_target)
    if cfg.device_target == "CPU" or device_id is None:
        ms.set_device(cfg.device_target)
    else:
        ms.set_device(cfg.device_target, int(device_id))
    if cfg.device_target == "CPU":
        _set_cpu_threads(cpu_threads(cfg.get("cpu_threads") or 0))
    parameter_copies(cfg.get("parameter_copies", "default"))
    quick_thread_handoff()
    seed = int(cfg.seed)
    random.seed(seed)
    np.random.seed(seed)
    ms.set_seed(seed)
    if cfg.get("deterministic"):
        ms.set_deterministic(True)


# MindSpore 2.10 reads it once, when the process compiles its first graph
LOAD_ELIM = "MS_DEV_SIDE_EFFECT_LOAD_ELIM"


def parameter_copies(mode, environ=None):
    """Config key ``parameter_copies``: ``none`` sets ``MS_DEV_SIDE_EFFECT_LOAD_ELIM=3``
    in ``environ`` (the process's), so that MindSpore does not copy a parameter
    read more than once in a graph before each read; ``default`` leaves
    MindSpore's choice. A value the environment already holds is kept."""
    if mode not in ("default", "none"):
        raise ValueError(f"parameter_copies must be default or none, got {mode!r}")
    env = os.environ if environ is None else environ
    if mode == "none":
        env.setdefault(LOAD_ELIM, "3")


_CONFIG_OF = {"CPU": "default_config_cpu.yaml", "GPU": "default_config_gpu.yaml",
              "Ascend": "default_config.yaml"}


def check_device(target):
    """A one-line ConfigError when this MindSpore install cannot run on
    ``target`` (e.g. GPU on a machine without CUDA), naming what it can use."""
    from src.config import ConfigError
    if target == "CPU" or ms.hal.is_available(target):
        return
    usable = [t for t in ("Ascend", "GPU") if ms.hal.is_available(t)] + ["CPU"]
    raise ConfigError(
        f"device_target {target}: this MindSpore install cannot use {target} here (its plugin "
        f"or drivers are missing); it can use {', '.join(usable)}: run with --config_path "
        f"{_CONFIG_OF[usable[0]]} (or --device_target {usable[0]})")


_THREADS = []       # MindSpore takes the CPU thread count once per process


def _set_cpu_threads(threads):
    if not _THREADS:
        ms.device_context.cpu.op_tuning.threads_num(threads)
        _THREADS.append(threads)
    elif _THREADS[0] != threads:
        print(f"cpu_threads: keeping {_THREADS[0]} threads (MindSpore sets them once per "
              f"process), not {threads}", flush=True)


def cpu_threads(requested=0, environ=None, cores=None):
    """Threads for MindSpore's CPU kernels: ``requested`` if positive, else the
    cores this process may run on shared among the workers of a distributed
    CPU job on this machine (``MS_WORKER_NUM``). Left to itself MindSpore 2.10
    ran a large matrix product on one of two cores here (bench/notes.md)."""
    if requested and int(requested) > 0:
        return int(requested)
    env = os.environ if environ is None else environ
    if cores is None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    workers = int(env.get("MS_WORKER_NUM", "1")) if launched_distributed(env) else 1
    return max(1, int(cores or 1) // max(1, workers))


def as_tensors(arrays):
    """A step's numpy inputs as MindSpore tensors that share their memory
    (``from_numpy``: no copy; ``Tensor(array)`` copied every batch, about a
    millisecond per MMoE step of 2048 rows here)."""
    return [ms.from_numpy(np.ascontiguousarray(a)) for a in arrays]


def kernel_threads():
    """The CPU thread count set for this process (``setup_runtime``), or the
    one :func:`cpu_threads` gives if none was set: for the project's own C++
    kernels, so they use the cores MindSpore's kernels use."""
    return _THREADS[0] if _THREADS else cpu_threads()
