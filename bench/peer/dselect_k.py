"""PyTorch peer of the DSelect-k MultiMNIST network (``src/dselect_k/``).

* experts: ``E`` CNNs run as one layer each, exactly as ours: the first conv
  is a plain ``nn.Conv2d(C, E*c1, k, bias=False)`` (every expert reads the
  image), later convs ``nn.Conv2d(E*c_in, E*c_out, k, groups=E, bias=False)``,
  each followed by ``BatchNorm2d(E*c)`` (MindSpore momentum 0.9 == torch
  0.1, eps 1e-5), ReLU and ``MaxPool2d(2, 2)``; conv weights
  ``U(+-1/sqrt(fan_in))``. Our ``conv_impl: matmul`` is only another way to
  compute the same convolution; the peer uses torch's native one. Then the
  per-expert MLP over the channel-major flattened maps (stacked weights, ReLU
  between layers, linear output);
* gates, one per task: DSelect-k (static or per-example; smooth-step, binary
  codes, softmax-mixed selectors, entropy regulariser plus the unused-code
  term when E is not a power of two), softmax or top-k;
* towers: stacked per-task MLPs to ``num_classes`` logits.

A static DSelect-k gate's weights do not depend on the input, so the peer
computes them once per step, ``(1, n)``, and broadcasts them in the mixture
product; ours broadcasts the logits to ``(B, k, m)`` first. The values are the
same, and so are the gradients (a sum over the batch of identical terms).

Loss: per-task mean softmax cross-entropy, weighted sum over tasks, plus
``gate_reg_weight`` (ramped over ``gate_reg_warmup_epochs``) times the summed
gate regularisers.
"""
import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from bench.peer.common import PeerModel, TaskTowers, init_matrix_

_EPS = 1e-6


def smooth_step(t, gamma):
    cubic = -2.0 / gamma ** 3 * t ** 3 + 3.0 / (2.0 * gamma) * t + 0.5
    return torch.where(t <= -gamma / 2.0, torch.zeros_like(t),
                       torch.where(t >= gamma / 2.0, torch.ones_like(t), cubic))


def binary_codes(num_experts):
    bits = max(1, math.ceil(math.log2(num_experts)))
    return np.array([[(e >> b) & 1 for b in range(bits)] for e in range(num_experts)], np.float32)


class DSelectKGate(nn.Module):
    """``x (B, input_dim) -> (weights (1 or B, n), regulariser ())``."""

    def __init__(self, num_experts, k, gamma, mode, input_dim, generator):
        super().__init__()
        codes = binary_codes(num_experts)
        self.num_experts, self.k, self.gamma, self.mode = num_experts, int(k), float(gamma), mode
        self.bits = codes.shape[1]
        self.power_of_two = num_experts == 2 ** self.bits
        self.register_buffer("codes", torch.from_numpy(codes.reshape(1, 1, num_experts, self.bits)))
        if mode == "static":
            z = torch.empty(1, self.k, self.bits).uniform_(-gamma / 100, gamma / 100, generator=generator)
            w = torch.empty(1, self.k).uniform_(-0.05, 0.05, generator=generator)
            self.z, self.w = nn.Parameter(z), nn.Parameter(w)
        elif mode == "per_example":
            # MindSpore's nn.Dense default init is torch's nn.Linear default
            self.z_dense = nn.Linear(input_dim, self.k * self.bits)
            self.w_dense = nn.Linear(input_dim, self.k)
        else:
            raise ValueError(f"gate_mode must be static or per_example, got {mode!r}")

    def forward(self, x):
        if self.mode == "static":
            z, w = self.z, self.w
        else:
            z = self.z_dense(x).view(-1, self.k, self.bits)
            w = self.w_dense(x)
        s = smooth_step(z, self.gamma).unsqueeze(2)                       # (b, k, 1, m)
        terms = self.codes * s + (1.0 - self.codes) * (1.0 - s)          # (b, k, n, m)
        r = terms[..., 0]
        for b in range(1, self.bits):
            r = r * terms[..., b]                                          # (b, k, n)
        weights = (F.softmax(w, dim=-1).unsqueeze(2) * r).sum(1)          # (b, n)
        reg = -(r * torch.log(r + _EPS)).sum(2).sum(1).mean()
        if not self.power_of_two:
            reg = reg + (1.0 / (r.sum(2) + _EPS)).sum(1).mean()
        return weights, reg


class SoftmaxGate(nn.Module):
    def __init__(self, input_dim, num_experts, init, scale, generator):
        super().__init__()
        kernel = torch.empty(input_dim, num_experts)
        init_matrix_(kernel, init, scale, input_dim, num_experts, generator)
        self.kernel = nn.Parameter(kernel)
        self.bias = nn.Parameter(torch.zeros(num_experts))

    def logits(self, x):
        return torch.addmm(self.bias, x, self.kernel)

    def forward(self, x):
        return F.softmax(self.logits(x), dim=-1), x.new_zeros(())


class TopKGate(SoftmaxGate):
    def __init__(self, input_dim, num_experts, k, init, scale, generator):
        super().__init__(input_dim, num_experts, init, scale, generator)
        self.k = int(k)

    def forward(self, x):
        logits = self.logits(x)
        values = torch.topk(logits, self.k, dim=1).values
        keep = (logits >= values[:, self.k - 1:self.k]).float()
        shifted = torch.exp(logits - values[:, 0:1]) * keep
        return shifted / shifted.sum(1, keepdim=True), x.new_zeros(())


class CNNExperts(nn.Module):
    def __init__(self, image_shape, num_experts, conv_channels, kernel_size, expert_units, init,
                 scale, generator):
        super().__init__()
        channels, height, width = (int(v) for v in image_shape)
        e, k = int(num_experts), int(kernel_size)
        layers, cin = [], channels
        for i, cout in enumerate(int(c) for c in conv_channels):
            conv = nn.Conv2d(cin if i == 0 else e * cin, e * cout, k, bias=False,
                             groups=1 if i == 0 else e)
            bound = 1.0 / math.sqrt(cin * k * k)
            with torch.no_grad():
                conv.weight.uniform_(-bound, bound, generator=generator)
            layers += [conv, nn.BatchNorm2d(e * cout), nn.ReLU(), nn.MaxPool2d(2, 2)]
            height, width = (height - k + 1) // 2, (width - k + 1) // 2
            cin = cout
        self.features = nn.Sequential(*layers)
        self.num_experts, self.flat_dim = e, cin * height * width
        units = [int(u) for u in expert_units]
        self.mlp = TaskTowers(e, self.flat_dim, units[:-1], units[-1], init, scale, 0.0, generator)

    def forward(self, x):
        h = self.features(x).reshape(-1, self.num_experts, self.flat_dim)
        return self.mlp(h)                                                  # (B, E, U)


class MultiTaskMoE(nn.Module):
    def __init__(self, cfg, feature_map, generator):
        super().__init__()
        image_shape = [int(v) for v in feature_map["image_shape"]]
        self.num_tasks = len(feature_map["tasks"])
        self.input_dim = int(np.prod(image_shape))
        e = int(cfg.num_experts)
        self.experts = CNNExperts(image_shape, e, cfg.conv_channels, cfg.kernel_size,
                                  cfg.expert_units, cfg.init, cfg.init_scale, generator)
        gates = []
        for _ in range(self.num_tasks):
            if cfg.gate == "dselect_k":
                gates.append(DSelectKGate(e, cfg.k, cfg.gamma, cfg.gate_mode, self.input_dim, generator))
            elif cfg.gate == "softmax":
                gates.append(SoftmaxGate(self.input_dim, e, cfg.init, cfg.init_scale, generator))
            else:
                gates.append(TopKGate(self.input_dim, e, cfg.k, cfg.init, cfg.init_scale, generator))
        self.gates = nn.ModuleList(gates)
        self.towers = TaskTowers(self.num_tasks, int(cfg.expert_units[-1]), list(cfg.tower_units),
                                 int(feature_map["num_classes"]), cfg.init, cfg.init_scale,
                                 cfg.tower_dropout, generator)

    def forward_with_reg(self, x):
        experts = self.experts(x)                                           # (B, E, U)
        flat = x.reshape(x.shape[0], self.input_dim)
        weights, regs = [], []
        for gate in self.gates:
            w, r = gate(flat)
            weights.append(w)
            regs.append(r)
        mixed = torch.matmul(torch.stack(weights, dim=1), experts)         # (B, T, U)
        reg = regs[0]
        for r in regs[1:]:
            reg = reg + r
        return self.towers(mixed), reg                                      # (B, T, classes)

    def forward(self, x):
        return self.forward_with_reg(x)[0]


class DSelectKPeer(PeerModel):
    def __init__(self, cfg, feature_map, seed=1, steps_per_epoch=None):
        generator = torch.Generator().manual_seed(int(seed))
        module = MultiTaskMoE(cfg, feature_map, generator)
        tasks = list(feature_map["tasks"])
        self.task_weights = torch.tensor(cfg.get("task_weights") or [1.0] * len(tasks),
                                         dtype=torch.float32)
        self.num_classes = int(feature_map["num_classes"])
        self.reg_weight, self.reg_warmup = float(cfg.gate_reg_weight), float(cfg.gate_reg_warmup_epochs)
        bn = [p for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
              for p in m.parameters()]
        super().__init__(module, cfg, feature_map, module.parameters(), no_decay=bn,
                         steps_per_epoch=steps_per_epoch)

    def _reg_weight(self):
        """``scheduled_weight`` of src/engine/heads.py for the current step
        (the ramp advances every step)."""
        if self.reg_warmup <= 0:
            return self.reg_weight
        progress = (self.global_step + 1) / self.steps_per_epoch
        return self.reg_weight * min(1.0, progress / self.reg_warmup)

    def loss(self, images, labels):
        logits, reg = self.module.forward_with_reg(images)
        per_row = F.cross_entropy(logits.reshape(-1, self.num_classes), labels.reshape(-1).long(),
                                  reduction="none")
        per_task = per_row.view(-1, len(self.task_weights)).mean(0)
        return (per_task * self.task_weights).sum() + self._reg_weight() * reg

    def activation(self, logits):
        return F.softmax(logits, dim=-1)


PEER = DSelectKPeer

# the cases of ``python -m bench.peer.check``: (name, config overrides, run the init check)
CHECKS = [
    ("dselect_k", ["--batch_size", "32"], True),
    ("dselect_k per_example 6 experts wd",
     ["--batch_size", "32", "--gate_mode", "per_example", "--num_experts", "6",
      "--weight_decay", "0.001", "--gate_reg_warmup_epochs", "2"], True),
    ("dselect_k topk native conv",
     ["--batch_size", "16", "--gate", "topk", "--conv_impl", "native", "--optimizer", "adagrad"],
     False),
]


def extra_init_checks(cfg):
    """``(lines, failures)``: a static gate's logits are a handful of values,
    so the init check pools 200 gates of each side."""
    lines, failures = [], []
    if cfg.gate != "dselect_k" or cfg.gate_mode != "static":
        return lines, failures
    from bench.peer.check import _ks, _ks_critical
    from src.dselect_k.gate import DSelectKGate as OurGate
    gamma, e, k = float(cfg.gamma), int(cfg.num_experts), int(cfg.k)
    ours = [OurGate(e, k, gamma=gamma, seed=(s, 0)) for s in range(200)]
    peers = [DSelectKGate(e, k, gamma, "static", None, torch.Generator().manual_seed(s))
             for s in range(200)]
    for attr in ("z", "w"):
        a = np.concatenate([getattr(g, attr).asnumpy().ravel() for g in ours])
        b = np.concatenate([getattr(g, attr).detach().numpy().ravel() for g in peers])
        d, crit = _ks(a, b), _ks_critical(a.size, b.size)
        lines.append(f"gates.*.{attr} (200 gates pooled) n={a.size} max {np.abs(a).max():.3g}/"
                     f"{np.abs(b).max():.3g} KS {d:.3f}<{crit:.3f}")
        if d > crit:
            failures.append(f"gates.*.{attr}: KS {d:.3f} > {crit:.3f}")
    return lines, failures
