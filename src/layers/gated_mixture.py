"""The softmax-gated mixture of ReLU experts on CPU in one pass: a MindSpore
custom operator (AOT, C++: ``gated_mixture.cc``).

In the graph, a mixture of experts' head is several operators, each a pass
over the batch: the experts' ReLU, the gates' softmax (with its reshapes)
and the weighted sum (products with 0/1 matrices, or one small product per
sample). This operator does all of it row by row, reading each row's expert
outputs and gate logits once. Results equal the graph's up to rounding.

Prediction only: the operator has no gradient (a network selects it in eval
mode; config key ``predict_mixture``). The library is compiled with the
system's C++ compiler on first use and cached (:mod:`src.engine.native`).
"""
import os

import numpy as np
from mindspore import Tensor, nn, ops

from src.engine.native import build_library, require_cpu

SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "gated_mixture.cc")
KERNEL = "GatedMixture"
FALLBACK = "set predict_mixture: graph"


def library_path(portable=False):
    """The compiled library; ``portable``: without the AVX2 path (tests)."""
    flags = ("-pthread",) + (("-DGATED_MIXTURE_PORTABLE",) if portable else ())
    return build_library(SOURCE, "gated_mixture", FALLBACK, flags)


class GatedMixture(nn.Cell):
    """``(experts (B, E*U), gates (B, T*E)) -> (B, T*U)``, float32, on CPU:
    for each task ``t``, the softmax of its ``E`` gate logits weighting the
    ReLU of the ``E`` experts' ``U`` outputs (column ``t*U + u``). Expert
    ``e``'s outputs are columns ``e*U .. e*U + U`` of ``experts``; task ``t``'s
    logits columns ``t*E .. t*E + E`` of ``gates``. With ``gates`` None,
    ``experts`` holds both: the experts' ``E*U`` columns, then the gates'.
    Rows are split among up to ``threads`` threads (at least 1024 rows each).
    """

    def __init__(self, num_tasks, num_experts, expert_units, threads=1):
        super().__init__()
        require_cpu("predict_mixture: native", FALLBACK)
        for name, value in (("num_tasks", num_tasks), ("num_experts", num_experts),
                            ("expert_units", expert_units), ("threads", threads)):
            if int(value) < 1:
                raise ValueError(f"GatedMixture: {name} must be a positive integer, got {value}")
        t, e, u = int(num_tasks), int(num_experts), int(expert_units)
        width = t * u
        self.mix = ops.Custom(f"{library_path()}:{KERNEL}",
                              out_shape=lambda experts, _gates, _layout: (experts[0], width),
                              out_dtype=lambda experts, _gates, _layout: experts,
                              func_type="aot")
        # T, E, U, the experts' and the gates' first column, threads
        self.apart = Tensor(np.array([t, e, u, 0, 0, int(threads)], np.int32))
        self.together = Tensor(np.array([t, e, u, 0, e * u, int(threads)], np.int32))

    def construct(self, experts, gates=None):
        if gates is None:
            return self.mix(experts, experts, self.together)
        return self.mix(experts, gates, self.apart)
