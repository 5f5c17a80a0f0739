"""The softmax-gated mixture of ReLU experts on CPU in one pass: a MindSpore
custom operator (AOT, C++: ``gated_mixture.cc``).

In the graph, a mixture of experts' head is several operators, each a pass
over the batch: the experts' ReLU, the gates' softmax (with its reshapes)
and the weighted sum (products with 0/1 matrices, or one small product per
sample). This operator does all of it row by row, reading each row's expert
outputs and gate logits once. Results equal the graph's up to rounding.

Its gradient is a second kernel of the same library (``GatedMixtureGrad``),
so training can use it too (config keys ``predict_mixture`` and
``train_mixture``). The library is compiled with the system's C++ compiler
on first use and cached (:mod:`src.engine.native`).
"""
import os

import numpy as np
from mindspore import Tensor, nn

from src.engine.native import aot_with_gradient, build_library, require_cpu

SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "gated_mixture.cc")
KERNEL = "GatedMixture"


def library_path(portable=False, key="predict_mixture"):
    """The compiled library; ``portable``: without the AVX2 path (tests);
    ``key``: the config key named in the error without a compiler."""
    flags = ("-pthread",) + (("-DGATED_MIXTURE_PORTABLE",) if portable else ())
    return build_library(SOURCE, "gated_mixture", f"set {key}: graph", flags)


class GatedMixture(nn.Cell):
    """``(experts (B, E*U), gates (B, T*E)) -> (B, T*U)``, float32, on CPU:
    for each task ``t``, the softmax of its ``E`` gate logits weighting the
    ReLU of the ``E`` experts' ``U`` outputs (column ``t*U + u``). Expert
    ``e``'s outputs are columns ``e*U .. e*U + U`` of ``experts``; task ``t``'s
    logits columns ``t*E .. t*E + E`` of ``gates``. With ``gates`` None,
    ``experts`` holds both: the experts' ``E*U`` columns, then the gates'.
    Rows are split among up to ``threads`` threads (at least 1024 rows each).
    The gradient with respect to ``experts`` and ``gates`` is a kernel too.
    ``key``: the config key that chose it, named in errors.
    """

    def __init__(self, num_tasks, num_experts, expert_units, threads=1, key="predict_mixture"):
        super().__init__()
        require_cpu(f"{key}: native", f"set {key}: graph")
        for name, value in (("num_tasks", num_tasks), ("num_experts", num_experts),
                            ("expert_units", expert_units), ("threads", threads)):
            if int(value) < 1:
                raise ValueError(f"GatedMixture: {name} must be a positive integer, got {value}")
        t, e, u = int(num_tasks), int(num_experts), int(expert_units)
        width = t * u
        self.mix = aot_with_gradient(library_path(key=key), KERNEL, 2,
                                     lambda experts, _gates, _layout: (experts[0], width),
                                     lambda experts, _gates, _layout: experts)
        # T, E, U, the experts' and the gates' first column, threads
        self.apart = Tensor(np.array([t, e, u, 0, 0, int(threads)], np.int32))
        self.together = Tensor(np.array([t, e, u, 0, e * u, int(threads)], np.int32))

    def construct(self, experts, gates=None):
        if gates is None:
            return self.mix(experts, experts, self.together)
        return self.mix(experts, gates, self.apart)
