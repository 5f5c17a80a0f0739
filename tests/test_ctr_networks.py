"""DLRM and DeepFM networks: shapes, the interaction and FM arithmetic against
NumPy, constructor checks, initialisation and dropout."""
import math

import mindspore as ms
import numpy as np
import pytest
from mindspore import Tensor, nn, ops

from src.deepfm import DeepFM
from src.dlrm import DLRM, interaction_width
from src.layers.mlp import MLP
from src.layers.select import ColumnSelect, SplitLast
from weighted import WeightedSum

CARD = [30, 5, 70, 11]
OFFSETS = np.cumsum([0] + CARD[:-1])


def _inputs(n=6, seed=0, num_dense=13):
    rng = np.random.default_rng(seed)
    cat = (np.stack([rng.integers(0, c, n) for c in CARD], 1) + OFFSETS).astype(np.int32)
    return cat, rng.random((n, num_dense)).astype(np.float32)


@pytest.mark.parametrize("interaction,self_inter,width", [("dot", False, 8 + 10), ("dot", True, 8 + 15),
                                                           ("cat", False, 8 * 5)])
def test_dlrm_shapes_and_interaction_width(interaction, self_inter, width):
    assert interaction_width(4, 8, interaction, self_inter) == width
    net = DLRM(CARD, embedding_dim=8, bottom_units=(16, 8), top_units=(4,), interaction=interaction,
               self_interaction=self_inter)
    cat, dense = _inputs()
    assert net(Tensor(cat), Tensor(dense)).shape == (6, 1)
    assert net.top.layers[0].weight.shape == (width, 4)


def test_dlrm_dot_interaction_is_the_strict_lower_triangle():
    net = DLRM(CARD, embedding_dim=3, bottom_units=(3,), top_units=(2,))
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2, 3)).astype(np.float32)
    emb = rng.normal(size=(2, 4, 3)).astype(np.float32)
    got = net.interact(Tensor(x), Tensor(emb)).asnumpy()
    t = np.concatenate([x[:, None], emb], 1)
    pairs = [t[:, i] @ t[:, j].T for i in range(5) for j in range(i)]
    expected = np.concatenate([x, np.stack([np.diag(p) for p in pairs], 1)], 1)
    np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_dlrm_checks_say_what_is_wrong():
    with pytest.raises(ValueError, match="last width .* must equal embedding_dim"):
        DLRM(CARD, embedding_dim=16, bottom_units=(64, 32))
    with pytest.raises(ValueError, match="interaction must be"):
        DLRM(CARD, embedding_dim=4, bottom_units=(4,), interaction="sum")
    with pytest.raises(ValueError, match="categorical field"):
        DLRM([], embedding_dim=4, bottom_units=(4,))


def test_dlrm_reference_initialisation():
    net = DLRM([10000, 100], embedding_dim=16, bottom_units=(256, 16), top_units=(128,), seed=2)
    table = net.embedding.weight.asnumpy()
    assert np.abs(table[:10000]).max() <= math.sqrt(1 / 10000) + 1e-7
    assert np.abs(table[10000:10100]).max() <= math.sqrt(1 / 100) + 1e-7
    assert np.abs(table[10000:10100]).max() > 0.5 * math.sqrt(1 / 100)
    assert np.all(table[-1] == 0)                                    # scratch row
    w = net.bottom.layers[0].weight.asnumpy()                        # 13 -> 256
    assert w.std() == pytest.approx(math.sqrt(2 / (13 + 256)), rel=0.1)


def test_deepfm_terms_against_numpy():
    net = DeepFM(CARD, num_dense=3, embedding_dim=4, deep_units=(8,), embedding_scale=0.3)
    net.set_train(False)
    cat, dense = _inputs(n=5, num_dense=3)
    table = net.embedding.weight.asnumpy()
    ids = net.table_ids(cat)
    assert ids.shape == (5, 7) and np.all(ids[:, :3] == [0, 1, 2])
    rows = table[ids]                                                # (B, 7, 5)
    values = np.concatenate([dense, np.ones((5, 4), np.float32)], 1)[..., None]
    v = rows[..., :4] * values
    linear = (rows[..., 4:] * values).sum(1)
    fm = sum((v[:, i] * v[:, j]).sum(1) for i in range(7) for j in range(i + 1, 7))[:, None]
    deep = net.deep(Tensor(v.reshape(5, -1))).asnumpy()
    got = net(Tensor(cat), Tensor(dense)).asnumpy()
    np.testing.assert_allclose(got, linear + fm + deep, rtol=1e-4, atol=1e-5)


def test_deepfm_dropout_only_while_training():
    net = DeepFM(CARD, num_dense=3, embedding_dim=4, deep_units=(64, 64), dropout=0.5)
    cat, dense = _inputs(n=8, num_dense=3)
    net.set_train(False)
    a, b = net(Tensor(cat), Tensor(dense)).asnumpy(), net(Tensor(cat), Tensor(dense)).asnumpy()
    np.testing.assert_array_equal(a, b)
    net.set_train(True)
    c = net(Tensor(cat), Tensor(dense)).asnumpy()
    assert not np.allclose(a, c)


def test_mlp_checks():
    with pytest.raises(ValueError, match="at least one"):
        MLP([4], "reference_dlrm")
    with pytest.raises(ValueError, match="dropout"):
        MLP([4, 2], "reference_dlrm", dropout=1.0)


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
