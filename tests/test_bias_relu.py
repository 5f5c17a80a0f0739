"""A hidden layer's bias and ReLU in one pass (src/layers/bias_relu.cc,
config keys ``predict_mlp`` and ``train_mlp``): the kernel and its gradient
kernel against NumPy through their C entry points, an MLP predicting through
it exactly as through the graph, with the same cells and parameters and
training untouched, and an MLP training through it as through the graph."""
import ctypes

import mindspore as ms
import numpy as np
import pytest
from mindspore import Tensor, nn

from src.layers import bias_relu
from src.layers.mlp import MLP, HiddenReLU
from tests.aot import call_aot


@pytest.fixture(scope="module")
def library():
    return ctypes.CDLL(bias_relu.library_path())


def _call(library, x, bias, threads, out_shape=None):
    out = np.full(out_shape or x.shape, np.nan, np.float32)
    code = call_aot(library.BiasRelu, [x, bias, np.array([threads], np.int32), out])
    return code, out


@pytest.mark.parametrize("rows, cols, threads", [(1, 1, 1), (700, 400, 2), (3, 5, 4),
                                                  (129, 16, 3), (5000, 7, 2)])
def test_the_kernel_adds_the_bias_and_takes_the_relu(library, rows, cols, threads):
    rng = np.random.default_rng(rows + cols)
    x = rng.standard_normal((rows, cols)).astype(np.float32)
    bias = rng.standard_normal(cols).astype(np.float32)
    code, out = _call(library, x, bias, threads)
    assert code == 0
    np.testing.assert_array_equal(out, np.maximum(x + bias, np.float32(0)))
    assert (out == 0).any() and (out > 0).any() or rows * cols < 4


def test_the_kernel_refuses_shapes_and_dtypes_it_does_not_take(library):
    x = np.ones((4, 3), np.float32)
    bias = np.ones(3, np.float32)
    assert _call(library, x, bias, 1)[0] == 0
    assert _call(library, x, bias[:2], 1)[0] == 1                       # bias of 2 for 3 columns
    assert _call(library, x, bias, 1, out_shape=(4, 4))[0] == 1
    assert _call(library, x.reshape(2, 2, 3), bias, 1, out_shape=(2, 2, 3))[0] == 1
    assert _call(library, x.astype(np.float64), bias, 1)[0] == 1
    assert call_aot(library.BiasRelu, [x, bias, np.array([1], np.int64), x.copy()]) == 1


def _pair(**kwargs):
    """Two MLPs with the same weights, the second predicting through the kernel."""
    plain = MLP(init="reference_dlrm", seed=5, **kwargs)
    kernel = MLP(init="reference_dlrm", seed=5, bias_relu=bias_relu.BiasRelu(threads=2), **kwargs)
    assert [p.name for p in kernel.get_parameters()] == [p.name for p in plain.get_parameters()]
    ms.load_param_into_net(kernel, {p.name: p for p in plain.get_parameters()}, strict_load=True)
    return plain, kernel


@pytest.mark.parametrize("kwargs", [
    dict(dims=[13, 64, 32, 1]),
    dict(dims=[13, 64, 16], last_activation=True),
    dict(dims=[13, 64, 32, 1], dropout=0.3),
], ids=["hidden", "last_activation", "dropout"])
def test_an_mlp_predicts_through_the_kernel_exactly_as_through_the_graph(kwargs):
    plain, kernel = _pair(**kwargs)
    fused = [cell for cell in kernel.layers if isinstance(cell, HiddenReLU)]
    assert len(fused) == len(kwargs["dims"]) - (1 if kwargs.get("last_activation") else 2)
    x = Tensor(np.random.default_rng(1).standard_normal((300, 13)).astype(np.float32) * 3)
    for net in (plain, kernel):
        net.set_train(False)
    expected = plain(x).asnumpy()
    np.testing.assert_array_equal(kernel(x).asnumpy(), expected)
    np.testing.assert_array_equal(kernel(x[:1]).asnumpy(), expected[:1])
    if not kwargs.get("dropout"):                  # training: the graph's ReLUs, the same sums
        for net in (plain, kernel):
            net.set_train(True)
        np.testing.assert_array_equal(kernel(x).asnumpy(), plain(x).asnumpy())


def _call_grad(library, y, dy, threads, n=None):
    dx = np.full(y.shape, np.nan, np.float32)
    dbias = np.full(y.shape[1] if n is None else n, np.nan, np.float32)
    code = call_aot(library.BiasReluGrad, [y, dy, np.array([threads], np.int32), dx, dbias])
    return code, dx, dbias


@pytest.mark.parametrize("rows, cols, threads", [(1, 1, 1), (700, 400, 2), (3, 5, 4),
                                                  (2000, 300, 3), (5000, 7, 2)])
def test_the_gradient_kernel_masks_by_the_output_and_sums_the_bias(library, rows, cols, threads):
    rng = np.random.default_rng(rows * cols)
    y = np.maximum(rng.standard_normal((rows, cols)), 0).astype(np.float32)
    dy = rng.standard_normal((rows, cols)).astype(np.float32)
    code, dx, dbias = _call_grad(library, y, dy, threads)
    assert code == 0
    want = np.where(y > 0, dy, np.float32(0))
    np.testing.assert_array_equal(dx, want)
    np.testing.assert_allclose(dbias, want.astype(np.float64).sum(0), rtol=1e-5, atol=1e-4)


def test_the_gradient_kernel_refuses_shapes_and_dtypes_it_does_not_take(library):
    y = np.ones((4, 3), np.float32)
    assert _call_grad(library, y, y, 1)[0] == 0
    assert _call_grad(library, y, y[:, :2].copy(), 1)[0] == 1
    assert _call_grad(library, y, y, 1, n=4)[0] == 1
    assert _call_grad(library, y, y.astype(np.float64), 1)[0] == 1
    assert call_aot(library.BiasReluGrad, [y, y, np.array([1], np.int32), y.copy()]) == 1


class _Loss(nn.Cell):
    def __init__(self, net):
        super().__init__()
        self.net = net

    def construct(self, x, target):
        return ((self.net(x) - target) ** 2).mean()


@pytest.mark.parametrize("kwargs", [
    dict(dims=[13, 64, 32, 1]),
    dict(dims=[13, 300, 16], last_activation=True),
    dict(dims=[13, 8, 8, 1], batch_norm=True),
], ids=["hidden", "last_activation", "batch_norm"])
def test_an_mlp_trains_through_the_kernel_as_through_the_graph(kwargs):
    plain = MLP(init="reference_dlrm", seed=5, **kwargs)
    kernel = MLP(init="reference_dlrm", seed=5, bias_relu=bias_relu.BiasRelu(threads=2),
                 train_bias_relu=bias_relu.BiasRelu(threads=2, gradient=True, key="train_mlp"),
                 **kwargs)
    assert [p.name for p in kernel.get_parameters()] == [p.name for p in plain.get_parameters()]
    ms.load_param_into_net(kernel, {p.name: p for p in plain.get_parameters()}, strict_load=True)
    rng = np.random.default_rng(2)
    x = Tensor(rng.standard_normal((1500, 13)).astype(np.float32) * 3)
    target = Tensor(rng.standard_normal((1500, kwargs["dims"][-1])).astype(np.float32))
    predicted = []
    for net in (plain, kernel):       # prediction first: training moves batch norm's statistics
        net.set_train(False)
        predicted.append(net(x).asnumpy())
    np.testing.assert_array_equal(predicted[1], predicted[0])
    results = []
    for net in (plain, kernel):
        net.set_train(True)
        loss, grads = ms.value_and_grad(_Loss(net), None, net.trainable_params())(x, target)
        results.append((loss.asnumpy(), [g.asnumpy() for g in grads]))
    (loss, grads), (k_loss, k_grads) = results
    np.testing.assert_allclose(k_loss, loss, rtol=1e-6)
    for got, want in zip(k_grads, grads):
        assert np.abs(want).max() > 0
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)
    fused = sum(getattr(cell, "train_bias_relu", None) is not None for cell in kernel.layers)
    assert fused == (0 if kwargs.get("batch_norm") else
                     len(kwargs["dims"]) - (1 if kwargs.get("last_activation") else 2))


def test_a_layer_fused_in_one_mode_only_takes_the_relu_in_the_other():
    x = Tensor(np.array([[-1.0, 2.0]], np.float32))
    for in_train, in_predict, want_train, want_predict in [
            (True, False, [0, 2], [-1, 2]), (False, True, [-1, 2], [0, 2]),
            (False, False, [-1, 2], [-1, 2])]:
        cell = HiddenReLU(in_train=in_train, in_predict=in_predict)
        for train, want in ((True, want_train), (False, want_predict)):
            cell.set_train(train)
            np.testing.assert_array_equal(cell(x).asnumpy(), np.array([want], np.float32))


def test_a_layer_with_batch_norm_keeps_the_graphs_relu():
    """Batch norm comes between the bias and the ReLU, so those layers are
    not fused; the last layer (no ReLU) never is."""
    _, kernel = _pair(dims=[13, 8, 8, 1], batch_norm=True)
    assert not any(isinstance(cell, HiddenReLU) for cell in kernel.layers)
    assert sum(isinstance(cell, nn.ReLU) for cell in kernel.layers) == 2
    assert all(getattr(cell, "bias_relu", None) is None for cell in kernel.layers)


def test_the_config_key_is_checked_and_refuses_mixed_precision():
    from src.config import Config
    with pytest.raises(ValueError, match="predict_mlp must be one of graph, native"):
        bias_relu.predict_mlp(Config({"predict_mlp": "fused"}, config_path=None))
    assert bias_relu.predict_mlp(Config({"predict_mlp": "graph"}, config_path=None)) is None
    assert bias_relu.predict_mlp(Config({}, config_path=None)) is None
    assert isinstance(bias_relu.predict_mlp(Config({"predict_mlp": "native"}, config_path=None)),
                      bias_relu.BiasRelu)
    with pytest.raises(ValueError, match="set predict_mlp: graph or amp_level O0"):
        bias_relu.predict_mlp(Config({"predict_mlp": "native", "amp_level": "O2"},
                                     config_path=None))
    with pytest.raises(ValueError, match="train_mlp must be one of graph, native"):
        bias_relu.train_mlp(Config({"train_mlp": "fused"}, config_path=None))
    assert bias_relu.train_mlp(Config({"train_mlp": "graph"}, config_path=None)) is None
    assert bias_relu.train_mlp(Config({}, config_path=None)) is None
    assert isinstance(bias_relu.train_mlp(Config({"train_mlp": "native"}, config_path=None)),
                      bias_relu.BiasRelu)


def test_the_training_kernel_is_cpu_only(monkeypatch):
    monkeypatch.setattr(ms, "get_context", lambda key: "Ascend")
    with pytest.raises(ValueError, match="train_mlp: native is a CPU kernel; on Ascend set "
                                         "train_mlp: graph"):
        bias_relu.BiasRelu(gradient=True, key="train_mlp")
