"""PyTorch peer of Shared-Bottom (``src/shared_bottom/network.py``).

Same parameters, same layout: the per-field embeddings of the one-hot input
when ``field_embedding_dim`` is set (``FieldEmbedding``), the bottom as
``nn.Linear`` layers each followed by ReLU, per-task towers as stacked
weights (``TaskTowers``, its output weights at zero with
``tower_output_init: zero``). Loss: per-task mean BCE-with-logits, weighted
sum over tasks.

Variants (``VARIANTS``): ``folded`` computes, as ours does from the batch
size ``src.layers.fields.fold_from`` gives, the bottom's first layer of the
per-field embeddings as ``x @ (embedding matrix @ weight)``; ``unfolded``
always applies the embedding first. With the one-hot input they are the same.
"""
import torch
from torch import nn

from bench.peer.common import FieldEmbedding, PeerModel, TaskTowers, mlp, weighted_bce

VARIANTS = ("folded", "unfolded")


class SharedBottomNet(nn.Module):
    def __init__(self, input_dim, num_tasks, bottom_units, tower_units, init, init_scale,
                 tower_dropout, tower_output_init, generator, input_layer=None, fold=True):
        super().__init__()
        self.input_layer = input_layer if input_layer is not None else nn.Identity()
        if input_layer is not None:
            input_dim = input_layer.output_dim
        units = [int(u) for u in bottom_units]
        self.num_tasks, self.width = int(num_tasks), units[-1]
        self.bottom = mlp([int(input_dim)] + units, init, init_scale, last_activation=True,
                          generator=generator)
        self.towers = TaskTowers(self.num_tasks, self.width, list(tower_units), 1, init,
                                 init_scale, tower_dropout, generator, output_init=tower_output_init)
        self.fold_batch = None
        if fold and input_layer is not None:
            from src.layers.fields import fold_from
            self.fold_batch = fold_from(input_layer.input_dim, int(input_dim), units[0])

    def forward(self, x):
        if self.fold_batch is not None and x.shape[0] >= self.fold_batch:
            first = self.bottom[0]
            h = torch.addmm(first.bias, x, self.input_layer.matrix() @ first.weight.t())
            h = self.bottom[1:](h)
        else:
            h = self.bottom(self.input_layer(x))
        per_task = h.unsqueeze(1).expand(-1, self.num_tasks, self.width)         # (B, T, D)
        return self.towers(per_task).reshape(-1, self.num_tasks)                  # (B, T)


class SharedBottomPeer(PeerModel):
    def __init__(self, cfg, feature_map, seed=1, steps_per_epoch=None, variant=None):
        if (variant or VARIANTS[0]) not in VARIANTS:
            raise ValueError(f"unknown Shared-Bottom peer variant {variant!r}; choose one of "
                             f"{VARIANTS}")
        generator = torch.Generator().manual_seed(int(seed))
        tasks = list(feature_map["tasks"])
        layer = None
        if int(cfg.get("field_embedding_dim", 0)) > 0:
            from src.datasets.census import fields_of
            fields, num_numeric = fields_of(feature_map)
            layer = FieldEmbedding(fields, num_numeric, int(cfg.field_embedding_dim), cfg.init,
                                   cfg.init_scale, generator)
        module = SharedBottomNet(feature_map["input_dim"], len(tasks), cfg.bottom_units,
                                 cfg.tower_units, cfg.init, cfg.init_scale, cfg.tower_dropout,
                                 cfg.tower_output_init, generator, input_layer=layer,
                                 fold=(variant or VARIANTS[0]) == "folded")
        weights = cfg.get("task_weights") or [1.0] * len(tasks)
        self.task_weights = torch.tensor(weights, dtype=torch.float32)
        super().__init__(module, cfg, feature_map, module.parameters(),
                         steps_per_epoch=steps_per_epoch)

    def loss(self, x, labels):
        return weighted_bce(self.module(x), labels, self.task_weights)


PEER = SharedBottomPeer

# the cases of ``python -m bench.peer.check``: (name, config overrides, run the init check)
CHECKS = [
    ("shared_bottom", [], True),
    ("shared_bottom one-hot input (upstream)", ["--field_embedding_dim", "0"], True),
    ("shared_bottom folded input (batch 128)", ["--batch_size", "128"], False),
    ("shared_bottom two bottom layers, drawn output weights, clip+wd",
     ["--bottom_units", "[16, 8]", "--tower_output_init", "init", "--clip_norm", "0.01",
      "--weight_decay", "0.01"], True),
]
