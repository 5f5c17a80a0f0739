"""Shared by the tests of networks that fold a per-field embedding into
their first products (src.layers.fields.FieldEmbedding): a small field
layout, one-hot rows of it, and the check that a folded network computes the
unfolded one's gradients."""
import mindspore as ms
import numpy as np
from mindspore import Tensor

from src.layers.fields import NEVER, FieldEmbedding
from src.layers.initializers import make_initializer
from weighted import WeightedSum

FIELDS, NUMERIC, DIM = [(0, 30), (30, 20), (50, 10), (60, 5), (65, 9), (74, 6)], 2, 8
WIDTH = 82                                  # the one-hot columns and the numerics


def field_layer():
    return FieldEmbedding(FIELDS, NUMERIC, DIM, make_initializer("normal", 0.5))


def one_hot_rows(batch, rng):
    """``(batch, WIDTH)`` float32: one set column per field, then normal numerics."""
    x = np.zeros((batch, WIDTH), np.float32)
    for offset, size in FIELDS:
        x[np.arange(batch), offset + rng.integers(0, size, batch)] = 1.0
    x[:, WIDTH - NUMERIC:] = rng.standard_normal((batch, NUMERIC))
    return x


def unfolded_twin(folded, make):
    """A second network from ``make()`` with ``folded``'s parameters that never folds."""
    plain = make()
    ms.load_param_into_net(plain, {p.name: p for p in folded.get_parameters()}, strict_load=True)
    plain.fold_batch = NEVER
    return plain


def assert_same_gradients(first, second, x, weights, params=None):
    """In training mode, ``second`` gives ``first``'s outputs on ``x`` and the
    same gradients of the ``weights``-weighted sum of them for each parameter
    (``params`` of them, if given; every one non-zero)."""
    outputs, grads = [], []
    for net in (first, second):
        net.set_train(True)
        outputs.append(net(Tensor(x)).asnumpy())
        grad = ms.grad(WeightedSum(net, Tensor(weights)), grad_position=None,
                       weights=net.trainable_params())
        grads.append([g.asnumpy() for g in grad(Tensor(x))])
    np.testing.assert_allclose(outputs[1], outputs[0], rtol=1e-5, atol=1e-6)
    assert len(grads[0]) == len(grads[1]) == (params or len(first.trainable_params()))
    for a, b in zip(*grads):
        assert np.abs(a).max() > 0
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-6)
