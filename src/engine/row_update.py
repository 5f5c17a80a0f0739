"""In-place row updates of an embedding table on CPU: MindSpore custom
operators (AOT, C++: ``row_update.cc``) instead of gather + scatter.

MindSpore's CPU ``ScatterUpdate`` costs far more per row id than per value
(bench/notes.md: in a small-batch DLRM step the scatter was the costliest
kernel after the matrix products). These kernels read each row (and its optimizer state)
once, update it and write it in place, so the sparse step's row update is
one kernel. The library is compiled with the system's C++ compiler on first
use and cached by the source's hash.

Only for single-process CPU training: the ids must be distinct apart from
the trailing padding (a distributed step updates a row once per rank that
touched it, which a ScatterUpdate allows and an in-place update would not),
and the kernels are CPU code. ``row_update: kernel`` (config) selects them.
"""
import hashlib
import os
import shutil
import subprocess
import tempfile

import mindspore as ms
from mindspore import ops
from mindspore.ops import signature as sig

SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "row_update.cc")
KERNELS = {"sgd": "RowSgd", "adagrad": "RowAdagrad", "adam": "RowAdam"}


class KernelBuildError(RuntimeError):
    """The row-update library could not be compiled."""


def _cache_dirs():
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return [os.path.join(base, "recsys-kernels"),
            os.path.join(tempfile.gettempdir(), f"recsys-kernels-{os.getuid()}")]


def library_path():
    """The compiled library's path, compiling it first if no cached copy
    exists (``$CXX`` or ``g++``; written under a temporary name and renamed,
    so concurrent processes never load a partial file)."""
    with open(SOURCE, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()[:16]
    compiler = os.environ.get("CXX") or "g++"
    last_error = None
    for folder in _cache_dirs():
        path = os.path.join(folder, f"row_update-{digest}.so")
        if os.path.isfile(path):
            return path
        try:
            os.makedirs(folder, exist_ok=True)
        except OSError as err:
            last_error = err
            continue
        if shutil.which(compiler) is None:
            raise KernelBuildError(
                f"row_update: kernel needs a C++ compiler to build {SOURCE}, and {compiler!r} was "
                f"not found: install g++ (or set CXX), or set row_update: graph")
        fd, partial = tempfile.mkstemp(suffix=".so", dir=folder)
        os.close(fd)
        result = subprocess.run([compiler, "-O3", "-std=c++17", "-shared", "-fPIC", "-o", partial,
                                 SOURCE], capture_output=True, text=True)
        if result.returncode != 0:
            os.unlink(partial)
            raise KernelBuildError(f"compiling {SOURCE} with {compiler} failed:\n{result.stderr}")
        os.replace(partial, path)
        return path
    raise KernelBuildError(f"no writable cache folder for the row-update library ({last_error})")


def _one_int(*_):
    return (1,)


def _int32(*_):
    return ms.int32


def row_update_op(kind):
    """The custom operator updating a table's rows in place with optimizer
    ``kind`` (``sgd``: ``(table, ids, grad, [lr])``; ``adagrad``: ``(table,
    ids, grad, accum, [lr, eps])``; ``adam``: ``(table, ids, grad, moments,
    [corrected lr, beta1, beta2, eps])``); it returns a ``(1,)`` int32 zero."""
    if kind not in KERNELS:
        raise ValueError(f"no row-update kernel for optimizer {kind!r}; one of {', '.join(KERNELS)}")
    written = (0,) if kind == "sgd" else (0, 3)          # the table, and the optimizer state
    inputs = 4 if kind == "sgd" else 5
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
