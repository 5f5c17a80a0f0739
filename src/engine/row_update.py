"""In-place row updates of an embedding table on CPU: MindSpore custom
operators (AOT, C++: ``row_update.cc``) instead of gather + scatter.

MindSpore's CPU ``ScatterUpdate`` costs far more per row id than per value
(bench/notes.md: in a small-batch DLRM step the scatter was the costliest
kernel after the matrix products). These kernels read each row (and its optimizer state)
once, update it and write it in place, so the sparse step's row update is
one kernel. The library is compiled with the system's C++ compiler on first
use and cached by the source's hash (:mod:`src.engine.native`).

Only for single-process CPU training: the ids must be distinct apart from
the trailing padding (a distributed step updates a row once per rank that
touched it, which a ScatterUpdate allows and an in-place update would not),
and the kernels are CPU code. ``row_update: kernel`` (config) selects them.
"""
import os

import mindspore as ms
from mindspore import ops
from mindspore.ops import signature as sig

from src.engine.native import KernelBuildError, build_library  # noqa: F401 (re-exported)

SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "row_update.cc")
KERNELS = {"sgd": "RowSgd", "adagrad": "RowAdagrad", "adam": "RowAdam"}


def library_path():
    """The compiled row-update library (:func:`src.engine.native.build_library`)."""
    return build_library(SOURCE, "row_update", "set row_update: graph", ("-pthread",))


def _one_int(*_):
    return (1,)


def _int32(*_):
    return ms.int32


def row_update_op(kind):
    """The custom operator updating a table's rows in place with optimizer
    ``kind`` (``sgd``: ``(table, ids, grad, [lr], threads)``; ``adagrad``:
    ``(table, ids, grad, accum, [lr, eps], threads)``; ``adam``: ``(table,
    ids, grad, moments, [corrected lr, beta1, beta2, eps], threads)``, with
    ``threads`` a ``(1,)`` int32 tensor, :func:`src.engine.native.kernel_ints`);
    it returns a ``(1,)`` int32 zero."""
    if kind not in KERNELS:
        raise ValueError(f"no row-update kernel for optimizer {kind!r}; one of {', '.join(KERNELS)}")
    written = (0,) if kind == "sgd" else (0, 3)          # the table, and the optimizer state
    inputs = 5 if kind == "sgd" else 6
    # Declared as writing those inputs, as MindSpore's own ScatterUpdate is:
    # read as plain inputs, the table (loaded again after the dense update)
    # would be copied whole before the kernel, every step.
    signature = tuple(sig.make_sig(f"input{i}", sig.sig_rw.RW_WRITE if i in written else sig.sig_rw.RW_READ)
                      for i in range(inputs))
    writer = type(f"{KERNELS[kind]}Op", (ops.Custom,), {"__mindspore_signature__": signature})
    op = writer(f"{library_path()}:{KERNELS[kind]}", out_shape=_one_int, out_dtype=_int32,
                func_type="aot")
    op.add_prim_attr("side_effect_mem", True)
    return op
