"""A hidden layer's bias and ReLU in one pass on CPU, for prediction: a
MindSpore custom operator (AOT, C++: ``bias_relu.cc``).

The graph adds the bias (``BiasAdd``) and takes the ReLU in two passes over
the layer's output, the largest arrays of DeepFM's and DLRM's prediction;
the kernel reads the product once and writes the activation. Results equal
the graph's to the bit (one addition and one maximum per value).

Prediction only: the operator has no gradient (:class:`~src.layers.mlp.MLP`
uses it in eval mode; config key ``predict_mlp``). The library is compiled
with the system's C++ compiler on first use and cached
(:mod:`src.engine.native`).
"""
import os

from mindspore import nn, ops

from src.engine.native import build_library, kernel_choice, kernel_ints, require_cpu

SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bias_relu.cc")
KERNEL = "BiasRelu"
PREDICT_MLP = ("graph", "native")


def library_path():
    return build_library(SOURCE, "bias_relu", "set predict_mlp: graph", ("-pthread",))


class BiasRelu(nn.Cell):
    """``(x (B, N), bias (N,)) -> max(x + bias, 0)`` float32, on CPU. Rows
    are split among up to ``threads`` threads."""

    def __init__(self, threads=1):
        super().__init__()
        require_cpu("predict_mlp: native", "set predict_mlp: graph")
        self.threads = kernel_ints("BiasRelu", threads)
        self.bias_relu = ops.Custom(f"{library_path()}:{KERNEL}",
                                    out_shape=lambda x, _bias, _threads: x,
                                    out_dtype=lambda x, _bias, _threads: x, func_type="aot")

    def construct(self, x, bias):
        return self.bias_relu(x, bias, self.threads)


def predict_mlp(cfg):
    """What config key ``predict_mlp`` names for the MLPs' prediction: None
    for ``graph`` (MindSpore's ``BiasAdd`` and ``ReLU``), a
    :class:`BiasRelu` for ``native``."""
    return kernel_choice(cfg, "predict_mlp", PREDICT_MLP, lambda threads: BiasRelu(threads))
