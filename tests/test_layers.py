"""Shared layers: the MLP's checks, column selections and splits (values and
gradients)."""
import mindspore as ms
import numpy as np
import pytest
from mindspore import Tensor, nn, ops

from src.layers.mlp import MLP
from src.layers.select import ColumnSelect, SplitLast
from weighted import WeightedSum


def test_mlp_checks():
    with pytest.raises(ValueError, match="at least one"):
        MLP([4], "reference_dlrm")
    with pytest.raises(ValueError, match="dropout"):
        MLP([4, 2], "reference_dlrm", dropout=1.0)


def test_mlp_predicts_what_it_trains_on():
    """Prediction adds the biases with BiasAdd, training with Add: the same
    outputs, equal to NumPy's."""
    mlp = MLP([7, 5, 3], "reference_dlrm", seed=4)
    x = np.random.default_rng(0).normal(size=(6, 7)).astype(np.float32)
    (w1, b1), (w2, b2) = [(d.weight.asnumpy(), d.bias.asnumpy()) for d in
                          (mlp.layers[0], mlp.layers[2])]
    want = np.maximum(x @ w1 + b1, 0) @ w2 + b2
    mlp.set_train(True)
    trained = mlp(Tensor(x)).asnumpy()
    mlp.set_train(False)
    predicted = mlp(Tensor(x)).asnumpy()
    np.testing.assert_allclose(trained, want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(predicted, want, rtol=1e-5, atol=1e-6)


class _Gather(nn.Cell):
    def __init__(self, columns):
        super().__init__()
        self.columns = Tensor(np.asarray(columns, np.int32))

    def construct(self, x):
        return ops.gather(x, self.columns, 1)


def test_column_select_values_and_gradient_equal_the_gather():
    rng = np.random.default_rng(0)
    x = Tensor(rng.normal(size=(5, 9)).astype(np.float32))
    columns = np.array([7, 0, 3, 4])
    sens = Tensor(rng.normal(size=(5, 4)).astype(np.float32))
    select = ColumnSelect(columns, 9)
    np.testing.assert_array_equal(select(x).asnumpy(), x.asnumpy()[:, columns])
    ours = ms.grad(WeightedSum(select, sens))(x).asnumpy()
    gathered = ms.grad(WeightedSum(_Gather(columns), sens))(x)
    expected = np.zeros((5, 9), np.float32)
    expected[:, columns] = sens.asnumpy()
    np.testing.assert_array_equal(ours, expected)
    np.testing.assert_array_equal(ours, gathered.asnumpy())


def test_column_select_refuses_repeated_or_outside_columns():
    with pytest.raises(ValueError, match="distinct"):
        ColumnSelect([1, 2, 1], 4)
    with pytest.raises(ValueError, match=r"\[0, 4\)"):
        ColumnSelect([1, 4], 4)


def test_split_last_values_and_gradient():
    rng = np.random.default_rng(1)
    x = Tensor(rng.normal(size=(3, 4, 6)).astype(np.float32))
    split = SplitLast(5)
    head, tail = split(x)
    np.testing.assert_array_equal(head.asnumpy(), x.asnumpy()[..., :5])
    np.testing.assert_array_equal(tail.asnumpy(), x.asnumpy()[..., 5:])
    sens = rng.normal(size=(3, 4, 6)).astype(np.float32)
    weighted = _SplitWeighted(split, Tensor(sens[..., :5]), Tensor(sens[..., 5:]))
    np.testing.assert_array_equal(ms.grad(weighted)(x).asnumpy(), sens)
    with pytest.raises(ValueError, match="k >= 1"):
        SplitLast(0)


class _SplitWeighted(nn.Cell):
    def __init__(self, split, first, second):
        super().__init__()
        self.split, self.first, self.second = split, first, second

    def construct(self, x):
        head, tail = self.split(x)
        return (head * self.first).sum() + (tail * self.second).sum()
