"""The DLRM network: shapes, the interaction against NumPy, constructor checks,
initialisation."""
import math

import numpy as np
import pytest
from mindspore import Tensor

from criteo_inputs import CARD, criteo_inputs as _inputs
from src.dlrm.dlrm import DLRM, interaction_width


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
