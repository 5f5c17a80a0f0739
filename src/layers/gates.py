"""Mixture-of-experts gates with the interface of the DSelect-k gate:
``construct(x) -> (weights (B, n), regulariser ())``.

- :class:`SoftmaxGate`: ``softmax(x W + b)`` over all experts (MMoE's gate);
- :class:`TopKGate`: the same logits, softmax over the ``k`` largest only,
  the other experts get exactly zero (Shazeer et al.'s top-k gate, without
  the noise term). Not differentiable where the top-k set changes, which is
  what DSelect-k addresses.

Neither has a regulariser; they return a zero so a network can treat all
gates alike.
"""
import mindspore as ms
from mindspore import Parameter, Tensor, nn, ops

import numpy as np


class SoftmaxGate(nn.Cell):
    """Dense softmax gate over ``num_experts`` experts from a ``(B, input_dim)`` input."""

    def __init__(self, input_dim, num_experts, weight):
        super().__init__()
        if tuple(weight.shape) != (input_dim, num_experts):
            raise ValueError(f"gate weight has shape {tuple(weight.shape)}, expected "
                             f"{(input_dim, num_experts)}")
        self.kernel = Parameter(Tensor(np.asarray(weight, np.float32)), name="kernel")
        self.bias = Parameter(Tensor(np.zeros(num_experts, np.float32)), name="bias")
        self.softmax = nn.Softmax(axis=-1)
        self.zero = Tensor(0.0, ms.float32)

    def logits(self, x):
        return ops.matmul(x, self.kernel) + self.bias

    def construct(self, x):
        return self.softmax(self.logits(x)), self.zero


class TopKGate(SoftmaxGate):
    """Softmax over the ``k`` largest logits; the rest are exactly zero."""

    def __init__(self, input_dim, num_experts, k, weight):
        super().__init__(input_dim, num_experts, weight)
        if not 1 <= k <= num_experts:
            raise ValueError(f"top-k gate: k must lie in [1, {num_experts}], got {k}")
        self.k = int(k)
        self.topk = ops.TopK(sorted=True)

    def construct(self, x):
        logits = self.logits(x)
        values, _ = self.topk(logits, self.k)
        kth = values[:, self.k - 1:self.k]                                  # (B, 1)
        keep = ops.cast(logits >= kth, ms.float32)
        shifted = ops.exp(logits - values[:, 0:1]) * keep
        return shifted / shifted.sum(axis=1, keepdims=True), self.zero
