"""DLRM's dot interaction on CPU in one pass: MindSpore custom operators
(AOT, C++: ``dot_interaction.cc``).

The graph stacks the rows under the bottom MLP's output, multiplies the
stack by itself (a Gram matrix per sample), selects its lower triangle and
concatenates the bottom output in front: five passes, the product computing
both triangles, and as many again for the gradient. The kernels read each
sample's vectors once and write the top MLP's input (or the vectors'
gradients). Results equal the graph's up to the order of the sums.

:class:`DotInteraction` also looks the rows up, for prediction (config key
``predict_interaction``; it has no gradient). :class:`DotPairs` takes the
looked-up rows and has its gradient as a second kernel, for training (config
key ``train_interaction``). The library is compiled with the system's C++
compiler on first use and cached (:mod:`src.engine.native`).
"""
import os

from mindspore import nn, ops

from src.engine.native import aot_with_gradient, build_library, kernel_ints, require_cpu

SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "dot_interaction.cc")
KERNEL = "DotInteraction"


def library_path(portable=False, key="predict_interaction"):
    """The compiled library; ``portable``: without the AVX2 path (tests);
    ``key``: the config key named in the error without a compiler."""
    flags = ("-pthread",) + (("-DDOT_INTERACTION_PORTABLE",) if portable else ())
    return build_library(SOURCE, "dot_interaction", f"set {key}: graph", flags)


def pair_count(num_fields, self_interaction):
    """The dot products of ``num_fields + 1`` vectors: each pair once, and
    each vector with itself too with ``self_interaction``."""
    vectors = int(num_fields) + 1
    return vectors * (vectors - 1) // 2 + (vectors if self_interaction else 0)


class DotInteraction(nn.Cell):
    """``(table (R, D), cat (B, F) int32, bottom (B, D)) -> (B, D + P)``,
    float32, on CPU: ``bottom`` followed by the dot products of the pairs
    of the ``F + 1`` vectors (``bottom``, then each field's row
    ``table[cat[:, f]]``) in the order of ``np.tril_indices(F + 1, -1)``
    (``0`` with ``self_interaction``). An id outside the table is an error.
    Rows are split among up to ``threads`` threads."""

    def __init__(self, num_fields, self_interaction=False, threads=1):
        super().__init__()
        require_cpu("predict_interaction: native", "set predict_interaction: graph")
        self.layout = kernel_ints("DotInteraction", threads, bool(self_interaction))
        pairs = pair_count(num_fields, self_interaction)

        def out_shape(_table, cat, bottom, _layout):
            return (cat[0], bottom[1] + pairs)

        self.interact = ops.Custom(f"{library_path()}:{KERNEL}", out_shape=out_shape,
                                   out_dtype=lambda table, _cat, _bottom, _layout: table,
                                   func_type="aot")

    def construct(self, table, cat, bottom):
        return self.interact(table, cat, bottom, self.layout)


class DotPairs(nn.Cell):
    """``(bottom (B, D), emb (B, F, D)) -> (B, D + P)``, float32, on CPU:
    :class:`DotInteraction`'s output from rows already looked up (``emb``),
    with its gradient with respect to both inputs as a second kernel
    (``DotPairsGrad``). Rows are split among up to ``threads`` threads."""

    def __init__(self, num_fields, self_interaction=False, threads=1):
        super().__init__()
        require_cpu("train_interaction: native", "set train_interaction: graph")
        self.layout = kernel_ints("DotPairs", threads, bool(self_interaction))
        pairs = pair_count(num_fields, self_interaction)
        def out_shape(bottom, _emb, _layout):
            return (bottom[0], bottom[1] + pairs)

        self.interact = aot_with_gradient(library_path(key="train_interaction"), "DotPairs", 2,
                                          out_shape, lambda bottom, _emb, _layout: bottom)

    def construct(self, bottom, emb):
        return self.interact(bottom, emb, self.layout)
