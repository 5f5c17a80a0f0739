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
from mindspore import Parameter, Tensor, nn, ops


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


class MultiTaskSoftmaxCELoss(nn.Cell):
    """Softmax cross-entropy per task on ``(B, T, C)`` logits and ``(B, T)``
    integer labels, averaged over the batch and summed over tasks with
    optional task weights. The one softmax is applied here, on logits."""

    def __init__(self, task_weights):
        super().__init__()
        self.ce = nn.CrossEntropyLoss(reduction="none")
        self.weights = ops.stop_gradient(ops.Tensor(np.asarray(task_weights, np.float32)))
        self.num_tasks = len(task_weights)

    def construct(self, logits, labels):
        classes = logits.shape[-1]
        per_row = self.ce(logits.reshape((-1, classes)), ops.cast(labels, ms.int32).reshape((-1,)))
        per_task = per_row.reshape((-1, self.num_tasks)).mean(axis=0)
        return (per_task * self.weights).sum()


def scheduled_weight(weight, warmup_epochs):
    """``epoch -> weight``: constant, or ramped linearly over the first
    ``warmup_epochs`` epochs (epoch 1 gets ``weight / warmup_epochs``)."""
    if weight < 0 or warmup_epochs < 0:
        raise ValueError(f"regulariser weight and warm-up must not be negative, got {weight}, "
                         f"{warmup_epochs}")

    def at(epoch):
        if warmup_epochs <= 0:
            return float(weight)
        return float(weight) * min(1.0, epoch / float(warmup_epochs))
    return at


class NetWithLoss(nn.Cell):
    """``(inputs..., labels) -> loss`` for the train step."""

    def __init__(self, network, loss_fn):
        super().__init__(auto_prefix=False)
        self.network = network
        self.loss_fn = loss_fn

    def construct(self, *args):
        logits = ops.cast(self.network(*args[:-1]), ms.float32)  # float16 under amp
        return self.loss_fn(logits, args[-1])


class NetWithRegLoss(NetWithLoss):
    """``(inputs..., labels) -> loss + w * regulariser`` for networks whose
    ``forward_with_reg`` returns ``(logits, regulariser)`` (DSelect-k's gates).

    ``w`` follows a schedule over epochs (``epoch -> weight``); the trainer calls
    :meth:`set_epoch` before every epoch, and the weight lives in a
    non-trainable parameter so the compiled step does not change.
    """

    def __init__(self, network, loss_fn, schedule):
        super().__init__(network, loss_fn)
        self.schedule = schedule
        self.reg_weight = Parameter(Tensor(schedule(1), ms.float32), name="reg_weight",
                                    requires_grad=False)

    def set_epoch(self, epoch):
        self.reg_weight.set_data(Tensor(self.schedule(epoch), ms.float32))

    def construct(self, *args):
        logits, reg = self.network.forward_with_reg(*args[:-1])
        loss = self.loss_fn(ops.cast(logits, ms.float32), args[-1])
        return loss + self.reg_weight * ops.cast(reg, ms.float32)


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
    # feature_map -> per-sample shape of the predictor's output; default (tasks,)
    output_shape: Callable = None
    # cfg -> (epoch -> weight) of the network's regulariser (forward_with_reg), if it has one
    reg_schedule: Callable = None
    # config values export.py uses instead of the training ones (e.g. an exportable op choice)
    export_overrides: dict = None
    # the network has one embedding table trained row-wise (src/engine/sparse.py); its first
    # input holds the table ids and it has forward_rows(rows, inverse, *other inputs)
    sparse: bool = False

    def predictor(self, network):
        return Predictor(network, self.activation())

    def net_with_loss(self, network, cfg, feature_map):
        loss = self.build_loss(cfg, feature_map)
        if self.sparse:
            from src.engine.sparse import NetWithRowsLoss
            return NetWithRowsLoss(network, loss, cfg.embedding_l2)
        if self.reg_schedule is not None:
            return NetWithRegLoss(network, loss, self.reg_schedule(cfg))
        return NetWithLoss(network, loss)

    def output_dims(self, feature_map):
        """Per-sample output shape of the predictor."""
        if self.output_shape is not None:
            return tuple(self.output_shape(feature_map))
        return (len(self.task_names(feature_map)),)

    def transform(self, feature_map):
        """The reader's per-batch transform for this model (evaluation, inference)."""
        return lambda batch: self.make_batch(batch, feature_map)

    def train_transform(self, feature_map, network, cfg=None, distributed=False):
        """The training reader's transform: for sparse models the table ids
        become the batch's unique rows and their positions, padded by
        ``cfg.row_buckets`` (1 in distributed runs, whose ranks exchange
        rows in collectives that need one length on every rank)."""
        if not self.sparse:
            return self.transform(feature_map)
        from src.engine.sparse import rows_transform
        buckets = 1 if distributed or cfg is None else int(cfg.get("row_buckets", 1))
        return rows_transform(self.transform(feature_map), network.table_ids,
                              network.embedding.scratch_row, buckets)


def _columns(fmap):
    """``{column: width}`` of the MindRecord columns, from the feature map."""
    return {name: col["width"] for name, col in fmap["columns"].items()}


def _task_weights(cfg, tasks):
    weights = cfg.get("task_weights") or [1.0] * len(tasks)
    if len(weights) != len(tasks):
        raise ValueError(f"task_weights has {len(weights)} values for {len(tasks)} tasks {tasks}")
    return weights


def _mmoe_spec():
    from src.data import census
    from src.mmoe import MMoE

    def make_batch(batch, fmap):
        x = census.to_dense(batch["cat"], batch["num"], fmap["input_dim"])
        return x, batch["label"].astype(np.float32)

    def build_network(cfg, fmap):
        return MMoE(input_dim=fmap["input_dim"], num_tasks=len(fmap["tasks"]),
                    num_experts=cfg.num_experts, expert_units=cfg.expert_units,
                    tower_units=cfg.tower_units, init=cfg.init, init_scale=cfg.init_scale,
                    tower_dropout=cfg.tower_dropout, mixture=cfg.mixture)

    return ModelSpec(
        name="mmoe", dataset="census-income",
        load_feature_map=census.load_feature_map,
        columns=_columns, make_batch=make_batch, build_network=build_network,
        build_loss=lambda cfg, fmap: MultiTaskBCELoss(_task_weights(cfg, fmap["tasks"])),
        activation=nn.Sigmoid,
        task_names=lambda fmap: list(fmap["tasks"]),
        input_signature=lambda fmap: [("x", np.float32, (fmap["input_dim"],))],
        prepare_data=lambda cfg: census.convert(
            cfg.raw_data_path, cfg.data_path, keep_instance_weight=cfg.keep_instance_weight,
            val_fraction=cfg.val_fraction, seed=cfg.seed, block_rows=cfg.block_rows),
        export_overrides={"mixture": "broadcast"},
    )


def _dselect_k_spec():
    from src.data import multimnist
    from src.dselect_k import MultiTaskMoE

    def make_batch(batch, fmap):
        images = batch["image"].astype(np.float32) * np.float32(1.0 / 255.0)
        return images.reshape((-1,) + tuple(fmap["image_shape"])), batch["label"].astype(np.int32)

    def build_network(cfg, fmap):
        return MultiTaskMoE(
            image_shape=fmap["image_shape"], num_tasks=len(fmap["tasks"]),
            num_classes=fmap["num_classes"], num_experts=cfg.num_experts,
            conv_channels=cfg.conv_channels, kernel_size=cfg.kernel_size,
            expert_units=cfg.expert_units, tower_units=cfg.tower_units, gate=cfg.gate, k=cfg.k,
            gamma=cfg.gamma, gate_mode=cfg.gate_mode, conv_impl=cfg.conv_impl, init=cfg.init,
            init_scale=cfg.init_scale, tower_dropout=cfg.tower_dropout, seed=cfg.seed)

    return ModelSpec(
        name="dselect_k", dataset="multimnist",
        load_feature_map=multimnist.load_feature_map,
        columns=_columns, make_batch=make_batch, build_network=build_network,
        build_loss=lambda cfg, fmap: MultiTaskSoftmaxCELoss(_task_weights(cfg, fmap["tasks"])),
        activation=lambda: nn.Softmax(axis=-1),
        task_names=lambda fmap: list(fmap["tasks"]),
        input_signature=lambda fmap: [("image", np.float32, tuple(fmap["image_shape"]))],
        prepare_data=lambda cfg: multimnist.convert(
            cfg.raw_data_path, cfg.data_path, source=cfg.source, val_fraction=cfg.val_fraction,
            pairs_per_image=cfg.pairs_per_image, max_shift=cfg.max_shift, seed=cfg.seed,
            block_rows=cfg.block_rows),
        task_type="multiclass",
        output_shape=lambda fmap: (len(fmap["tasks"]), fmap["num_classes"]),
        reg_schedule=lambda cfg: scheduled_weight(cfg.gate_reg_weight, cfg.gate_reg_warmup_epochs),
        export_overrides={"conv_impl": "native"},
    )


def _criteo_spec(name, build_network):
    """DeepFM and DLRM share the Criteo data, the click task and the sparse table."""
    from src.data import criteo

    def make_batch(batch, fmap):
        offsets = np.asarray(fmap["offsets"], np.int32)
        cat = batch["cat"].astype(np.int32) + offsets
        return cat, batch["dense"].astype(np.float32), batch["label"].astype(np.float32)

    return ModelSpec(
        name=name, dataset="criteo",
        load_feature_map=criteo.load_feature_map,
        columns=_columns, make_batch=make_batch, build_network=build_network,
        build_loss=lambda cfg, fmap: MultiTaskBCELoss([1.0]),
        activation=nn.Sigmoid,
        task_names=lambda fmap: ["click"],
        input_signature=lambda fmap: [("cat", np.int32, (fmap["num_cat"],)),
                                      ("dense", np.float32, (fmap["num_dense"],))],
        prepare_data=lambda cfg: criteo.convert(
            cfg.raw_data_path, cfg.data_path, min_count=cfg.min_count,
            max_ind_range=cfg.max_ind_range, dense_transform=cfg.dense_transform, split=cfg.split,
            val_fraction=cfg.val_fraction, test_fraction=cfg.test_fraction, days=cfg.days,
            seed=cfg.seed, shard_rows=cfg.shard_rows, block_rows=cfg.block_rows,
            skip_malformed=cfg.skip_malformed),
        sparse=True,
    )


def _deepfm_spec():
    from src.deepfm import DeepFM

    def build_network(cfg, fmap):
        return DeepFM(fmap["cardinalities"], num_dense=fmap["num_dense"],
                      embedding_dim=cfg.embedding_dim, deep_units=cfg.deep_units,
                      dropout=cfg.dropout, batch_norm=cfg.batch_norm, init=cfg.init,
                      init_scale=cfg.init_scale, embedding_scale=cfg.embedding_scale, seed=cfg.seed)
    return _criteo_spec("deepfm", build_network)


def _dlrm_spec():
    from src.dlrm import DLRM

    def build_network(cfg, fmap):
        return DLRM(fmap["cardinalities"], num_dense=fmap["num_dense"],
                    embedding_dim=cfg.embedding_dim, bottom_units=cfg.bottom_units,
                    top_units=cfg.top_units, interaction=cfg.interaction,
                    self_interaction=cfg.self_interaction, seed=cfg.seed)
    return _criteo_spec("dlrm", build_network)


_BUILDERS = {"mmoe": _mmoe_spec, "dselect_k": _dselect_k_spec, "deepfm": _deepfm_spec,
             "dlrm": _dlrm_spec}


def get_model_spec(name):
    """The :class:`ModelSpec` of ``name`` (one of the registered models)."""
    if name not in _BUILDERS:
        raise ValueError(f"model {name!r} is not available; choose one of {', '.join(sorted(_BUILDERS))}")
    return _BUILDERS[name]()
