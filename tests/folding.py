"""Shared by the tests of networks that fold a per-field embedding into
their first products (src.layers.fields.FieldEmbedding): a small field
layout, one-hot rows of it, and the network's twin that never folds (which
weighted.assert_same_function compares it with)."""
import mindspore as ms
import numpy as np

from src.layers.fields import NEVER, FieldEmbedding
from src.layers.initializers import make_initializer

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


def assert_input_product_predicts_the_same(make, rng):
    """``make(input_layer, input_product)`` builds a network. With the
    sparse-input product it must predict what it predicts through MatMul,
    folded through a field layer at its fold batch and on the raw input
    with no layer; and it must use the product there, but not below the fold
    batch nor in training (a product that is off by one changes exactly
    those outputs)."""
    from mindspore import Tensor, nn
    from src.layers.sparse_input import SparseInputProduct

    class OffByOne(nn.Cell):
        def __init__(self):
            super().__init__()
            self.product = SparseInputProduct(2)

        def construct(self, x, w, bias):
            return self.product(x, w, bias) + 1.0

    for with_layer in (True, False):
        nets = [make(field_layer() if with_layer else None, product)
                for product in (None, SparseInputProduct(2), OffByOne())]
        for p in nets[0].get_parameters():          # biases too: they start at zero
            p.set_data(Tensor(rng.standard_normal(p.shape).astype(np.float32) * 0.5))
        for net in nets[1:]:
            ms.load_param_into_net(net, {p.name: p for p in nets[0].get_parameters()},
                                   strict_load=True)
        big = nets[0].fold_batch if with_layer else 40
        x = one_hot_rows(big, rng)
        for batch, used in ((big, True), (7, not with_layer)):
            for train in (False, True):
                outs = []
                for net in nets:
                    net.set_train(train)
                    outs.append(net(Tensor(x[:batch])).asnumpy())
                np.testing.assert_allclose(outs[1], outs[0], rtol=1e-5, atol=1e-5)
                off = not np.allclose(outs[2], outs[0], rtol=1e-5, atol=1e-5)
                assert off == (used and not train), (with_layer, batch, train)
