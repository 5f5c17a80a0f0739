"""DeepFM's lookup and factorisation machine up to its MLP in one pass on
CPU: MindSpore custom operators (AOT, C++: ``fm_lookup.cc``).

The graph gathers every field's row of the table, splits it into the
embedding and the linear weight, scales both by the field's value, and sums
the factorisation machine's terms: half a dozen passes over a
``(batch, fields, D)`` array. The kernel reads each row once and writes the
scaled embeddings (the MLP's input) and each sample's linear-plus-FM term.
Results equal the graph's up to the order of the sums.

:class:`FmLookup` looks the rows up in the table, for prediction (DeepFM
selects it in eval mode; config key ``predict_fm``; it has no gradient).
:class:`FmRows` takes the batch's unique rows and their inverse, as the
sparse train step gives them, and has the rows' gradient as a second kernel,
for training (config key ``train_fm``). The library is compiled with the
system's C++ compiler on first use and cached (:mod:`src.engine.native`).
"""
import os

from mindspore import nn, ops

from src.engine.native import build_library, kernel_ints, require_cpu

SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fm_lookup.cc")
KERNEL = "FmLookup"


def library_path(key="predict_fm"):
    """The compiled library; ``key``: the config key named in the error
    without a compiler."""
    return build_library(SOURCE, "fm_lookup", f"set {key}: graph", ("-pthread",))


def _out_shape(table, cat, dense, _threads):
    return ((cat[0], (dense[1] + cat[1]) * (table[1] - 1)), (cat[0], 1))


def _out_dtype(table, _cat, _dense, _threads):
    return (table, table)


class FmLookup(nn.Cell):
    """``(table (R, D+1), cat (B, C) int32, dense (B, N)) -> (vectors (B, (N+C)*D),
    first (B, 1))``, float32, on CPU: field ``j < N`` takes row ``j`` scaled by
    ``dense[:, j]``, field ``N + c`` row ``N + cat[:, c]``; ``vectors`` holds
    each field's scaled embedding (the row's first D values), ``first`` the
    linear term (the rows' last values, scaled) plus the FM term. An id
    outside the table is an error. Rows are split among up to ``threads``
    threads."""

    def __init__(self, threads=1):
        super().__init__()
        require_cpu("predict_fm: native", "set predict_fm: graph")
        self.threads = kernel_ints("FmLookup", threads)
        self.lookup = ops.Custom(f"{library_path()}:{KERNEL}", out_shape=_out_shape,
                                 out_dtype=_out_dtype, func_type="aot")

    def construct(self, table, cat, dense):
        return self.lookup(table, cat, dense, self.threads)


def _rows_out_shape(rows, inverse, dense, _threads):
    return ((inverse[0], inverse[1] * (rows[1] - 1)), (inverse[0], 1))


class FmRows(nn.Cell):
    """``(rows (U, D+1), inverse (B, F) int32, dense (B, N)) -> (vectors (B, F*D),
    first (B, 1))``, float32, on CPU: :class:`FmLookup`'s outputs with field
    ``j`` of sample ``b`` taking row ``inverse[b, j]`` of ``rows`` (the
    batch's unique rows), of value ``dense[b, j]`` for ``j < N``, else 1. Its
    gradient kernel (``FmRowsGrad``) gives the rows' gradient; ``inverse``
    and ``dense`` (the batch's data) get none (zeros). An inverse outside the
    rows is an error. Samples are split among up to ``threads`` threads."""

    def __init__(self, threads=1):
        super().__init__()
        require_cpu("train_fm: native", "set train_fm: graph")
        self.threads = kernel_ints("FmRows", threads)
        library = library_path("train_fm")
        grad = ops.Custom(f"{library}:FmRowsGrad",
                          out_shape=lambda rows, *_: rows, out_dtype=lambda rows, *_: rows,
                          func_type="aot")

        def bprop(rows, inverse, dense, threads, _out, dout):
            d_rows = grad(rows, inverse, dense, threads, dout[0], dout[1])
            return d_rows, ops.zeros_like(inverse), ops.zeros_like(dense), ops.zeros_like(threads)

        self.fm = ops.Custom(f"{library}:FmRows", out_shape=_rows_out_shape,
                             out_dtype=lambda rows, *_: (rows, rows), func_type="aot", bprop=bprop)

    def construct(self, rows, inverse, dense):
        return self.fm(rows, inverse, dense, self.threads)
