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
