"""Building the C++ kernels (src/engine/native.py): the cache key covers the
headers a kernel includes, so changing the shared thread split rebuilds every
kernel that uses it; without a compiler, each kernel's (and the Criteo
converter's parser's) error names the setting that avoids it."""
import ctypes
import os
import platform

import mindspore as ms
import numpy as np
import pytest
from mindspore import Parameter, Tensor

from src.data import criteo_native
from src.engine import dense_update, native, row_update
from src.engine.optim import build_optimizer
from src.layers import (bias_relu, dot_interaction, fm_lookup, gated_mixture, relu_pool,
                        sparse_input)


def _write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


def test_source_files_follow_local_includes_once(tmp_path):
    _write(tmp_path / "k" / "a.cc", '#include <vector>\n#include "sub/h.h"\n  # include "g.h"\n')
    _write(tmp_path / "k" / "sub" / "h.h", '#pragma once\n#include "../g.h"\n')
    _write(tmp_path / "k" / "g.h", '#pragma once\n#include "missing.h"\n')
    found = native.source_files(str(tmp_path / "k" / "a.cc"))
    assert sorted(os.path.relpath(p, tmp_path) for p in found) == [
        "k/a.cc", "k/g.h", "k/sub/h.h"]


def test_a_changed_header_rebuilds_the_library(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    source = tmp_path / "src" / "k.cc"
    _write(source, '#include "v.h"\nextern "C" int Value() { return kValue; }\n')
    _write(tmp_path / "src" / "v.h", "constexpr int kValue = 3;\n")
    first = native.build_library(str(source), "k", "set k: graph")
    assert native.build_library(str(source), "k", "set k: graph") == first      # cached
    _write(tmp_path / "src" / "v.h", "constexpr int kValue = 4;\n")
    second = native.build_library(str(source), "k", "set k: graph")
    assert second != first
    assert ctypes.CDLL(first).Value() == 3 and ctypes.CDLL(second).Value() == 4


def _logging_compiler(path, refuse=""):
    """A compiler script that logs its arguments to path + ".log" and runs
    g++, failing instead when an argument equals ``refuse``."""
    _write(path, "#!/bin/sh\n"
                 f'echo "$@" >> "{path}.log"\n'
                 f'for a in "$@"; do [ "$a" = "{refuse}" ] && echo "unknown {refuse}" >&2 && exit 1; done\n'
                 'exec g++ "$@"\n')
    os.chmod(path, 0o755)
    return str(path)


def test_kernels_are_built_for_this_cpu_and_cached_per_cpu(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("CXX", _logging_compiler(tmp_path / "cxx"))
    source = tmp_path / "src" / "k.cc"
    _write(source, 'extern "C" int Value() { return 7; }\n')
    first = native.build_library(str(source), "k", "set k: graph")
    assert "-march=native" in (tmp_path / "cxx.log").read_text()
    assert ctypes.CDLL(first).Value() == 7
    # another CPU sharing the cache folder (a cluster's home) gets a library of its own
    monkeypatch.setattr(native, "cpu_key", lambda: "x86_64\nmodel name : another CPU")
    other = native.build_library(str(source), "k", "set k: graph")
    assert other != first and os.path.isfile(first) and ctypes.CDLL(other).Value() == 7


def test_a_compiler_refusing_the_machine_flags_builds_without_them(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("CXX", _logging_compiler(tmp_path / "cxx", refuse="-march=native"))
    source = tmp_path / "src" / "k.cc"
    _write(source, 'extern "C" int Value() { return 5; }\n')
    assert ctypes.CDLL(native.build_library(str(source), "k", "set k: graph")).Value() == 5
    calls = (tmp_path / "cxx.log").read_text().splitlines()
    assert len(calls) == 2 and "-march=native" in calls[0] and "-march=native" not in calls[1]
    _write(source, 'extern "C" int Value() { return }\n')          # a real error is still one
    with pytest.raises(native.KernelBuildError, match="failed"):
        native.build_library(str(source), "k", "set k: graph")
    assert not [p for p in (tmp_path / "cache" / "recsys-kernels").iterdir() if p.suffix != ".so"
                or p.name.startswith("tmp")]                 # no partial file left behind


def test_the_cpu_key_names_the_architecture_and_the_cpu_features_once():
    key = native.cpu_key().splitlines()
    assert key[0] == platform.machine()
    assert len(key) == len(set(key[2:])) + 2                         # each line once
    if os.path.isfile("/proc/cpuinfo") and platform.machine() == "x86_64":
        assert any(line.startswith("flags") for line in key)


def test_the_threaded_kernels_include_the_shared_split():
    header = os.path.join(os.path.dirname(native.__file__), "parallel_parts.h")
    for module in (gated_mixture, sparse_input, dense_update, relu_pool, fm_lookup,
                   dot_interaction, bias_relu, row_update):
        assert header in native.source_files(module.SOURCE), module.__name__


# each kernel as a config reaches it, and the setting its error must name
WITHOUT_A_COMPILER = {
    "relu_pool": (lambda: relu_pool.ReluPool(), "set expert_pool: graph"),
    "gated_mixture": (lambda: gated_mixture.GatedMixture(2, 8, 4), "set predict_mixture: graph"),
    "sparse_input": (lambda: sparse_input.SparseInputProduct(1), "set input_product: matmul"),
    "fm_lookup": (lambda: fm_lookup.FmLookup(1), "set predict_fm: graph"),
    "dot_interaction": (lambda: dot_interaction.DotInteraction(3), "set predict_interaction: graph"),
    "bias_relu": (lambda: bias_relu.BiasRelu(1), "set predict_mlp: graph"),
    "row_update": (row_update.library_path, "set row_update: graph"),
    "criteo_parse": (lambda: criteo_native.make_parser("native"), "set parser: numpy"),
    "dense_update": (lambda: build_optimizer("sgd", [Parameter(Tensor(np.zeros(3, np.float32)), name="w")],
                                             np.ones(2, np.float32), dense_update="kernel"),
                     "set dense_update: graph"),
}


@pytest.mark.parametrize("kernel", sorted(WITHOUT_A_COMPILER))
def test_without_a_compiler_the_error_says_what_to_do(kernel, tmp_path, monkeypatch):
    build, fallback = WITHOUT_A_COMPILER[kernel]
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setenv("CXX", "no-such-compiler")
    with pytest.raises(native.KernelBuildError, match=f"needs a C\\+\\+ compiler.*{fallback}"):
        build()


def test_a_kernels_ints_start_with_a_checked_thread_count():
    ints = native.kernel_ints("K", 2, True, 5)
    assert ints.dtype == ms.int32 and ints.asnumpy().tolist() == [2, 1, 5]
    for bad in (0, -1):
        with pytest.raises(ValueError, match="K: threads must be a positive integer, got"):
            native.kernel_ints("K", bad)
    with pytest.raises(ValueError, match="BiasRelu: threads must be a positive integer"):
        bias_relu.BiasRelu(threads=0)


# y = a * layout[0] (+ b * layout[1]); the gradient kernels take the inputs,
# the layout and dout and write the inputs' gradients
_SCALE_KERNELS = r'''
#include <cstdint>
static int64_t Count(int ndims, const int64_t *shape) {
  int64_t n = 1;
  for (int i = 0; i < ndims; ++i) n *= shape[i];
  return n;
}
extern "C" int Scale(int nparam, void **params, int *ndims, int64_t **shapes, const char **,
                     void *, void *) {
  const float *a = static_cast<const float *>(params[0]);
  const int32_t *k = static_cast<const int32_t *>(params[nparam - 2]);
  float *y = static_cast<float *>(params[nparam - 1]);
  for (int64_t i = 0, n = Count(ndims[0], shapes[0]); i < n; ++i) {
    y[i] = a[i] * k[0] + (nparam == 4 ? static_cast<const float *>(params[1])[i] * k[1] : 0.0f);
  }
  return 0;
}
extern "C" int ScaleGrad(int nparam, void **params, int *ndims, int64_t **shapes, const char **,
                         void *, void *) {
  const int inputs = nparam == 4 ? 1 : 2;
  const int32_t *k = static_cast<const int32_t *>(params[inputs]);
  const float *dout = static_cast<const float *>(params[inputs + 1]);
  for (int g = 0; g < inputs; ++g) {
    float *d = static_cast<float *>(params[inputs + 2 + g]);
    for (int64_t i = 0, n = Count(ndims[0], shapes[0]); i < n; ++i) d[i] = dout[i] * k[g];
  }
  return 0;
}
'''


class _Weighted(ms.nn.Cell):
    def __init__(self, op, layout):
        super().__init__()
        self.op, self.layout = op, Tensor(np.array(layout, np.int32))

    def construct(self, *inputs):
        return (self.op(*inputs, self.layout) * ms.ops.arange(6, dtype=ms.float32)).sum()


@pytest.mark.parametrize("inputs", [1, 2])
def test_an_aot_operator_with_its_gradient_kernel(inputs, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    _write(tmp_path / "scale.cc", _SCALE_KERNELS)
    library = native.build_library(str(tmp_path / "scale.cc"), "scale", "set scale: graph")
    op = native.aot_with_gradient(library, "Scale", inputs, lambda a, *_: a, lambda a, *_: a)
    rng = np.random.default_rng(0)
    args = [Tensor(rng.normal(size=6).astype(np.float32)) for _ in range(inputs)]
    net = _Weighted(op, [2, 3])
    expected = sum(k * a.asnumpy() for k, a in zip((2, 3), args)) @ np.arange(6)
    np.testing.assert_allclose(net(*args).asnumpy(), expected, rtol=1e-5)
    grads = ms.grad(net, grad_position=tuple(range(inputs)))(*args)
    grads = grads if inputs == 2 else (grads,)
    for k, grad in zip((2, 3), grads):
        np.testing.assert_allclose(grad.asnumpy(), k * np.arange(6), rtol=1e-6)
    with pytest.raises(ValueError, match="Scale: a gradient kernel for 1 or 2 inputs, got 3"):
        native.aot_with_gradient(library, "Scale", 3, None, None)
