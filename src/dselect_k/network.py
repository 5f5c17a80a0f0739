"""The multi-task mixture-of-experts network of the DSelect-k MultiMNIST study.

Input: images ``(B, C, H, W)`` (MultiMNIST: ``(B, 1, 36, 36)``, pixels in
[0, 1]). Output: logits ``(B, T, num_classes)``, one row of class scores per
task (apply a softmax over the last axis for probabilities).

- experts: ``E`` CNNs, each ``[Conv(k x k) -> BatchNorm -> ReLU -> MaxPool 2]``
  per entry of ``conv_channels``, flattened, then an MLP over
  ``expert_units`` (ReLU between layers, linear output). All experts run
  as one layer each (:class:`src.layers.conv.ExpertConv2d` and batched
  matrix products), which is the same arithmetic as E separate CNNs;
- gates: one per task (upstream PaddleRec shared one gate between the tasks),
  over the flattened image: ``dselect_k`` (static or per-example, see
  :class:`DSelectKGate`), ``softmax`` (MMoE) or ``topk``;
- towers: one MLP per task over its mixture of expert outputs
  (:class:`src.layers.towers.TaskTowers`).

The network returns logits only: the loss applies the one softmax
(upstream applied a softmax before a cross-entropy that applies another).
:meth:`forward_with_reg` also returns the sum of the gates' regularisers,
which the training loss adds with its scheduled weight.
"""
import math

import numpy as np
from mindspore import nn, ops
from mindspore.common import initializer as init

from src.dselect_k.gate import DSelectKGate
from src.layers.conv import ExpertConv2d
from src.layers.gates import SoftmaxGate, TopKGate
from src.layers.initializers import init_matrix, make_initializer
from src.layers.towers import TaskTowers

GATES = ("dselect_k", "softmax", "topk")


def _conv_weight(count, out_channels, in_channels, k):
    """PyTorch's default conv initialisation: U(+-1/sqrt(fan_in))."""
    bound = 1.0 / math.sqrt(in_channels * k * k)
    return init.initializer(init.Uniform(bound), (count * out_channels, in_channels, k, k)) \
        .init_data().asnumpy()


class CNNExperts(nn.Cell):
    """``E`` CNN experts: ``(B, C, H, W) -> (B, E, expert_units[-1])``."""

    def __init__(self, image_shape, num_experts, conv_channels, kernel_size, expert_units,
                 weight_init, conv_impl, pool=None, predict_conv=None):
        super().__init__()
        channels, height, width = (int(v) for v in image_shape)
        if not conv_channels or not expert_units:
            raise ValueError("experts need at least one conv layer and one dense layer")
        layers = []
        cin = channels
        for i, cout in enumerate(int(c) for c in conv_channels):
            if height < kernel_size or width < kernel_size:
                raise ValueError(f"conv layer {i}: a {kernel_size}x{kernel_size} kernel does not fit "
                                 f"the {height}x{width} feature map; use fewer conv_channels or a "
                                 "smaller kernel_size")
            layers += [ExpertConv2d(num_experts, cin, cout, kernel_size, (height, width),
                                    shared_input=i == 0, impl=conv_impl,
                                    weight=_conv_weight(num_experts, cout, cin, kernel_size),
                                    predict_impl=predict_conv),
                       nn.BatchNorm2d(num_experts * cout)]
            # the kernel takes both places, so later layers keep their parameters' names
            layers += ([pool(), nn.Identity()] if pool is not None
                       else [nn.ReLU(), nn.MaxPool2d(kernel_size=2, stride=2)])
            height, width = (height - kernel_size + 1) // 2, (width - kernel_size + 1) // 2
            if height < 1 or width < 1:
                raise ValueError(f"conv layer {i} leaves no pixels: the image is too small for "
                                 f"{len(conv_channels)} conv layers of kernel {kernel_size}")
            cin = cout
        self.features = nn.SequentialCell(layers)
        self.num_experts = num_experts
        self.flat_dim = cin * height * width
        units = [int(u) for u in expert_units]
        self.mlp = TaskTowers(num_experts, self.flat_dim, units[:-1], units[-1], weight_init)
        self.out_dim = units[-1]

    def construct(self, x):
        h = self.features(x)                                             # (B, E*c, h, w)
        h = h.reshape((-1, self.num_experts, self.flat_dim))             # per expert, channel-major
        return self.mlp(h)                                               # (B, E, U)


class MultiTaskMoE(nn.Cell):
    """CNN experts, one gate per task, one tower per task (see the module docstring).

    Args:
        image_shape: ``(C, H, W)``.
        num_tasks, num_classes: T tasks of ``num_classes`` classes each.
        num_experts, conv_channels, kernel_size, expert_units: the experts.
        tower_units: hidden units of each task tower.
        gate: ``dselect_k``, ``softmax`` or ``topk``.
        k: experts a dselect_k / topk gate selects.
        gamma, gate_mode: the DSelect-k smooth-step width and ``static`` /
            ``per_example``.
        conv_impl: ``native`` or ``matmul`` (:class:`ExpertConv2d`).
        predict_conv: the same outside training (None: ``conv_impl``).
        init, init_scale: initialiser of the dense layers.
        tower_dropout: dropout between tower layers while training.
        seed: seed of the DSelect-k gates' initial logits.
        gate_balance: load-balancing weight of per-example DSelect-k gates.
        gate_overlap: weight of the DSelect-k term that keeps a task's selectors apart.
        gate_start: where the DSelect-k selectors start (:class:`DSelectKGate`'s ``start``).
        expert_pool: None (the experts' ReLU and 2x2 max pooling as
            MindSpore's operators) or a maker of a cell doing both
            (:class:`src.layers.relu_pool.ReluPool`, the CPU kernel).
    """

    def __init__(self, image_shape, num_tasks=2, num_classes=10, num_experts=8,
                 conv_channels=(10, 20), kernel_size=5, expert_units=(50, 50),
                 tower_units=(50, 50), gate="dselect_k", k=2, gamma=1.0, gate_mode="static",
                 conv_impl="native", init="xavier_uniform", init_scale=0.01, tower_dropout=0.0,
                 seed=0, gate_balance=0.0, gate_overlap=0.0, gate_start=0.0, expert_pool=None,
                 predict_conv=None):
        super().__init__()
        if gate not in GATES:
            raise ValueError(f"gate must be one of {GATES}, got {gate!r}")
        for name, value in (("num_tasks", num_tasks), ("num_classes", num_classes),
                            ("num_experts", num_experts), ("kernel_size", kernel_size)):
            if int(value) < 1:
                raise ValueError(f"{name} must be a positive integer, got {value}")
        weight_init = make_initializer(init, init_scale)
        self.num_tasks, self.num_classes = int(num_tasks), int(num_classes)
        self.experts = CNNExperts(image_shape, num_experts, conv_channels, kernel_size,
                                  expert_units, weight_init, conv_impl, pool=expert_pool,
                                  predict_conv=predict_conv)
        self.input_dim = int(np.prod(image_shape))
        gates = []
        for t in range(self.num_tasks):
            if gate == "dselect_k":
                gates.append(DSelectKGate(num_experts, k, gamma=gamma, mode=gate_mode,
                                          input_dim=self.input_dim, seed=(int(seed), t),
                                          balance=gate_balance, overlap=gate_overlap,
                                          start=gate_start))
            else:
                weight = init_matrix(weight_init, self.input_dim, num_experts)
                gates.append(SoftmaxGate(self.input_dim, num_experts, weight) if gate == "softmax"
                             else TopKGate(self.input_dim, num_experts, k, weight))
        self.gates = nn.CellList(gates)
        self.towers = TaskTowers(self.num_tasks, self.experts.out_dim, list(tower_units),
                                 self.num_classes, weight_init, dropout=tower_dropout)

    def forward_with_reg(self, x):
        """``(logits (B, T, classes), summed gate regulariser ())``."""
        experts = self.experts(x)                                        # (B, E, U)
        flat = x.reshape((x.shape[0], self.input_dim))
        weights, reg = self.gates[0](flat)
        mixed = ops.bmm(weights.expand_dims(1), experts)                 # (B, 1, U)
        for t in range(1, self.num_tasks):
            w_t, r_t = self.gates[t](flat)
            mixed = ops.concat((mixed, ops.bmm(w_t.expand_dims(1), experts)), axis=1)
            reg = reg + r_t
        return self.towers(mixed), reg                                   # (B, T, classes)

    def construct(self, x):
        logits, _ = self.forward_with_reg(x)
        return logits

    def gate_weights(self, x):
        """``(B, T, E)`` expert weights of every task's gate (for inspection)."""
        flat = x.reshape((x.shape[0], self.input_dim))
        out = self.gates[0](flat)[0].expand_dims(1)
        for t in range(1, self.num_tasks):
            out = ops.concat((out, self.gates[t](flat)[0].expand_dims(1)), axis=1)
        return out

