"""The DeepFM network: the FM and deep terms against NumPy, dropout."""
import numpy as np
from mindspore import Tensor

from criteo_inputs import CARD, criteo_inputs as _inputs
from src.deepfm.deepfm import DeepFM


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
