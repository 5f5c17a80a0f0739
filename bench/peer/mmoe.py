"""PyTorch peer of MMoE (``src/mmoe/mmoe.py``).

Same parameters, same layout: the per-field embeddings of the one-hot input
when ``field_embedding_dim`` is set (``src/layers/fields.py``: one matrix
product with the masked block-diagonal weight plus the numerics' identity
block), experts ``(F, E*U)`` and gates ``(F, T*E)`` as
one matrix each (every expert's / gate's ``(F, U)`` / ``(F, E)`` block drawn
separately with its own fans), per-task towers as stacked weights
(``TaskTowers``). Loss: per-task mean BCE-with-logits, weighted sum over tasks.

Variants (``VARIANTS``): ``bench.peer.census.FOLD_VARIANTS``, folded and
unfolded per-field embeddings (see there).
"""
import torch
import torch.nn.functional as F
from torch import nn

from bench.peer.census import FOLD_VARIANTS, CensusPeer, fold_batch
from bench.peer.common import TaskTowers, init_stack

VARIANTS = FOLD_VARIANTS


class MMoENet(nn.Module):
    def __init__(self, input_dim, num_tasks, num_experts, expert_units, tower_units, init,
                 init_scale, tower_dropout, generator, input_layer=None, fold=True):
        super().__init__()
        self.input_layer = input_layer if input_layer is not None else nn.Identity()
        if input_layer is not None:
            input_dim = input_layer.output_dim
        f, t, e, u = int(input_dim), int(num_tasks), int(num_experts), int(expert_units)
        self.num_tasks, self.num_experts, self.expert_units = t, e, u
        experts = init_stack(e, f, u, init, init_scale, generator)          # (E, F, U)
        self.expert_kernel = nn.Parameter(experts.permute(1, 0, 2).reshape(f, e * u).contiguous())
        self.expert_bias = nn.Parameter(torch.zeros(e * u))
        gates = init_stack(t, f, e, init, init_scale, generator)            # (T, F, E)
        self.gate_kernel = nn.Parameter(gates.permute(1, 0, 2).reshape(f, t * e).contiguous())
        self.gate_bias = nn.Parameter(torch.zeros(t * e))
        self.towers = TaskTowers(t, u, list(tower_units), 1, init, init_scale, tower_dropout,
                                 generator)
        self.fold_batch = fold_batch(input_layer, e * u + t * e, fold)

    def forward(self, x):
        if self.fold_batch is not None and x.shape[0] >= self.fold_batch:
            matrix = self.input_layer.matrix()
            experts = torch.addmm(self.expert_bias, x, matrix @ self.expert_kernel)
            gates = torch.addmm(self.gate_bias, x, matrix @ self.gate_kernel)
        else:
            x = self.input_layer(x)
            experts = torch.addmm(self.expert_bias, x, self.expert_kernel)
            gates = torch.addmm(self.gate_bias, x, self.gate_kernel)
        experts = F.relu(experts).view(-1, self.num_experts, self.expert_units)  # (B, E, U)
        gates = F.softmax(gates.view(-1, self.num_tasks, self.num_experts), dim=-1)  # (B, T, E)
        mixed = torch.bmm(gates, experts)                                         # (B, T, U)
        return self.towers(mixed).reshape(-1, self.num_tasks)                     # (B, T)


class MMoEPeer(CensusPeer):
    TITLE = "MMoE"

    def network(self, cfg, feature_map, num_tasks, input_layer, fold, generator):
        return MMoENet(feature_map["input_dim"], num_tasks, cfg.num_experts, cfg.expert_units,
                       cfg.tower_units, cfg.init, cfg.init_scale, cfg.tower_dropout, generator,
                       input_layer=input_layer, fold=fold)


PEER = MMoEPeer

# the cases of ``python -m bench.peer.check``: (name, config overrides, run the init check)
CHECKS = [
    ("mmoe", [], True),
    ("mmoe one-hot input (upstream)", ["--field_embedding_dim", "0"], True),
    ("mmoe folded input (batch 128)", ["--batch_size", "128"], False),
    ("mmoe clip+wd+2 tower layers",
     ["--clip_norm", "0.01", "--weight_decay", "0.01", "--tower_units", "[16, 8]"], False),
    ("mmoe xavier+momentum", ["--init", "xavier_uniform", "--optimizer", "momentum"], True),
]
