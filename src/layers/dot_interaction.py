"""DLRM's prediction between its MLPs in one pass on CPU: a MindSpore custom
operator (AOT, C++: ``dot_interaction.cc``).

The graph gathers the rows, stacks them under the bottom MLP's output,
multiplies the stack by itself (a Gram matrix per sample), selects its lower
triangle and concatenates the bottom output in front: five passes, the
product computing both triangles. The kernel reads each row once and writes
the top MLP's input. Results equal the graph's up to the order of the sums.

Prediction only: the operator has no gradient (DLRM selects it in eval mode;
config key ``predict_interaction``). The library is compiled with the
system's C++ compiler on first use and cached (:mod:`src.engine.native`).
"""
import os

from mindspore import nn, ops

from src.engine.native import build_library, kernel_ints, require_cpu

SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "dot_interaction.cc")
KERNEL = "DotInteraction"


def library_path():
    return build_library(SOURCE, "dot_interaction", "set predict_interaction: graph", ("-pthread",))


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
        vectors = int(num_fields) + 1
        pairs = vectors * (vectors - 1) // 2 + (vectors if self_interaction else 0)

        def out_shape(_table, cat, bottom, _layout):
            return (cat[0], bottom[1] + pairs)

        self.interact = ops.Custom(f"{library_path()}:{KERNEL}", out_shape=out_shape,
                                   out_dtype=lambda table, _cat, _bottom, _layout: table,
                                   func_type="aot")

    def construct(self, table, cat, bottom):
        return self.interact(table, cat, bottom, self.layout)
