"""DLRM (Naumov et al., 2019): bottom MLP, embeddings, interaction, top MLP."""
import numpy as np
from mindspore import nn, ops

from src.layers.dot_interaction import pair_count
from src.layers.embedding import EmbeddingTable
from src.layers.mlp import MLP
from src.layers.select import ColumnSelect

INTERACTIONS = ("dot", "cat")


def interaction_width(num_sparse, dim, interaction, self_interaction):
    """Width of the top MLP's input: the bottom output ``dim`` plus, for ``dot``,
    ``C(F+1, 2)`` pairwise dot products of the ``F+1`` vectors (``+ F+1`` with
    self-interaction), or for ``cat`` the ``F`` embeddings concatenated."""
    if interaction == "dot":
        return dim + pair_count(num_sparse, self_interaction)
    return dim * (num_sparse + 1)


class DLRM(nn.Cell):
    """Deep Learning Recommendation Model.

    Shapes: ``cat`` ``(B, F)`` int32 global table ids (field offsets from the
    feature map already added), ``dense`` ``(B, 13)`` float32; output logits
    ``(B, 1)``. Embedding dimension ``D``; the ``F`` embeddings and the bottom
    MLP's output (``D`` wide) interact by pairwise dot products (strict lower
    triangle, optionally with the diagonal) concatenated with the bottom output,
    or by concatenation; the top MLP maps that to one logit.

    Args:
        cardinalities: rows of each field's table (from the feature map).
        num_dense: dense features.
        embedding_dim: D.
        bottom_units: bottom MLP widths after the input; the last must be D.
        top_units: top MLP hidden widths (a final layer of 1 is added).
        interaction: ``dot`` or ``cat``.
        self_interaction: include each vector's dot product with itself.
        seed: seed of the reference initialisation (tables U(+-sqrt(1/n)),
            MLP weights N(0, sqrt(2/(in+out))), biases N(0, sqrt(1/out))).
        shard: ``(parallel mode, ranks, rank)``: hold only this rank's shard
            of the table (see :mod:`src.engine.sharded`).
        predict_interaction: a cell doing the lookup and the dot interaction
            in one pass (:class:`~src.layers.dot_interaction.DotInteraction`,
            config key ``predict_interaction``), used by ``construct`` in eval
            mode; without it, and in training, the graph's operators.
        predict_mlp: the MLPs' bias and ReLU in one pass per layer in eval
            mode (:class:`~src.layers.bias_relu.BiasRelu`, config key
            ``predict_mlp``).
        train_mlp: the MLPs' bias and ReLU in one pass per layer in
            training, with a gradient (config key ``train_mlp``).
        train_interaction: a cell computing the dot interaction from the
            looked-up rows, with its gradient
            (:class:`~src.layers.dot_interaction.DotPairs`, config key
            ``train_interaction``), used wherever the rows are looked up
            first (training, and prediction without ``predict_interaction``);
            without it, the graph's operators.

    The train step calls :meth:`forward_rows` with the batch's unique rows
    (see :mod:`src.engine.sparse`); inference and export call ``construct``.
    """

    def __init__(self, cardinalities, num_dense=13, embedding_dim=16, bottom_units=(512, 256, 64, 16),
                 top_units=(512, 256), interaction="dot", self_interaction=False, seed=0,
                 shard=None, predict_interaction=None, predict_mlp=None, train_interaction=None,
                 train_mlp=None):
        super().__init__()
        cardinalities = [int(c) for c in cardinalities]
        if not cardinalities or min(cardinalities) < 1:
            raise ValueError(f"DLRM needs at least one categorical field with rows, got {cardinalities}")
        if interaction not in INTERACTIONS:
            raise ValueError(f"interaction must be one of {INTERACTIONS}, got {interaction!r}")
        bottom_units = [int(u) for u in bottom_units]
        if not bottom_units or bottom_units[-1] != embedding_dim:
            raise ValueError(f"the bottom MLP's last width ({bottom_units[-1] if bottom_units else None}) "
                             f"must equal embedding_dim ({embedding_dim}): its output joins the "
                             "embeddings in the interaction")
        rng = np.random.default_rng(seed)
        self.num_sparse, self.dim = len(cardinalities), int(embedding_dim)
        self.embedding = EmbeddingTable.uniform(cardinalities, self.dim, rng, shard=shard)
        self.bottom = MLP([num_dense] + bottom_units, "reference_dlrm", last_activation=True,
                          seed=int(rng.integers(1 << 31)), bias_relu=predict_mlp,
                          train_bias_relu=train_mlp)
        width = interaction_width(self.num_sparse, self.dim, interaction, self_interaction)
        self.top = MLP([width] + [int(u) for u in top_units] + [1], "reference_dlrm",
                       seed=int(rng.integers(1 << 31)), bias_relu=predict_mlp,
                       train_bias_relu=train_mlp)
        self.dot = interaction == "dot"
        vectors = self.num_sparse + 1
        li, lj = np.tril_indices(vectors, 0 if self_interaction else -1)
        # the pairs' positions in the flattened (F+1) x (F+1) products
        self.pairs = ColumnSelect(li * vectors + lj, vectors * vectors)
        self.vectors = vectors
        # transpose flag, not a Transpose op (forward and gradient): cheaper on CPU
        self.gram = ops.BatchMatMul(transpose_b=True)
        for name, cell in (("predict_interaction", predict_interaction),
                           ("train_interaction", train_interaction)):
            if cell is not None and not self.dot:
                raise ValueError(f"{name} computes the dot interaction, not cat")
        self.predict_interaction = predict_interaction
        self.train_interaction = train_interaction

    def interact(self, x, emb):
        """``x`` (B, D) bottom output, ``emb`` (B, F, D) -> (B, width)."""
        if self.train_interaction is not None:
            return self.train_interaction(x, emb)
        t = ops.concat((x.expand_dims(1), emb), axis=1)                     # (B, F+1, D)
        if not self.dot:
            return t.reshape((-1, self.vectors * self.dim))
        z = self.gram(t, t).reshape((-1, self.vectors * self.vectors))
        return ops.concat((x, self.pairs(z)), axis=1)

    def head(self, emb, dense):
        x = self.bottom(dense)
        return self.top(self.interact(x, emb))

    def forward_rows(self, rows, inverse, dense):
        return self.head(ops.gather(rows, inverse, 0), dense)

    def construct(self, cat, dense):
        if self.predict_interaction is not None and not self.training:
            return self.top(self.predict_interaction(self.embedding.weight, cat, self.bottom(dense)))
        return self.head(self.embedding(cat), dense)

    def table_ids(self, cat):
        """Host side: the table ids a batch's ``cat`` (numpy) looks up."""
        return cat
