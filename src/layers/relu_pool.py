"""ReLU and 2x2 max pooling on CPU in one pass: a MindSpore custom operator
(AOT, C++: ``relu_pool.cc``), with its gradient a second kernel.

MindSpore 2.10's CPU ``MaxPoolGrad`` is slow for DSelect-k's expert layers,
and the graph's ReLU, pooling and their gradients are four passes over the
largest activations of the network; this operator is one pass each way.
Results equal ``nn.ReLU`` then ``nn.MaxPool2d(2, 2)`` (an odd last row or
column dropped), gradients too. Config key ``expert_pool`` (DSelect-k); the
library is compiled with the system's C++ compiler on first use and cached
(:mod:`src.engine.native`).
"""
import os

from mindspore import nn

from src.engine.native import aot_with_gradient, build_library, kernel_ints, require_cpu

SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "relu_pool.cc")


def library_path(key="expert_pool"):
    """The compiled library; ``key``: the config key named in the error
    without a compiler."""
    return build_library(SOURCE, "relu_pool", f"set {key}: graph", ("-pthread",))


class ReluPool(nn.Cell):
    """``(B, C, H, W) -> (B, C, H // 2, W // 2)`` float32, on CPU: the ReLU
    of each 2x2 window's largest value. The ``B*C`` planes are split among up
    to ``threads`` threads. ``key``: the config key that chose it, named in
    errors."""

    def __init__(self, threads=1, key="expert_pool"):
        super().__init__()
        require_cpu(f"{key}: native", f"set {key}: graph")
        self.layout = kernel_ints("ReluPool", threads)
        self.pool = aot_with_gradient(library_path(key), "ReluPool", 1,
                                      lambda x, _layout: (x[0], x[1], x[2] // 2, x[3] // 2),
                                      lambda x, _layout: x)

    def construct(self, x):
        return self.pool(x, self.layout)
