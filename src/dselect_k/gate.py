"""The DSelect-k gate.

Math (n experts, m = ceil(log2 n) bits, k selectors, smooth-step S with
width gamma):

- ``S(t) = 0`` for ``t <= -gamma/2``, ``1`` for ``t >= gamma/2``, else
  ``-2/gamma^3 t^3 + 3/(2 gamma) t + 1/2``;
- expert ``e`` has the binary code ``c[e, b]`` (bit ``b`` of ``e``);
- selector ``i`` has logits ``z[i, :]`` (m values); its weight on expert ``e``
  is ``r_i[e] = prod_b (c[e,b] ? S(z[i,b]) : 1 - S(z[i,b]))``: once every
  ``S(z[i,b])`` is 0 or 1, ``r_i`` is one-hot on the expert whose code matches;
- the gate mixes the selectors with ``softmax(w)``: ``g = sum_i softmax(w)_i r_i``.

Static mode: ``z`` (k, m) and ``w`` (k,) are parameters. Per-example mode:
``z = Dense(x -> k*m)`` and ``w = Dense(x -> k)``.

Regulariser (returned beside the weights, scaled by the caller's schedule):
the entropy of every selector's ``r_i`` (pushes each selector to one expert)
plus, when n is not a power of two, ``sum_i 1 / sum_e r_i[e]`` so that codes
without an expert cannot take the weight. Per-example gates can add
``balance`` times the squared coefficient of variation of the experts' mean
weight over the batch (Shazeer et al.'s importance loss): without it the
entropy term is cheapest to satisfy through the logits' bias, and every
example ends up on the same k experts. ``overlap`` times
``sum_{i<j} <r_i, r_j>`` (the chance that two of a task's selectors pick the
same expert, 0 once they pick different ones) keeps the k selectors from
collapsing on one expert.

Start: the paper's logits ``z ~ U(+-gamma/100)`` put every selector in the
middle of the smooth-step, where a task's k selectors get the same gradient
from the task and the overlap term has none, so they can end on one expert
(docs/results.md). ``start`` > 0 instead puts them on k different experts'
codes (chosen by the seed), ``z = +-start * gamma/2``: that fraction of the
way from the middle to the edge, where the gradient is still non-zero.

The product over bits is unrolled (m is small): no ReduceProd, which the
ONNX route to MindSpore Lite does not support.
"""
import math

import numpy as np
from mindspore import Parameter, Tensor, nn, ops

_EPS = 1e-6


def smooth_step(t, gamma):
    """The cubic smooth-step, elementwise on a tensor."""
    cubic = -2.0 / gamma ** 3 * t ** 3 + 3.0 / (2.0 * gamma) * t + 0.5
    lower = ops.full_like(t, 0.0)
    upper = ops.full_like(t, 1.0)
    return ops.where(t <= -gamma / 2.0, lower, ops.where(t >= gamma / 2.0, upper, cubic))


def binary_codes(num_experts):
    """``(n, m)`` float32 matrix: row ``e`` holds the bits of ``e`` (least significant first)."""
    bits = max(1, math.ceil(math.log2(num_experts)))
    return np.array([[(e >> b) & 1 for b in range(bits)] for e in range(num_experts)], np.float32)


class DSelectKGate(nn.Cell):
    """Expert weights ``(B, n)`` for one task, and the gate's regulariser.

    Args:
        num_experts: n >= 2.
        k: number of single-expert selectors (1 <= k <= n).
        gamma: width of the smooth-step's cubic region.
        mode: ``static`` (one set of logits for all inputs) or ``per_example``.
        input_dim: width of ``x`` (per_example mode).
        seed: seed of the initial logits (z ~ U(+-gamma/100), w ~ U(+-0.05)).
        balance: weight of the load-balancing term (per_example mode only).
        overlap: weight of the term that keeps the selectors apart (k >= 2).
        start: in [0, 1): 0 for the paper's start, else the selectors start on
            distinct codes at ``|z| = start * gamma/2`` (per_example mode: the
            bias of the logits' dense layer).

    ``construct(x)`` takes ``x`` of shape ``(B, input_dim)`` (in static mode only
    its batch size is used) and returns ``(weights (B, n), regulariser ())``.
    """

    def __init__(self, num_experts, k, gamma=1.0, mode="static", input_dim=None, seed=None,
                 balance=0.0, overlap=0.0, start=0.0):
        super().__init__()
        if num_experts < 2:
            raise ValueError(f"DSelect-k needs at least 2 experts, got {num_experts}")
        if not 1 <= k <= num_experts:
            raise ValueError(f"k must lie in [1, num_experts={num_experts}], got {k}")
        if gamma <= 0:
            raise ValueError(f"gamma must be positive, got {gamma}")
        if mode not in ("static", "per_example"):
            raise ValueError(f"mode must be 'static' or 'per_example', got {mode!r}")
        if mode == "per_example" and not input_dim:
            raise ValueError("per_example mode needs input_dim")
        if balance < 0 or (balance and mode != "per_example"):
            raise ValueError(f"the load-balancing weight must be >= 0 and applies to per_example "
                             f"gates only (a static gate routes every example alike), got "
                             f"{balance} with mode {mode!r}")
        if overlap < 0:
            raise ValueError(f"the selector-overlap weight must be >= 0, got {overlap}")
        if not 0 <= start < 1:
            raise ValueError(f"the selectors' start must lie in [0, 1) (a fraction of the way to "
                             f"the smooth-step's edge, where the gradient is 0), got {start}")
        codes = binary_codes(num_experts)
        self.num_experts, self.k, self.gamma, self.mode = num_experts, k, float(gamma), mode
        self.balance, self.overlap = float(balance), float(overlap)
        self.bits = codes.shape[1]
        self.power_of_two = num_experts == 2 ** self.bits
        self.codes = Tensor(codes.reshape(1, 1, num_experts, self.bits))    # (1, 1, n, m)
        rng = np.random.default_rng(seed)
        z_init = rng.uniform(-gamma / 100, gamma / 100, (k, self.bits)).astype(np.float32)
        w_init = rng.uniform(-0.05, 0.05, (k,)).astype(np.float32)
        if start > 0:
            experts = rng.choice(num_experts, size=k, replace=False)
            z_init = ((2.0 * codes[experts] - 1.0) * start * gamma / 2.0).astype(np.float32)
        if mode == "static":
            self.z = Parameter(Tensor(z_init.reshape(1, k, self.bits)), name="z")
            self.w = Parameter(Tensor(w_init.reshape(1, k)), name="w")
        else:
            self.z_dense = nn.Dense(input_dim, k * self.bits)
            self.w_dense = nn.Dense(input_dim, k)
            if start > 0:
                self.z_dense.bias.set_data(Tensor(z_init.reshape(-1)))
        self.softmax = nn.Softmax(axis=-1)

    def selectors(self, z):
        """``(B, k, n)`` single-expert selector weights from logits ``(B, k, m)``."""
        s = smooth_step(z, self.gamma).expand_dims(2)                      # (B, k, 1, m)
        terms = self.codes * s + (1.0 - self.codes) * (1.0 - s)           # (B, k, n, m)
        out = terms[..., 0]
        for b in range(1, self.bits):
            out = out * terms[..., b]
        return out

    def construct(self, x):
        if self.mode == "static":
            batch = x.shape[0]
            z = ops.broadcast_to(self.z, (batch, self.k, self.bits))
            w = ops.broadcast_to(self.w, (batch, self.k))
        else:
            z = self.z_dense(x).reshape((-1, self.k, self.bits))
            w = self.w_dense(x)
        r = self.selectors(z)                                               # (B, k, n)
        weights = (self.softmax(w).expand_dims(2) * r).sum(axis=1)          # (B, n)
        entropy = -(r * ops.log(r + _EPS)).sum(axis=2).sum(axis=1).mean()
        reg = entropy
        if not self.power_of_two:
            reg = reg + (1.0 / (r.sum(axis=2) + _EPS)).sum(axis=1).mean()
        if self.overlap > 0 and self.k > 1:
            gram = ops.bmm(r, r.transpose(0, 2, 1))                          # (B, k, k)
            pairs = (gram.sum(axis=(1, 2)) - (r * r).sum(axis=(1, 2))) / 2.0
            reg = reg + self.overlap * pairs.mean()
        if self.balance > 0:
            importance = weights.mean(axis=0)                               # (n,)
            mean = importance.mean()
            cv2 = ((importance - mean) ** 2).mean() / (mean * mean + _EPS)
            reg = reg + self.balance * cv2
        return weights, reg
