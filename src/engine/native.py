"""Compiling the project's C++ CPU kernels (MindSpore custom operators of the
AOT kind) with the system's C++ compiler, on first use, cached by a hash of
the source and the project headers it includes (``parallel_parts.h``: the
work split among threads): the in-place row updates (``row_update.cc``), the
dense weights' update (``dense_update.cc``), the sparse-input product
(``src/layers/sparse_input.cc``), the gated mixture
(``src/layers/gated_mixture.cc``), the ReLU-and-pooling
(``src/layers/relu_pool.cc``), and the prediction lookups of DeepFM
(``src/layers/fm_lookup.cc``, also its training lookup) and DLRM
(``src/layers/dot_interaction.cc``, also DLRM's training interaction) and
the bias and ReLU (and dropout) of their MLPs' layers
(``src/layers/bias_relu.cc``);
:func:`kernel_choice`, a config key's choice between the graph's operators
and such a kernel; and :func:`aot_with_gradient`, such a kernel as an
operator whose gradient is a second kernel."""
import functools
import hashlib
import os
import platform
import re
import shutil
import subprocess
import tempfile


def require_cpu(setting, fallback):
    """Refuse a CPU kernel (config ``setting``) on another device, naming
    ``fallback``, the setting that avoids it."""
    import mindspore as ms
    target = ms.get_context("device_target")
    if target != "CPU":
        raise ValueError(f"{setting} is a CPU kernel; on {target} {fallback}")


def kernel_choice(cfg, key, choices, build):
    """The cell config key ``key`` selects among ``choices``: None for the
    first (the graph's operators), ``build(threads)`` for the second (a C++
    CPU kernel, given the process's CPU threads). The kernels take float32,
    so mixed precision refuses them."""
    kind = cfg.get(key, choices[0])
    if kind not in choices:
        raise ValueError(f"{key} must be one of {', '.join(choices)}, got {kind!r}")
    if kind == choices[0]:
        return None
    amp = cfg.get("amp_level", "O0")
    if amp != "O0":
        raise ValueError(f"{key}: {kind} is a float32 kernel and amp_level {amp} computes in "
                         f"float16: set {key}: {choices[0]} or amp_level O0")
    from src.engine.runtime import kernel_threads
    return build(kernel_threads())


def kernel_ints(owner, threads, *more):
    """The int32 tensor ``[threads, *more]`` a kernel takes as its last
    input (its thread count, then its layout), after checking that
    ``threads`` is a positive integer; ``owner`` names the kernel in the
    error."""
    import numpy as np
    from mindspore import Tensor
    if int(threads) < 1:
        raise ValueError(f"{owner}: threads must be a positive integer, got {threads}")
    return Tensor(np.array([int(threads), *[int(v) for v in more]], np.int32))


def aot_with_gradient(library, name, inputs, out_shape, out_dtype):
    """The custom operator ``name`` of ``library`` whose gradient is the
    library's kernel ``name + "Grad"``. The operator takes ``inputs`` (1 or
    2) float tensors, then its int32 layout; the gradient kernel takes the
    same, then the output's gradient, and returns the gradients of the
    ``inputs`` tensors, shaped and typed like them (the layout's is zero)."""
    from mindspore import ops
    if inputs not in (1, 2):
        raise ValueError(f"{name}: a gradient kernel for 1 or 2 inputs, got {inputs}")

    def like(*args):                                  # the inputs' shapes or dtypes
        return args[0] if inputs == 1 else tuple(args[:inputs])
    gradient = ops.Custom(f"{library}:{name}Grad", out_shape=like, out_dtype=like,
                          func_type="aot")
    if inputs == 1:
        def bprop(x, layout, _out, dout):
            return gradient(x, layout, dout), ops.zeros_like(layout)
    else:
        def bprop(first, second, layout, _out, dout):
            d_first, d_second = gradient(first, second, layout, dout)
            return d_first, d_second, ops.zeros_like(layout)
    return ops.Custom(f"{library}:{name}", out_shape=out_shape, out_dtype=out_dtype,
                      func_type="aot", bprop=bprop)


class KernelBuildError(RuntimeError):
    """A kernel library could not be compiled."""


def _cache_dirs():
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return [os.path.join(base, "recsys-kernels"),
            os.path.join(tempfile.gettempdir(), f"recsys-kernels-{os.getuid()}")]


_LOCAL_INCLUDE = re.compile(rb'^\s*#\s*include\s*"([^"]+)"', re.M)


def source_files(source):
    """``source`` and every file it includes with ``#include "..."``,
    directly or not (paths relative to the including file), each once."""
    found, todo = [], [os.path.abspath(source)]
    while todo:
        path = todo.pop()
        if path in found or not os.path.isfile(path):
            continue                    # a missing header: the compiler names it
        found.append(path)
        with open(path, "rb") as f:
            text = f.read()
        folder = os.path.dirname(path)
        todo.extend(os.path.normpath(os.path.join(folder, name.decode()))
                    for name in _LOCAL_INCLUDE.findall(text))
    return found


# Added to every kernel's flags: code for the CPU it runs on (its widest
# vector instructions), and square roots that need not set errno (so loops
# with them vectorise). A compiler that refuses them builds without them.
MACHINE_FLAGS = ("-march=native", "-fno-math-errno")
_CPU_FIELDS = ("model name", "flags", "CPU implementer", "CPU architecture", "CPU part", "Features")


@functools.lru_cache(maxsize=None)
def cpu_key():
    """What ``-march=native`` compiles for, as text: the architecture and
    the CPU's model and feature lines of ``/proc/cpuinfo`` (each once). It
    is part of a library's cache key, so a cache folder shared by machines
    with different CPUs (a home folder on a cluster) holds one library per
    CPU and never hands one machine another's instructions."""
    lines = {}
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                name = line.split(":", 1)[0].strip()
                if name in _CPU_FIELDS:
                    lines.setdefault(line.strip(), None)
    except OSError:
        pass
    return "\n".join([platform.machine(), platform.processor(), *lines])


def _compile(compiler, flags, source, folder):
    """``source`` compiled with ``flags`` into a new file of ``folder``:
    its path, or None and the compiler's messages."""
    fd, partial = tempfile.mkstemp(suffix=".so", dir=folder)
    os.close(fd)
    result = subprocess.run([compiler, "-O3", "-std=c++17", "-shared", "-fPIC", *flags,
                             "-o", partial, source], capture_output=True, text=True)
    if result.returncode != 0:
        os.unlink(partial)
        return None, result.stderr
    return partial, ""


def build_library(source, stem, fallback, flags=()):
    """The path of ``source`` compiled into a shared library named ``stem``
    plus a hash of its text, its local headers' (:func:`source_files`), the
    flags and the CPU (:func:`cpu_key`), compiling it first if no cached copy
    exists (``$CXX`` or ``g++``, with :data:`MACHINE_FLAGS` and ``flags``
    added, or ``flags`` alone if the compiler refuses the former; written
    under a temporary name and renamed, so concurrent processes never load a
    partial file). ``fallback`` ends the error raised without a compiler:
    the setting that avoids the kernel."""
    digest = hashlib.sha256(" ".join(flags).encode())
    digest.update(" ".join(MACHINE_FLAGS).encode() + b"\n" + cpu_key().encode())
    for path in source_files(source):
        with open(path, "rb") as f:
            digest.update(f.read())
    digest = digest.hexdigest()[:16]
    compiler = os.environ.get("CXX") or "g++"
    last_error = None
    for folder in _cache_dirs():
        path = os.path.join(folder, f"{stem}-{digest}.so")
        if os.path.isfile(path):
            return path
        try:
            os.makedirs(folder, exist_ok=True)
        except OSError as err:
            last_error = err
            continue
        if shutil.which(compiler) is None:
            raise KernelBuildError(
                f"{stem}: the kernel needs a C++ compiler to build {source}, and {compiler!r} was "
                f"not found: install g++ (or set CXX), or {fallback}")
        partial, _ = _compile(compiler, (*MACHINE_FLAGS, *flags), source, folder)
        if partial is None:
            partial, errors = _compile(compiler, tuple(flags), source, folder)
            if partial is None:
                raise KernelBuildError(f"compiling {source} with {compiler} failed:\n{errors}")
        os.replace(partial, path)
        return path
    raise KernelBuildError(f"no writable cache folder for the {stem} library ({last_error})")
