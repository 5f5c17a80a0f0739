"""A hidden layer's bias, ReLU and training dropout in one pass
(src/layers/bias_relu.cc ``BiasReluDropout`` and its gradient kernel, what
``train_mlp: native`` does for a layer with dropout): the kernels against
NumPy through their C entry points, the masks' statistics, the operator's
gradient in a graph, and an MLP whose dropout it takes."""
import ctypes

import mindspore as ms
import numpy as np
import pytest
from mindspore import Tensor, nn

from src.engine.train_step import random_cells
from src.layers import bias_relu
from src.layers.mlp import MLP
from tests.aot import call_aot


@pytest.fixture(scope="module")
def library():
    return ctypes.CDLL(bias_relu.library_path("train_mlp"))


def _forward(library, x, bias, key, threads, rate):
    out = np.full(x.shape, np.nan, np.float32)
    code = call_aot(library.BiasReluDropout, [x, bias, np.array(key, np.int32),
                                              np.array([threads], np.int32),
                                              np.array([rate], np.float32), out])
    return code, out


def _kept(library, shape, key, rate, threads=2):
    """The mask of ``key``: every value positive before the dropout."""
    code, out = _forward(library, np.ones(shape, np.float32), np.zeros(shape[1], np.float32),
                         key, threads, rate)
    assert code == 0
    return out > 0


@pytest.mark.parametrize("rows, cols, threads, rate", [(1, 1, 1, 0.5), (700, 400, 2, 0.1),
                                                        (3, 5, 4, 0.3), (5000, 7, 2, 0.9)])
def test_the_kernel_drops_and_scales_the_relu_of_the_biased_values(library, rows, cols, threads,
                                                                   rate):
    rng = np.random.default_rng(rows + cols)
    x = rng.standard_normal((rows, cols)).astype(np.float32)
    bias = rng.standard_normal(cols).astype(np.float32)
    code, out = _forward(library, x, bias, [17, -5], threads, rate)
    assert code == 0
    kept = _kept(library, x.shape, [17, -5], rate)
    relu = np.maximum(x + bias, np.float32(0))
    np.testing.assert_allclose(out, np.where(kept, relu / np.float32(1 - rate), 0), rtol=1e-6)
    assert np.array_equal(_forward(library, x, bias, [17, -5], 1, rate)[1], out)   # any threads


def test_the_masks_keep_one_minus_the_rate_independently_and_change_with_the_key(library):
    rate, shape = 0.3, (1000, 1000)
    n = shape[0] * shape[1]
    first = _kept(library, shape, [1, 2], rate)
    tolerance = 6 * np.sqrt(rate * (1 - rate) / n)
    assert abs(first.mean() - (1 - rate)) < tolerance
    # neighbours along a row and a column are independent
    flat = first.ravel()
    assert abs((flat[1:] & flat[:-1]).mean() - (1 - rate) ** 2) < tolerance
    assert abs((first[1:] & first[:-1]).mean() - (1 - rate) ** 2) < tolerance
    # another key (either half) draws an unrelated mask
    for key in ([1, 3], [2, 2], [-1, 2]):
        other = _kept(library, shape, key, rate)
        assert abs((first & other).mean() - (1 - rate) ** 2) < tolerance
    assert abs(_kept(library, shape, [1, 2], 0.05).mean() - 0.95) < tolerance


def _grad(library, y, dy, threads, rate):
    dx = np.full(y.shape, np.nan, np.float32)
    dbias = np.full(y.shape[1], np.nan, np.float32)
    code = call_aot(library.BiasReluDropoutGrad, [y, dy, np.array([threads], np.int32),
                                                  np.array([rate], np.float32), dx, dbias])
    return code, dx, dbias


def test_the_gradient_kernel_scales_the_kept_values_gradient_and_sums_the_bias(library):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2000, 300)).astype(np.float32)
    bias = rng.standard_normal(300).astype(np.float32)
    _, y = _forward(library, x, bias, [5, 6], 2, 0.25)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    code, dx, dbias = _grad(library, y, dy, 3, 0.25)
    assert code == 0
    want = np.where(y > 0, dy / np.float32(0.75), np.float32(0))
    np.testing.assert_allclose(dx, want, rtol=1e-6)
    np.testing.assert_allclose(dbias, want.astype(np.float64).sum(0), rtol=1e-5, atol=1e-4)


def test_the_kernels_refuse_rates_shapes_and_dtypes_they_do_not_take(library):
    x = np.ones((4, 3), np.float32)
    bias = np.ones(3, np.float32)
    assert _forward(library, x, bias, [1, 2], 1, 0.0)[0] == 0
    for rate in (1.0, -0.1, np.nan):
        assert _forward(library, x, bias, [1, 2], 1, rate)[0] == 1
        assert _grad(library, x, x, 1, rate)[0] == 1
    assert _forward(library, x, bias, [1, 2, 3], 1, 0.5)[0] == 1                   # a key of 3
    assert _forward(library, x, bias[:2].copy(), [1, 2], 1, 0.5)[0] == 1
    assert _forward(library, x.astype(np.float64), bias, [1, 2], 1, 0.5)[0] == 1
    assert _grad(library, x, x[:, :2].copy(), 1, 0.5)[0] == 1
    assert call_aot(library.BiasReluDropoutGrad, [x, x, np.array([1], np.int32),
                                                  np.array([0.5], np.float64), x.copy(),
                                                  bias.copy()]) == 1


class _Loss(nn.Cell):
    def __init__(self, cell):
        super().__init__()
        self.cell = cell

    def construct(self, x, bias, dout):
        out = self.cell(x, bias)
        return (out * dout).sum(), out


def test_the_operator_draws_a_new_mask_per_call_and_has_its_gradient_in_a_graph():
    rate = 0.4
    cell = bias_relu.BiasRelu(threads=2, gradient=True, key="train_mlp").with_dropout(rate)
    rng = np.random.default_rng(7)
    x = rng.standard_normal((600, 50)).astype(np.float32)
    bias = rng.standard_normal(50).astype(np.float32)
    dout = rng.standard_normal((600, 50)).astype(np.float32)
    step = ms.value_and_grad(_Loss(cell), grad_position=(0, 1), has_aux=True)
    masks = []
    for _ in range(2):
        (_, out), (dx, dbias) = step(Tensor(x), Tensor(bias), Tensor(dout))
        out = out.asnumpy()
        relu = np.maximum(x + bias, 0)
        kept = out > 0
        np.testing.assert_allclose(out[kept], relu[kept] / np.float32(1 - rate), rtol=1e-6)
        assert abs(kept.sum() / (relu > 0).sum() - (1 - rate)) < 0.03
        want = np.where(kept, dout / np.float32(1 - rate), 0)
        np.testing.assert_allclose(dx.asnumpy(), want, rtol=1e-6)
        np.testing.assert_allclose(dbias.asnumpy(), want.sum(0), rtol=1e-4, atol=1e-4)
        masks.append(kept)
    assert (masks[0] != masks[1]).mean() > 0.2            # a new key each call


def test_an_mlp_with_dropout_takes_it_in_the_kernel_and_keeps_its_parameters_names():
    kwargs = dict(dims=[13, 64, 32, 1], init="reference_dlrm", seed=5, dropout=0.5)
    plain = MLP(**kwargs)
    kernel = MLP(train_bias_relu=bias_relu.BiasRelu(threads=2, gradient=True, key="train_mlp"),
                 **kwargs)
    assert [p.name for p in kernel.get_parameters()] == [p.name for p in plain.get_parameters()]
    assert not any(isinstance(cell, nn.Dropout) for cell in kernel.layers)
    assert sum(isinstance(cell, nn.Dropout) for cell in plain.layers) == 2
    droppers = [cell.train_bias_relu for cell in kernel.layers
                if isinstance(getattr(cell, "train_bias_relu", None), bias_relu.BiasReluDropout)]
    assert len(droppers) == 2 and droppers[0] is not droppers[1]          # a mask each
    # both count as drawing random numbers: no several train steps in one graph
    assert len(random_cells(kernel)) == len(random_cells(plain)) == 2
    ms.load_param_into_net(kernel, {p.name: p for p in plain.get_parameters()}, strict_load=True)
    x = Tensor(np.random.default_rng(1).standard_normal((400, 13)).astype(np.float32))
    for net in (plain, kernel):
        net.set_train(False)
    np.testing.assert_array_equal(kernel(x).asnumpy(), plain(x).asnumpy())   # no dropout
    kernel.set_train(True)
    first, second = kernel(x).asnumpy(), kernel(x).asnumpy()
    assert not np.array_equal(first, second)                                 # dropout runs


def test_the_dropout_kernel_takes_rates_inside_zero_and_one():
    with pytest.raises(ValueError, match="rate must lie in"):
        bias_relu.BiasRelu(threads=1, gradient=True, key="train_mlp").with_dropout(1.0)
