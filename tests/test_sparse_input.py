"""The sparse-input product (src/layers/sparse_input.cc) against NumPy's
``x @ w + bias``, called through its C entry point (both builds: AVX2 and
portable) and as a MindSpore operator."""
import ctypes

import mindspore
import numpy as np
import pytest
from mindspore import Tensor, nn

from src.layers import sparse_input
from tests.aot import call_aot


def _onehot_like(rows, k, density, seed):
    """Mostly zeros, the rest of any value: ones, negatives, fractions."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((rows, k)).astype(np.float32)
    x[rng.random((rows, k)) >= density] = 0.0
    x[rng.random((rows, k)) < density / 2] = 1.0
    return x


def _call(library, x, w, bias, threads):
    """``SparseInputProduct`` through its AOT signature, as MindSpore calls it."""
    out = np.full((x.shape[0], w.shape[1]), np.nan, np.float32)
    code = call_aot(library.SparseInputProduct, [x, w, bias, np.array([threads], np.int32), out])
    return code, out


@pytest.fixture(scope="module", params=[False, True], ids=["avx2", "portable"])
def library(request):
    return ctypes.CDLL(sparse_input.library_path(portable=request.param))


@pytest.mark.parametrize("rows, k, n, threads", [
    (1, 8, 1, 1), (3, 37, 5, 2), (40, 360, 48, 1), (600, 45, 70, 2), (700, 9, 130, 3),
    (513, 16, 8, 4)])
def test_the_kernel_computes_the_product(library, rows, k, n, threads):
    """Widths below, at and above the kernel's blocks (8 inputs, 8 and 64
    outputs) and rows enough for several threads."""
    x = _onehot_like(rows, k, 0.15, seed=rows + k)
    rng = np.random.default_rng(n)
    w = rng.standard_normal((k, n)).astype(np.float32)
    bias = rng.standard_normal(n).astype(np.float32)
    code, out = _call(library, x, w, bias, threads)
    assert code == 0
    np.testing.assert_allclose(out, x.astype(np.float64) @ w + bias, rtol=1e-5, atol=1e-5)


def test_rows_of_zeros_give_zeros_and_nan_is_not_skipped(library):
    x = np.zeros((4, 20), np.float32)
    x[1, 3] = np.nan
    x[2, 19] = 2.0
    w = np.ones((20, 9), np.float32)
    bias = np.arange(9, dtype=np.float32)
    code, out = _call(library, x, w, bias, 1)
    assert code == 0
    np.testing.assert_array_equal(out[[0, 3]], [bias, bias])
    assert np.isnan(out[1]).all()
    np.testing.assert_array_equal(out[2], 2.0 + bias)


def test_the_kernel_refuses_shapes_and_dtypes_that_do_not_fit(library):
    x, bias = np.ones((4, 6), np.float32), np.zeros(3, np.float32)
    assert _call(library, x, np.ones((5, 3), np.float32), bias, 1)[0] == 1          # 6 != 5
    assert _call(library, x, np.ones((6, 3), np.float32), bias[:2], 1)[0] == 1      # 3 != 2
    x64 = x.astype(np.float64)
    assert _call(library, x64, np.ones((6, 3), np.float64), bias.astype(np.float64), 1)[0] == 1


class _Product(nn.Cell):
    def __init__(self, threads):
        super().__init__()
        self.product = sparse_input.SparseInputProduct(threads)

    def construct(self, x, w, bias):
        return self.product(x, w, bias)


def test_the_operator_gives_numpys_product_in_a_graph():
    x = _onehot_like(520, 50, 0.1, seed=1)
    rng = np.random.default_rng(2)
    w = rng.standard_normal((50, 48)).astype(np.float32)
    bias = rng.standard_normal(48).astype(np.float32)
    out = _Product(2)(Tensor(x), Tensor(w), Tensor(bias)).asnumpy()
    np.testing.assert_allclose(out, x.astype(np.float64) @ w + bias, rtol=1e-5, atol=1e-5)


def test_the_operator_is_cpu_only_and_needs_positive_threads(monkeypatch):
    with pytest.raises(ValueError, match="threads must be a positive integer"):
        sparse_input.SparseInputProduct(0)
    monkeypatch.setattr(mindspore, "get_context", lambda key: "GPU")
    with pytest.raises(ValueError, match="on GPU set input_product: matmul"):
        sparse_input.SparseInputProduct(1)
