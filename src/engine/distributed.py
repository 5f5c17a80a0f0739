"""Data-parallel training on MindSpore's own distributed runtime.

A process is part of a distributed job when its launcher says so:
``msrun`` (GPU/NCCL, CPU/mccl, and Ascend) sets ``MS_WORKER_NUM`` and
``MS_ROLE`` (``MS_WORKER``, or ``MS_SCHED`` for its scheduler process, which
runs the same script and only serves the cluster); the Ascend rank-table launcher (scripts/run_distribute_ascend.sh)
sets ``RANK_TABLE_FILE`` and ``RANK_SIZE``. Only then is ``init()`` called: a
single-process run never initialises communication.

In a distributed run every rank builds the same network from the same seed
(``parameter_broadcast`` also copies rank 0's initial parameters), reads a
disjoint shard of the training split, and averages gradients with the other
ranks (DATA_PARALLEL, ``gradients_mean``); rank 0 alone writes checkpoints
and logs. Validation reads the whole split on every rank, so every rank gets
the same figures.
"""
import os
import socket
import sys
from dataclasses import dataclass

import mindspore as ms


@dataclass
class Cluster:
    rank: int = 0
    size: int = 1

    @property
    def distributed(self):
        return self.size > 1

    @property
    def is_main(self):
        return self.rank == 0


def launched_distributed(environ=None):
    """True when a distributed launcher started this process."""
    env = os.environ if environ is None else environ
    if env.get("MS_ROLE") in ("MS_WORKER", "MS_SCHED") and int(env.get("MS_WORKER_NUM", "1")) > 1:
        return True
    return bool(env.get("RANK_TABLE_FILE")) and int(env.get("RANK_SIZE", "1")) > 1


def free_port(host="127.0.0.1"):
    """An unused TCP port on ``host`` (for an msrun scheduler started next)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def device_id_from_env(default):
    """The device a rank-table launcher assigned (``DEVICE_ID``), else ``default``."""
    value = os.environ.get("DEVICE_ID")
    return int(value) if value not in (None, "") else default


def init_cluster(cfg):
    """Initialise communication when launched distributed; returns the :class:`Cluster`.

    Must run after the device is set (``setup_runtime``) and before any train
    step is built, since the train steps read the parallel context.
    """
    if not launched_distributed():
        return Cluster()
    from mindspore.communication import get_group_size, get_rank, init
    init()
    if os.environ.get("MS_ROLE") == "MS_SCHED":
        # msrun's scheduler process runs this script too: init() serves the
        # cluster until the workers are done; it must not train itself
        sys.exit(0)
    cluster = Cluster(rank=get_rank(), size=get_group_size())
    ms.reset_auto_parallel_context()
    ms.set_auto_parallel_context(parallel_mode=ms.ParallelMode.DATA_PARALLEL, gradients_mean=True,
                                 device_num=cluster.size,
                                 parameter_broadcast=bool(cfg.get("parameter_broadcast", True)))
    return cluster


def scale_for_cluster(cfg, cluster):
    """Apply the model's rules for distributed runs to ``cfg``: the learning
    rate times ``distributed_lr_factor`` and the warm-up times
    ``distributed_warmup_factor`` (the upstream MMoE halves both on 8 devices).
    Returns a line describing what changed, or None."""
    if not cluster.distributed:
        return None
    lr_factor = float(cfg.get("distributed_lr_factor", 1.0))
    warmup_factor = float(cfg.get("distributed_warmup_factor", 1.0))
    if lr_factor == 1.0 and warmup_factor == 1.0:
        return None
    cfg.learning_rate = float(cfg.learning_rate) * lr_factor
    cfg.warmup_epochs = float(cfg.warmup_epochs) * warmup_factor
    return (f"distributed over {cluster.size} ranks: learning_rate {cfg.learning_rate:g}, "
            f"warmup_epochs {cfg.warmup_epochs:g}")


def table_shard(cfg):
    """``(mode, ranks, rank)`` for a SparseTable network's embedding table, or
    None for the whole table: ``cfg.parallel`` (data, table, row) in a
    distributed job; a single process always holds the whole table."""
    mode = cfg.get("parallel", "data")
    if mode == "data" or not launched_distributed():
        return None
    from mindspore.communication import get_group_size, get_rank
    return mode, get_group_size(), get_rank()
