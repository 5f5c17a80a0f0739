"""The model registry: what the shared engine needs to know about each model.

A :class:`ModelSpec` ties a network (from its own folder) to its data set:
how to convert its raw data, how to load the feature map, which MindRecord columns to read, how a batch
becomes network inputs and labels, the loss, how outputs become
probabilities, the task names and the input signature for export. Entry
points look a model up by the config's ``model`` key and never branch on it.
"""
from dataclasses import dataclass
from typing import Callable

import mindspore as ms
import numpy as np
from mindspore import nn, ops


class MultiTaskBCELoss(nn.Cell):
    """Sigmoid cross-entropy per task on ``(B, T)`` logits, averaged over the
    batch and summed over tasks with optional task weights."""

    def __init__(self, task_weights):
        super().__init__()
        self.bce = nn.BCEWithLogitsLoss(reduction="none")
        self.weights = ops.stop_gradient(ops.Tensor(np.asarray(task_weights, np.float32)))

    def construct(self, logits, labels):
        per_task = self.bce(logits, labels).mean(axis=0)
        return (per_task * self.weights).sum()


class NetWithLoss(nn.Cell):
    """``(inputs..., labels) -> loss`` for the train step."""

    def __init__(self, network, loss_fn):
        super().__init__(auto_prefix=False)
        self.network = network
        self.loss_fn = loss_fn

    def construct(self, *args):
        logits = ops.cast(self.network(*args[:-1]), ms.float32)  # float16 under amp
        return self.loss_fn(logits, args[-1])


class Predictor(nn.Cell):
    """``inputs -> probabilities``: the network followed by its output activation.
    This is what eval.py runs and what export.py exports."""

    def __init__(self, network, activation):
        super().__init__(auto_prefix=False)
        self.network = network
        self.activation = activation

    def construct(self, *inputs):
        return self.activation(ops.cast(self.network(*inputs), ms.float32))


@dataclass
class ModelSpec:
    name: str
    dataset: str
    load_feature_map: Callable      # data_dir -> feature map dict
    columns: Callable               # feature_map -> {column: width} read from MindRecord
    make_batch: Callable            # (batch dict, feature_map) -> (inputs..., labels) numpy
    build_network: Callable         # (cfg, feature_map) -> nn.Cell producing logits
    build_loss: Callable            # (cfg, feature_map) -> nn.Cell(logits, labels) -> loss
    activation: Callable            # () -> nn.Cell turning logits into probabilities
    task_names: Callable            # feature_map -> list of task names
    input_signature: Callable       # feature_map -> [(name, numpy dtype, shape without batch)]
    prepare_data: Callable          # cfg -> feature map: raw files to MindRecord (prepare_data.py)
    task_type: str = "binary"

    def predictor(self, network):
        return Predictor(network, self.activation())

    def net_with_loss(self, network, cfg, feature_map):
        return NetWithLoss(network, self.build_loss(cfg, feature_map))

    def transform(self, feature_map):
        """The reader's per-batch transform for this model."""
        return lambda batch: self.make_batch(batch, feature_map)


def _task_weights(cfg, tasks):
    weights = cfg.get("task_weights") or [1.0] * len(tasks)
    if len(weights) != len(tasks):
        raise ValueError(f"task_weights has {len(weights)} values for {len(tasks)} tasks {tasks}")
    return weights


def _mmoe_spec():
    from src.data import census
    from src.mmoe import MMoE

    def columns(fmap):
        return {name: col["width"] for name, col in fmap["columns"].items()}

    def make_batch(batch, fmap):
        x = census.to_dense(batch["cat"], batch["num"], fmap["input_dim"])
        return x, batch["label"].astype(np.float32)

    def build_network(cfg, fmap):
        return MMoE(input_dim=fmap["input_dim"], num_tasks=len(fmap["tasks"]),
                    num_experts=cfg.num_experts, expert_units=cfg.expert_units,
                    tower_units=cfg.tower_units, init=cfg.init, init_scale=cfg.init_scale,
                    tower_dropout=cfg.tower_dropout)

    return ModelSpec(
        name="mmoe", dataset="census-income",
        load_feature_map=census.load_feature_map,
        columns=columns, make_batch=make_batch, build_network=build_network,
        build_loss=lambda cfg, fmap: MultiTaskBCELoss(_task_weights(cfg, fmap["tasks"])),
        activation=nn.Sigmoid,
        task_names=lambda fmap: list(fmap["tasks"]),
        input_signature=lambda fmap: [("x", np.float32, (fmap["input_dim"],))],
        prepare_data=lambda cfg: census.convert(
            cfg.raw_data_path, cfg.data_path, keep_instance_weight=cfg.keep_instance_weight,
            val_fraction=cfg.val_fraction, seed=cfg.seed, block_rows=cfg.block_rows),
    )


_BUILDERS = {"mmoe": _mmoe_spec}


def get_model_spec(name):
    """The :class:`ModelSpec` of ``name`` (one of the registered models)."""
    if name not in _BUILDERS:
        raise ValueError(f"model {name!r} is not available; choose one of {', '.join(sorted(_BUILDERS))}")
    return _BUILDERS[name]()
