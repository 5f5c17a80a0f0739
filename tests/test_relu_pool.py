"""The ReLU-and-pooling CPU kernel (src/layers/relu_pool.cc): against a
NumPy reference called directly, and as an operator in a graph against
nn.ReLU then nn.MaxPool2d(2, 2), forward and gradient."""
import ctypes

import mindspore
import numpy as np
import pytest
from mindspore import Tensor, nn, ops

from aot import call_aot
from src.layers import relu_pool


@pytest.fixture(scope="module")
def library():
    return ctypes.CDLL(relu_pool.library_path())


def _reference(x):
    """``(out, argmax position in each window or -1)`` by the kernel's rule:
    the first largest value that is not NaN, after the ReLU."""
    b, c, h, w = x.shape
    ho, wo = h // 2, w // 2
    windows = x[:, :, :2 * ho, :2 * wo].reshape(b, c, ho, 2, wo, 2).transpose(0, 1, 2, 4, 3, 5)
    windows = windows.reshape(b, c, ho, wo, 4)
    clean = np.where(np.isnan(windows), -np.inf, windows)
    at = clean.argmax(axis=-1)                                   # the first largest
    best = np.take_along_axis(clean, at[..., None], -1)[..., 0]
    return np.maximum(best, 0).astype(np.float32), np.where(best > 0, at, -1)


def _reference_grad(x, dout):
    b, c, h, w = x.shape
    _, at = _reference(x)
    dx = np.zeros_like(x)
    for i, j, oy, ox in zip(*np.nonzero(at >= 0)):
        k = at[i, j, oy, ox]
        dx[i, j, 2 * oy + k // 2, 2 * ox + k % 2] = dout[i, j, oy, ox]
    return dx


@pytest.mark.parametrize("shape, threads", [((2, 3, 8, 8), 1), ((5, 7, 7, 9), 3),
                                            ((40, 2, 6, 4), 2), ((1, 2, 2, 2), 4)])
def test_the_kernels_give_the_reference(library, shape, threads):
    rng = np.random.default_rng(sum(shape))
    x = rng.standard_normal(shape).astype(np.float32)
    x[0, 0, :2, :2] = [[1.5, 1.5], [0.2, 1.5]]                 # a tie: the first one takes it
    x[-1, -1, :2, :2] = -1.0                                     # all below 0: no gradient
    layout = np.array([threads], np.int32)
    out = np.full((shape[0], shape[1], shape[2] // 2, shape[3] // 2), np.nan, np.float32)
    assert call_aot(library.ReluPool, [x, layout, out]) == 0
    np.testing.assert_array_equal(out, _reference(x)[0])
    dout = rng.standard_normal(out.shape).astype(np.float32)
    dx = np.full_like(x, np.nan)
    assert call_aot(library.ReluPoolGrad, [x, layout, dout, dx]) == 0
    np.testing.assert_array_equal(dx, _reference_grad(x, dout))
    assert dx[0, 0, 0, 0] == dout[0, 0, 0, 0] and dx[0, 0, 0, 1] == 0 == dx[0, 0, 1, 1]


def test_nan_is_never_the_largest(library):
    x = np.array([[[[np.nan, 2.0], [1.0, 0.5]], [[np.nan, np.nan], [np.nan, np.nan]]]],
                 np.float32)                                      # (1, 2, 2, 2)
    layout = np.array([1], np.int32)
    out = np.zeros((1, 2, 1, 1), np.float32)
    assert call_aot(library.ReluPool, [x, layout, out]) == 0
    assert out.ravel().tolist() == [2.0, 0.0]
    dx = np.full_like(x, np.nan)
    assert call_aot(library.ReluPoolGrad, [x, layout, np.ones_like(out), dx]) == 0
    assert dx.ravel().tolist() == [0, 1, 0, 0, 0, 0, 0, 0]


def test_the_kernels_refuse_what_does_not_fit(library):
    layout = np.array([1], np.int32)
    x = np.zeros((2, 3, 6, 6), np.float32)
    assert call_aot(library.ReluPool, [x, layout, np.zeros((2, 3, 3, 2), np.float32)]) == 1
    assert call_aot(library.ReluPool, [x[0], layout, np.zeros((3, 3, 3), np.float32)]) == 1
    assert call_aot(library.ReluPool, [x, layout, np.zeros((2, 3, 3), np.float32)]) == 1
    assert call_aot(library.ReluPool, [x.astype(np.float64), layout,
                                       np.zeros((2, 3, 3, 3), np.float32)]) == 1
    assert call_aot(library.ReluPool, [np.zeros((2, 3, 1, 6), np.float32), layout,
                                       np.zeros((2, 3, 0, 3), np.float32)]) == 1
    dx = np.full_like(x, 7.0)
    assert call_aot(library.ReluPoolGrad, [x, layout, np.zeros((2, 3, 3, 2), np.float32), dx]) == 1
    assert call_aot(library.ReluPoolGrad, [x, layout, np.zeros((2, 3, 3, 3), np.float32),
                                           np.zeros((2, 3, 6, 5), np.float32)]) == 1
    assert (dx == 7.0).all()                                     # nothing written when refused


class _Loss(nn.Cell):
    def __init__(self, pool):
        super().__init__()
        self.pool = pool

    def construct(self, x, dout):
        return (self.pool(x) * dout).sum()


@pytest.mark.parametrize("shape", [(16, 6, 12, 12), (3, 4, 7, 5)])
def test_the_operator_is_relu_then_max_pooling_with_its_gradient(shape):
    rng = np.random.default_rng(1)
    x = Tensor(rng.standard_normal(shape).astype(np.float32))
    dout = Tensor(rng.standard_normal((shape[0], shape[1], shape[2] // 2, shape[3] // 2))
                  .astype(np.float32))
    graph = nn.SequentialCell([nn.ReLU(), nn.MaxPool2d(kernel_size=2, stride=2)])
    kernel = relu_pool.ReluPool(threads=2)
    np.testing.assert_array_equal(kernel(x).asnumpy(), graph(x).asnumpy())
    grads = [mindspore.grad(_Loss(cell), grad_position=0)(x, dout).asnumpy()
             for cell in (graph, kernel)]
    np.testing.assert_array_equal(grads[1], grads[0])
    assert ops.count_nonzero(Tensor(grads[1])).asnumpy() > 0


def test_the_operator_is_cpu_only(monkeypatch):
    with pytest.raises(ValueError, match="threads must be a positive integer"):
        relu_pool.ReluPool(threads=0)
    monkeypatch.setattr(mindspore, "get_context", lambda key: "GPU")
    with pytest.raises(ValueError, match="expert_pool: native is a CPU kernel; on GPU set "
                                         "expert_pool: graph"):
        relu_pool.ReluPool()
