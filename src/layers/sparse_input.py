"""``x @ w + bias`` for a mostly-zero input on CPU: a MindSpore custom operator (AOT,
C++: ``sparse_input.cc``) that skips the input's zeros.

Census-Income's input is one-hot columns (about one in nine set) plus a few
numerics. A dense product reads every column and multiplies by it; this
kernel lists each row's nonzero columns and adds up only their rows of
``w``: one pass over the input plus ``w``'s width in multiply-adds per
nonzero. Results equal the dense product's up to the order of the sums.

Prediction only: the operator has no gradient (a network selects it in eval
mode; config key ``input_product``). The library is
compiled with the system's C++ compiler on first use and cached
(:mod:`src.engine.native`).
"""
import os

from mindspore import nn, ops

from src.engine.native import build_library, kernel_ints, require_cpu

SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "sparse_input.cc")
KERNEL = "SparseInputProduct"


def library_path(portable=False):
    """The compiled library; ``portable``: without the AVX2 path (tests)."""
    flags = ("-pthread",) + (("-DSPARSE_INPUT_PORTABLE",) if portable else ())
    return build_library(SOURCE, "sparse_input", "set input_product: matmul", flags)


def _out_shape(x, w, _bias, _threads):
    return (x[0], w[1])


def _out_dtype(x, _w, _bias, _threads):
    return x


class SparseInputProduct(nn.Cell):
    """``(x (B, K), w (K, N), bias (N,)) -> x @ w + bias (B, N)``, float32,
    on CPU, split among up to ``threads`` threads (at least 256 rows each)."""

    def __init__(self, threads=1):
        super().__init__()
        require_cpu("input_product: sparse", "set input_product: matmul")
        self.threads = kernel_ints("SparseInputProduct", threads)
        self.product = ops.Custom(f"{library_path()}:{KERNEL}", out_shape=_out_shape,
                                  out_dtype=_out_dtype, func_type="aot")

    def construct(self, x, w, bias):
        return self.product(x, w, bias, self.threads)
