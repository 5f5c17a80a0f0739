"""PyTorch peer of PLE (``src/ple/network.py``).

Same parameters, same names and layout: the per-field embeddings of the
one-hot input when ``field_embedding_dim`` is set (``FieldEmbedding``); per
level the task experts and gates as stacked weights ``(T, D, .)`` (each
task's matrix drawn with its own fans), the shared experts and the shared
gate as plain ``(D, .)`` matrices; per-task towers as stacked weights
(``TaskTowers``). Each level's mixtures are weighted sums over the experts'
axis. Loss: per-task mean BCE-with-logits, weighted sum over tasks.

Variants (``VARIANTS``): ``bench.peer.census.FOLD_VARIANTS``, folded and
unfolded per-field embeddings (see there).
"""
import torch
import torch.nn.functional as F
from torch import nn

from bench.peer.census import FOLD_VARIANTS, CensusPeer, fold_batch
from bench.peer.common import TaskTowers, init_matrix_, init_stack

VARIANTS = FOLD_VARIANTS


class PLENet(nn.Module):
    def __init__(self, input_dim, num_tasks, num_levels, task_experts, shared_experts,
                 expert_units, tower_units, init, init_scale, tower_dropout, tower_output_init,
                 generator, input_layer=None, fold=True):
        super().__init__()
        self.input_layer = input_layer if input_layer is not None else nn.Identity()
        if input_layer is not None:
            input_dim = input_layer.output_dim
        t, m_t, m_s, u = int(num_tasks), int(task_experts), int(shared_experts), int(expert_units)
        self.t, self.m_t, self.m_s, self.u = t, m_t, m_s, u
        self.levels, self.input_dim = int(num_levels), int(input_dim)

        def matrix(fan_in, fan_out):
            return init_matrix_(torch.empty(fan_in, fan_out), init, init_scale, fan_in, fan_out,
                                generator)

        for level in range(self.levels):
            d = self.input_dim if level == 0 else u
            params = {"task_expert_kernel": init_stack(t, d, m_t * u, init, init_scale, generator),
                      "task_expert_bias": torch.zeros(t, 1, m_t * u),
                      "task_gate_kernel": init_stack(t, d, m_t + m_s, init, init_scale, generator),
                      "task_gate_bias": torch.zeros(t, 1, m_t + m_s),
                      "shared_expert_kernel": matrix(d, m_s * u),
                      "shared_expert_bias": torch.zeros(m_s * u)}
            if level < self.levels - 1:
                params["shared_gate_kernel"] = matrix(d, t * m_t + m_s)
                params["shared_gate_bias"] = torch.zeros(t * m_t + m_s)
            for name, value in params.items():
                self.register_parameter(f"{name}{level}", nn.Parameter(value))
        self.towers = TaskTowers(t, u, list(tower_units), 1, init, init_scale, tower_dropout,
                                 generator, output_init=tower_output_init)
        width = t * m_t * u + t * (m_t + m_s) + m_s * u + (t * m_t + m_s if self.levels > 1 else 0)
        self.fold_batch = fold_batch(input_layer, width, fold)

    def p(self, name, level):
        return getattr(self, f"{name}{level}")

    def _level(self, level, task_in, shared_in):
        """Task experts (T, B, m_t, U), shared experts (B, m_s, U), task gates
        (T, B, m_t+m_s), shared gate (B, T*m_t+m_s) or None at the top level."""
        t, m_t, m_s, u = self.t, self.m_t, self.m_s, self.u
        own = F.relu(torch.baddbmm(self.p("task_expert_bias", level), task_in,
                                   self.p("task_expert_kernel", level))).view(t, -1, m_t, u)
        shared = F.relu(torch.addmm(self.p("shared_expert_bias", level), shared_in,
                                    self.p("shared_expert_kernel", level))).view(-1, m_s, u)
        gates = F.softmax(torch.baddbmm(self.p("task_gate_bias", level), task_in,
                                        self.p("task_gate_kernel", level)), dim=-1)
        shared_gate = None
        if level < self.levels - 1:
            shared_gate = F.softmax(torch.addmm(self.p("shared_gate_bias", level), shared_in,
                                                self.p("shared_gate_kernel", level)), dim=-1)
        return own, shared, gates, shared_gate

    def _folded_first_level(self, x):
        t, m_t, m_s, u, d = self.t, self.m_t, self.m_s, self.u, self.input_dim
        matrix = self.input_layer.matrix()
        own = torch.addmm(self.task_expert_bias0.reshape(-1), x,
                          matrix @ self.task_expert_kernel0.permute(1, 0, 2).reshape(d, -1))
        own = F.relu(own).view(-1, t, m_t, u).permute(1, 0, 2, 3)                 # (T, B, m_t, U)
        gates = torch.addmm(self.task_gate_bias0.reshape(-1), x,
                            matrix @ self.task_gate_kernel0.permute(1, 0, 2).reshape(d, -1))
        gates = F.softmax(gates.view(-1, t, m_t + m_s).permute(1, 0, 2), dim=-1)   # (T, B, m_t+m_s)
        shared = F.relu(torch.addmm(self.shared_expert_bias0, x,
                                    matrix @ self.shared_expert_kernel0)).view(-1, m_s, u)
        shared_gate = None
        if self.levels > 1:
            shared_gate = F.softmax(torch.addmm(self.shared_gate_bias0, x,
                                                matrix @ self.shared_gate_kernel0), dim=-1)
        return own, shared, gates, shared_gate

    def forward(self, x):
        t, m_t, u = self.t, self.m_t, self.u
        if self.fold_batch is not None and x.shape[0] >= self.fold_batch:
            own, shared, gates, shared_gate = self._folded_first_level(x)
        else:
            x = self.input_layer(x)
            own, shared, gates, shared_gate = self._level(0, x.unsqueeze(0).expand(t, -1, -1), x)
        task_in = shared_in = None
        for level in range(self.levels):
            if level > 0:
                own, shared, gates, shared_gate = self._level(level, task_in, shared_in)
            experts = torch.cat((own, shared.unsqueeze(0).expand(t, -1, -1, -1)), dim=2)
            next_task = (gates.unsqueeze(-1) * experts).sum(2)                     # (T, B, U)
            if level < self.levels - 1:
                every = torch.cat((own.permute(1, 0, 2, 3).reshape(-1, t * m_t, u), shared), dim=1)
                shared_in = (shared_gate.unsqueeze(-1) * every).sum(1)              # (B, U)
            task_in = next_task
        return self.towers(task_in.transpose(0, 1)).reshape(-1, t)                 # (B, T)


class PLEPeer(CensusPeer):
    TITLE = "PLE"

    def network(self, cfg, feature_map, num_tasks, input_layer, fold, generator):
        return PLENet(feature_map["input_dim"], num_tasks, cfg.num_levels, cfg.task_experts,
                      cfg.shared_experts, cfg.expert_units, cfg.tower_units, cfg.init,
                      cfg.init_scale, cfg.tower_dropout, cfg.tower_output_init, generator,
                      input_layer=input_layer, fold=fold)


PEER = PLEPeer

# the cases of ``python -m bench.peer.check``: (name, config overrides, run the init check)
CHECKS = [
    ("ple", [], True),
    ("ple one-hot input (upstream)", ["--field_embedding_dim", "0"], True),
    ("ple folded input (batch 128)", ["--batch_size", "128"], False),
    ("ple folded input, one level (CGC)", ["--batch_size", "128", "--num_levels", "1"], False),
    ("ple three levels, zero output weights, clip+wd+2 tower layers",
     ["--num_levels", "3", "--tower_output_init", "zero", "--clip_norm", "0.01",
      "--weight_decay", "0.01", "--tower_units", "[16, 8]"], True),
]
