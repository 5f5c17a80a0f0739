"""DeepFM (Guo et al., IJCAI 2017): linear, factorisation-machine and deep
parts over shared field embeddings."""
import numpy as np
from mindspore import Parameter, Tensor, nn, ops

from src.layers.embedding import EmbeddingTable
from src.layers.initializers import make_initializer
from src.layers.mlp import MLP
from src.layers.select import SplitLast


class DeepFM(nn.Cell):
    """DeepFM over ``num_dense`` numeric fields and the categorical fields.

    Every field ``j`` has an embedding ``v_j`` (D values) and a linear weight
    ``w_j``, stored as one row of ``D + 1`` values of the shared table: the
    numeric fields own one row each (scaled by the field's value), a
    categorical field the row of its value (scaled by 1). With ``x_j`` those
    values, ``logit = b + sum_j w_j x_j`` (linear)
    ``+ 1/2 sum_d ((sum_j v_jd x_j)^2 - sum_j (v_jd x_j)^2)`` (FM) ``+
    MLP(concat_j v_j x_j)`` (deep, ``deep_units`` hidden layers with ReLU,
    dropout and optional batch norm, then 1).

    Shapes: ``cat`` ``(B, F)`` int32 global ids of the categorical fields
    (offsets from the feature map added), ``dense`` ``(B, num_dense)``
    float32; output logits ``(B, 1)``. Table rows: ``num_dense`` numeric rows,
    then the categorical fields' rows, then the scratch row.

    ``predict_fm``: a cell doing the lookup, the scaling and the linear and FM
    terms in one pass (:class:`~src.layers.fm_lookup.FmLookup`, config key
    ``predict_fm``), used by ``construct`` in eval mode; without it, and in
    training, the graph's operators. ``predict_mlp``: the deep part's bias
    and ReLU in one pass per layer in eval mode
    (:class:`~src.layers.bias_relu.BiasRelu`, config key ``predict_mlp``);
    ``train_mlp``: the same with a gradient, in training (config key
    ``train_mlp``). ``train_fm``: a cell doing :meth:`forward_rows`'s lookup
    in the batch's rows, scaling and linear and FM terms in one pass, with
    its gradient (:class:`~src.layers.fm_lookup.FmRows`, config key
    ``train_fm``); without it, the graph's operators.
    """

    def __init__(self, cardinalities, num_dense=13, embedding_dim=80, deep_units=(1024, 512, 256, 128),
                 dropout=0.0, batch_norm=False, init="xavier_uniform", init_scale=0.01,
                 embedding_scale=0.01, seed=0, shard=None, predict_fm=None, predict_mlp=None,
                 train_mlp=None, train_fm=None):
        super().__init__()
        cardinalities = [int(c) for c in cardinalities]
        if not cardinalities or min(cardinalities) < 1:
            raise ValueError(f"DeepFM needs at least one categorical field with rows, got {cardinalities}")
        if embedding_dim < 1:
            raise ValueError(f"embedding_dim must be positive, got {embedding_dim}")
        rng = np.random.default_rng(seed)
        self.num_dense, self.dim = int(num_dense), int(embedding_dim)
        self.num_fields = self.num_dense + len(cardinalities)
        rows = [1] * self.num_dense + cardinalities
        self.embedding = EmbeddingTable.uniform(rows, self.dim + 1, rng, scale=embedding_scale,
                                                shard=shard)
        self.dense_ids = Tensor(np.arange(self.num_dense, dtype=np.int32).reshape(1, -1))
        self.bias = Parameter(Tensor(np.zeros(1, np.float32)), name="bias")
        # (fields * D, D): row j*D + d holds a 1 in column d
        self.field_sum = Tensor(np.tile(np.eye(self.dim, dtype=np.float32), (self.num_fields, 1)))
        self.matmul = ops.MatMul()
        self.split = SplitLast(self.dim)                  # a row: (v_j, w_j)
        self.deep = MLP([self.num_fields * self.dim] + [int(u) for u in deep_units] + [1],
                        make_initializer(init, init_scale), dropout=dropout, batch_norm=batch_norm,
                        bias_relu=predict_mlp, train_bias_relu=train_mlp)
        self.predict_fm = predict_fm
        self.train_fm = train_fm

    def head(self, rows, dense):
        """``rows`` (B, fields, D+1) looked-up embeddings -> logits (B, 1)."""
        batch = dense.shape[0]
        values = ops.concat((dense, ops.ones((batch, self.num_fields - self.num_dense), dense.dtype)),
                            axis=1).expand_dims(2)                                 # (B, fields, 1)
        vectors, weights = self.split(rows)
        v = vectors * values                                                       # (B, fields, D)
        linear = (weights * values).reshape((batch, self.num_fields)).sum(
            axis=1, keepdims=True) + self.bias                                     # (B, 1)
        flat = v.reshape((batch, self.num_fields * self.dim))
        # sums over the field axis as products with a 0/1 matrix: ReduceSum over
        # a middle axis took a tenth of a DeepFM step on CPU
        field_sum = ops.cast(self.field_sum, flat.dtype)                           # float16 under amp
        summed = self.matmul(flat, field_sum)                                      # (B, D)
        fm = 0.5 * (summed * summed - self.matmul(flat * flat, field_sum)).sum(axis=1, keepdims=True)
        deep = self.deep(flat)
        return linear + fm + deep

    def forward_rows(self, rows, inverse, dense):
        if self.train_fm is not None:
            vectors, first = self.train_fm(rows, inverse, dense)
            return first + self.bias + self.deep(vectors)
        return self.head(ops.gather(rows, inverse, 0), dense)

    def construct(self, cat, dense):
        if self.predict_fm is not None and not self.training:
            vectors, first = self.predict_fm(self.embedding.weight, cat, dense)
            return first + self.bias + self.deep(vectors)
        batch = cat.shape[0]
        ids = ops.concat((ops.broadcast_to(self.dense_ids, (batch, self.num_dense)),
                          cat + self.num_dense), axis=1)
        return self.head(self.embedding(ids), dense)

    def table_ids(self, cat):
        """Host side: the table ids a batch's ``cat`` (numpy) looks up."""
        dense_ids = np.broadcast_to(np.arange(self.num_dense, dtype=cat.dtype), (len(cat), self.num_dense))
        return np.concatenate([dense_ids, cat + self.num_dense], axis=1)
