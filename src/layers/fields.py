"""Per-field embeddings of a one-hot tabular input (Census-Income's layout)."""
import math

import numpy as np
from mindspore import Parameter, Tensor, nn, ops

from src.layers.initializers import init_matrix


def fold_from(input_dim, output_dim, width):
    """The smallest batch size from which ``x @ (M @ K)``, for ``M`` of
    ``(input_dim, output_dim)`` and ``K`` of ``(output_dim, width)``, takes
    fewer multiply-adds than ``(x @ M) @ K`` over a training step's forward
    and backward products, with gradients for ``M`` and ``K`` but not ``x``;
    None if it never does.

    Per batch of B rows (i, o, k: the three widths): unfolded ``B (i o + o k)``
    forward and ``B (i o + 2 o k)`` backward; folded ``i o k + B i k`` forward
    and ``B i k + 2 i o k`` backward.
    """
    i, o, k = int(input_dim), int(output_dim), int(width)
    saving = 2 * i * o + 3 * o * k - 2 * i * k
    return math.ceil(3 * i * o * k / saving) if saving > 0 else None


NEVER = 2 ** 31 - 1        # a batch size no batch reaches: never fold


def fold_batch(input_layer, width):
    """The batch size from which a network folds ``input_layer`` into its
    next products of ``width`` columns in all (the layer's ``fold_from``), or
    :data:`NEVER` for a layer that cannot be folded or a fold that never pays."""
    fold = getattr(input_layer, "fold_from", None)
    return (fold(width) if fold is not None else None) or NEVER


class FieldEmbedding(nn.Cell):
    """One-hot fields to one ``dim``-vector per field; numerics pass through.

    Shapes: input ``(B, input_dim)`` laid out as the data set gives it: the
    one-hot columns of the fields (``fields``: ``(offset, size)`` each, within
    the first ``input_dim - num_numeric`` columns), then ``num_numeric``
    numeric columns. Output ``(B, len(fields) * dim + num_numeric)``: field
    ``f``'s embedding (the sum of the rows of its set columns: the row of its
    category, zeros for a category unseen in training) in columns
    ``f*dim .. (f+1)*dim - 1``, then the numerics unchanged.

    The network above sees ``len(fields) * dim`` inputs instead of one per
    category: with ``dim`` 4 on Census-Income's about 500 one-hot columns the
    first layers hold several times fewer weights. It is computed as one
    matrix product with a block-diagonal weight (the embedding tables, masked)
    plus a fixed identity block for the numerics, so the network's input,
    export signature and inference files stay those of the one-hot layout.

    The layer is linear, so a network whose next layer is a matrix product
    ``K`` may compute ``x @ (matrix() @ K)`` instead of ``(x @ matrix()) @ K``:
    the same function with the input's width times ``K``'s per row instead of
    the input's width times this layer's output plus that times ``K``'s, for
    one ``matrix() @ K`` per call. :meth:`fold_from` says from which batch
    size that is fewer multiply-adds.
    """

    def __init__(self, fields, num_numeric, dim, initializer):
        super().__init__()
        fields = [(int(o), int(s)) for o, s in fields]
        if int(dim) < 1 or not fields or any(s < 1 or o < 0 for o, s in fields):
            raise ValueError(f"FieldEmbedding: dim must be positive and fields non-empty "
                             f"(offset, size) pairs, got dim {dim}, fields {fields[:3]}...")
        n_onehot = max(o + s for o, s in fields)
        self.input_dim = n_onehot + int(num_numeric)
        self.output_dim = len(fields) * int(dim) + int(num_numeric)
        mask = np.zeros((self.input_dim, self.output_dim), np.float32)
        for f, (offset, size) in enumerate(fields):
            mask[offset:offset + size, f * dim:(f + 1) * dim] = 1.0
        if mask[:n_onehot].sum(axis=1).max() > dim:
            raise ValueError("FieldEmbedding: fields overlap")
        passthrough = np.zeros_like(mask)
        numeric = np.arange(int(num_numeric))
        passthrough[n_onehot + numeric, len(fields) * dim + numeric] = 1.0
        self.mask, self.passthrough = Tensor(mask), Tensor(passthrough)
        self.weight = Parameter(Tensor(init_matrix(initializer, self.input_dim, self.output_dim)
                                       * mask), name="weight")
        self.matmul = ops.MatMul()

    def matrix(self):
        """The ``(input_dim, output_dim)`` matrix the layer multiplies by."""
        return self.weight * self.mask + self.passthrough

    def fold_from(self, width):
        """:func:`fold_from` for this layer and a next product of ``width`` columns."""
        return fold_from(self.input_dim, self.output_dim, width)

    def construct(self, x):
        return self.matmul(x, self.matrix())
