"""Per-field embeddings of a one-hot tabular input (Census-Income's layout)."""
import numpy as np
from mindspore import Parameter, Tensor, nn, ops

from src.layers.initializers import init_matrix


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

    def construct(self, x):
        return self.matmul(x, self.weight * self.mask + self.passthrough)
