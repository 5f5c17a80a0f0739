"""What the peers of the Census-Income networks (``bench/peer/<model>.py``
of every model on that data set) share: the per-field embeddings of the
one-hot input, and the peer around a network of one logit per task.

Their variants (``FOLD_VARIANTS``): ``folded`` computes, as ours does from
the batch size ``src.layers.fields.fold_from`` gives, the first products of
the per-field embeddings as ``x @ (embedding matrix @ kernel)``;
``unfolded`` always applies the embedding first. With the one-hot input they
are the same.
"""
import torch
from torch import nn

from bench.peer.common import PeerModel, init_matrix_, weighted_bce

FOLD_VARIANTS = ("folded", "unfolded")


class FieldEmbedding(nn.Module):
    """``src.layers.fields.FieldEmbedding``: ``x @ (weight * mask + passthrough)``."""

    def __init__(self, fields, num_numeric, dim, init, init_scale, generator):
        super().__init__()
        n_onehot = max(o + s for o, s in fields)
        rows, cols = n_onehot + num_numeric, len(fields) * dim + num_numeric
        mask, passthrough = torch.zeros(rows, cols), torch.zeros(rows, cols)
        for f, (offset, size) in enumerate(fields):
            mask[offset:offset + size, f * dim:(f + 1) * dim] = 1.0
        numeric = torch.arange(num_numeric)
        passthrough[n_onehot + numeric, len(fields) * dim + numeric] = 1.0
        self.register_buffer("mask", mask)
        self.register_buffer("passthrough", passthrough)
        weight = init_matrix_(torch.empty(rows, cols), init, init_scale, rows, cols, generator)
        self.weight = nn.Parameter(weight * mask)
        self.input_dim, self.output_dim = rows, cols

    def matrix(self):
        return self.weight * self.mask + self.passthrough

    def forward(self, x):
        return x @ self.matrix()


def fold_batch(input_layer, width, fold=True):
    """The batch size from which a network folds ``input_layer`` (a
    :class:`FieldEmbedding`) into its next products of ``width`` columns, as
    ours does (``src.layers.fields.fold_from``); None where it never folds
    (the unfolded variant, the one-hot input, or a fold that never pays)."""
    if not fold or input_layer is None:
        return None
    from src.layers.fields import fold_from
    return fold_from(input_layer.input_dim, input_layer.output_dim, width)


class CensusPeer(PeerModel):
    """A peer whose subclass builds its module in ``network(cfg,
    feature_map, num_tasks, input_layer, fold, generator)`` (``input_layer``:
    a :class:`FieldEmbedding` or None, drawn first); loss: per-task mean
    BCE-with-logits, weighted sum over tasks (``task_weights``)."""

    TITLE = "Census-Income"

    def __init__(self, cfg, feature_map, seed=1, steps_per_epoch=None, variant=None):
        if (variant or FOLD_VARIANTS[0]) not in FOLD_VARIANTS:
            raise ValueError(f"unknown {self.TITLE} peer variant {variant!r}; choose one of "
                             f"{FOLD_VARIANTS}")
        generator = torch.Generator().manual_seed(int(seed))
        tasks = list(feature_map["tasks"])
        layer = None
        if int(cfg.get("field_embedding_dim", 0)) > 0:
            from src.datasets.census import fields_of
            fields, num_numeric = fields_of(feature_map)
            layer = FieldEmbedding(fields, num_numeric, int(cfg.field_embedding_dim), cfg.init,
                                   cfg.init_scale, generator)
        module = self.network(cfg, feature_map, len(tasks), layer,
                              (variant or FOLD_VARIANTS[0]) == "folded", generator)
        weights = cfg.get("task_weights") or [1.0] * len(tasks)
        self.task_weights = torch.tensor(weights, dtype=torch.float32)
        super().__init__(module, cfg, feature_map, module.parameters(),
                         steps_per_epoch=steps_per_epoch)

    def network(self, cfg, feature_map, num_tasks, input_layer, fold, generator):
        raise NotImplementedError

    def loss(self, x, labels):
        return weighted_bce(self.module(x), labels, self.task_weights)
