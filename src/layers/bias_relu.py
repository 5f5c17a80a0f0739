"""A hidden layer's bias and ReLU in one pass on CPU: a MindSpore custom
operator (AOT, C++: ``bias_relu.cc``).

The graph adds the bias and takes the ReLU in two passes over the layer's
output, the largest arrays of DeepFM's and DLRM's MLPs; the kernel reads the
product once and writes the activation. Results equal the graph's to the bit
(one addition and one maximum per value).

For prediction (:class:`~src.layers.mlp.MLP` uses it in eval mode; config
key ``predict_mlp``) the operator has no gradient; for training (config key
``train_mlp``) its gradient is a second kernel, the ReLU's gradient and the
bias's (the column sums) in one pass too; a layer followed by dropout in
training takes its dropout in the same pass (:meth:`BiasRelu.with_dropout`).
The library is compiled with the system's C++ compiler on first use and
cached (:mod:`src.engine.native`).
"""
import os

import numpy as np
from mindspore import Tensor, nn, ops
from mindspore import dtype as mstype

from src.engine.native import build_library, kernel_choice, kernel_ints, require_cpu

SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bias_relu.cc")
KERNEL = "BiasRelu"
MLP_KERNELS = ("graph", "native")


def library_path(key="predict_mlp"):
    """The compiled library; ``key``: the config key named in the error
    without a compiler."""
    return build_library(SOURCE, "bias_relu", f"set {key}: graph", ("-pthread",))


def _gradient(library, name):
    """The gradient kernel ``name``: ``(y (B, N), dy, ...) -> (dx (B, N), dbias (N,))``."""
    return ops.Custom(f"{library}:{name}", out_shape=lambda y, *_: (y, [y[1]]),
                      out_dtype=lambda y, *_: (y, y), func_type="aot")


class BiasRelu(nn.Cell):
    """``(x (B, N), bias (N,)) -> max(x + bias, 0)`` float32, on CPU. Rows
    are split among up to ``threads`` threads. ``gradient``: with its
    gradient kernel (``BiasReluGrad``), for training; ``key``: the config
    key that chose it, named in errors."""

    def __init__(self, threads=1, gradient=False, key="predict_mlp"):
        super().__init__()
        require_cpu(f"{key}: native", f"set {key}: graph")
        self.threads = kernel_ints("BiasRelu", threads)
        self.thread_count, self.key = int(threads), key
        library = library_path(key)
        bprop = None
        if gradient:
            grad = _gradient(library, f"{KERNEL}Grad")

            def bprop(_x, _bias, threads, out, dout):
                dx, dbias = grad(out, dout, threads)
                return dx, dbias, ops.zeros_like(threads)

        self.bias_relu = ops.Custom(f"{library}:{KERNEL}",
                                    out_shape=lambda x, _bias, _threads: x,
                                    out_dtype=lambda x, _bias, _threads: x, func_type="aot",
                                    bprop=bprop)

    def construct(self, x, bias):
        return self.bias_relu(x, bias, self.threads)

    def with_dropout(self, rate):
        """A :class:`BiasReluDropout` of rate ``rate`` on as many threads, for
        one layer (each draws its own masks)."""
        return BiasReluDropout(self.thread_count, rate, key=self.key)


class BiasReluDropout(nn.Cell):
    """``(x (B, N), bias (N,)) -> dropout(max(x + bias, 0))`` float32 in one
    pass, on CPU, for training, with its gradient kernel: inverted dropout of
    rate ``rate`` (kept values scaled by ``1 / (1 - rate)``). Every call draws
    a new key for its mask from MindSpore's seeded generator (``UniformInt``,
    as ``nn.Dropout`` draws its masks), and the kernel hashes each value's
    index with it: the mask does not depend on the threads."""

    draws_random = True          # several train steps in one graph would share its masks

    def __init__(self, threads, rate, key="train_mlp"):
        super().__init__()
        if not 0.0 < rate < 1.0:
            raise ValueError(f"BiasReluDropout: rate must lie in (0, 1), got {rate}")
        require_cpu(f"{key}: native", f"set {key}: graph")
        self.threads = kernel_ints("BiasReluDropout", threads)
        self.rate = Tensor(np.array([rate], np.float32))
        self.draw = ops.UniformInt()
        self.low, self.high = Tensor(0, mstype.int32), Tensor(2 ** 31 - 1, mstype.int32)
        library = library_path(key)
        grad = _gradient(library, f"{KERNEL}DropoutGrad")

        def bprop(_x, _bias, key_pair, threads, rate, out, dout):
            dx, dbias = grad(out, dout, threads, rate)
            return (dx, dbias, ops.zeros_like(key_pair), ops.zeros_like(threads),
                    ops.zeros_like(rate))

        self.dropout = ops.Custom(f"{library}:{KERNEL}Dropout",
                                  out_shape=lambda x, *_: x, out_dtype=lambda x, *_: x,
                                  func_type="aot", bprop=bprop)

    def construct(self, x, bias):
        key_pair = self.draw((2,), self.low, self.high)
        return self.dropout(x, bias, key_pair, self.threads, self.rate)


def predict_mlp(cfg):
    """What config key ``predict_mlp`` names for the MLPs' prediction: None
    for ``graph`` (MindSpore's ``BiasAdd`` and ``ReLU``), a
    :class:`BiasRelu` for ``native``."""
    return kernel_choice(cfg, "predict_mlp", MLP_KERNELS, lambda threads: BiasRelu(threads))


def train_mlp(cfg):
    """What config key ``train_mlp`` names for the MLPs' training: None for
    ``graph`` (MindSpore's addition and ``ReLU`` and their gradients), a
    :class:`BiasRelu` with its gradient kernel for ``native``."""
    return kernel_choice(cfg, "train_mlp", MLP_KERNELS,
                         lambda threads: BiasRelu(threads, gradient=True, key="train_mlp"))
