"""One embedding table for all categorical fields, trained row by row.

The CTR models keep every field's rows in one ``(rows + 1, dim)`` table
(field ``f`` owns rows ``offset[f] .. offset[f] + cardinality[f] - 1``, from
the feature map). The extra last row is a scratch row that no id points at:
training pads its list of unique ids with it so the train step has one static
shape (see :mod:`src.engine.sparse`).

The table is a non-trainable parameter: the dense optimizer never touches it
(a dense Adam step over 33 M rows would cost far more than the batch). The
sparse train step gathers the batch's unique rows, differentiates the loss
with respect to those rows only, and writes the updated rows back.
"""
import math

import numpy as np
from mindspore import Parameter, Tensor, nn, ops


def uniform_rows(cardinalities, dim, rng, scale=None):
    """Initial table ``(sum(cardinalities) + 1, dim)`` float32: each field's
    block ``U(+-sqrt(1/n_f))`` (the reference DLRM's) or ``U(+-scale)``; the
    scratch row is zero."""
    total = int(sum(cardinalities))
    table = np.zeros((total + 1, dim), np.float32)
    start = 0
    for n in cardinalities:
        bound = scale if scale is not None else math.sqrt(1.0 / n)
        table[start:start + n] = rng.uniform(-bound, bound, (n, dim)).astype(np.float32)
        start += n
    return table


class EmbeddingTable(nn.Cell):
    """``ids (...) -> rows (..., dim)`` from one table with a scratch last row."""

    def __init__(self, initial):
        super().__init__()
        initial = np.asarray(initial, np.float32)
        if initial.ndim != 2 or len(initial) < 2:
            raise ValueError(f"embedding table must be 2-D with at least one row plus the scratch "
                             f"row, got shape {initial.shape}")
        self.num_rows, self.dim = initial.shape[0] - 1, initial.shape[1]
        self.weight = Parameter(Tensor(initial), name="embedding", requires_grad=False)

    @property
    def scratch_row(self):
        return self.num_rows

    def construct(self, ids):
        return ops.gather(self.weight, ids, 0)
