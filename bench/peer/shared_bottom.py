"""PyTorch peer of Shared-Bottom (``src/shared_bottom/network.py``).

Same parameters, same layout: the per-field embeddings of the one-hot input
when ``field_embedding_dim`` is set (``FieldEmbedding``), the bottom as
``nn.Linear`` layers each followed by ReLU, per-task towers as stacked
weights (``TaskTowers``, its output weights at zero with
``tower_output_init: zero``). Loss: per-task mean BCE-with-logits, weighted
sum over tasks.

Variants (``VARIANTS``): ``bench.peer.census.FOLD_VARIANTS``, folded and
unfolded per-field embeddings (see there).
"""
import torch
from torch import nn

from bench.peer.census import FOLD_VARIANTS, CensusPeer, fold_batch
from bench.peer.common import TaskTowers, mlp

VARIANTS = FOLD_VARIANTS


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
                                 init_scale, tower_dropout, generator,
                                 output_init=tower_output_init)
        self.fold_batch = fold_batch(input_layer, units[0], fold)

    def forward(self, x):
        if self.fold_batch is not None and x.shape[0] >= self.fold_batch:
            first = self.bottom[0]
            h = torch.addmm(first.bias, x, self.input_layer.matrix() @ first.weight.t())
            h = self.bottom[1:](h)
        else:
            h = self.bottom(self.input_layer(x))
        per_task = h.unsqueeze(1).expand(-1, self.num_tasks, self.width)         # (B, T, D)
        return self.towers(per_task).reshape(-1, self.num_tasks)                  # (B, T)


class SharedBottomPeer(CensusPeer):
    TITLE = "Shared-Bottom"

    def network(self, cfg, feature_map, num_tasks, input_layer, fold, generator):
        return SharedBottomNet(feature_map["input_dim"], num_tasks, cfg.bottom_units,
                               cfg.tower_units, cfg.init, cfg.init_scale, cfg.tower_dropout,
                               cfg.tower_output_init, generator, input_layer=input_layer,
                               fold=fold)


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
