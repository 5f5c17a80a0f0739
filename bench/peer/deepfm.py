"""PyTorch peer of DeepFM (``src/deepfm/deepfm.py``).

One ``nn.Embedding(num_dense + sum(cardinalities), D + 1, sparse=True)``
table, laid out like ours without the scratch row: one row per numeric field
(scaled by the field's value), then every categorical field's rows; column
``D`` of a row is the field's first-order (linear) weight. Rows start as
``U(+-embedding_scale)``. Logit = bias + linear + FM + deep MLP (``nn.Linear``
layers, ReLU, optional batch norm, dropout), exactly our ``head``.

Training: the loss is the BCE-with-logits mean plus ``embedding_l2 / 2``
times the sum of squares of the batch's *unique* table rows (ours penalises
the unique rows once each, not every lookup). With ``embedding_l2 > 0`` the
step therefore looks up the unique ids (``torch.unique``) and gathers the
batch from them, which gives the penalty and the lookups from one sparse
gradient; with 0 it is a plain ``nn.Embedding`` lookup. The table is updated
by ``torch.optim.SparseAdam`` (lazy Adam: only the batch's rows and their
moments change, bias correction by the step count, eps on the uncorrected
``sqrt(v)`` -- our row-wise Adam exactly), the MLP and bias by
``torch.optim.Adam`` (eps per step, see ``common``). ``sgd`` / ``adagrad``
map to their sparse torch forms.
"""
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from bench.peer.common import PeerModel, mlp


class DeepFMNet(nn.Module):
    def __init__(self, cardinalities, num_dense, embedding_dim, deep_units, dropout, batch_norm,
                 init, init_scale, embedding_scale, generator):
        super().__init__()
        cardinalities = [int(c) for c in cardinalities]
        self.num_dense, self.dim = int(num_dense), int(embedding_dim)
        self.num_fields = self.num_dense + len(cardinalities)
        self.embedding = nn.Embedding(self.num_dense + sum(cardinalities), self.dim + 1, sparse=True)
        with torch.no_grad():
            self.embedding.weight.uniform_(-embedding_scale, embedding_scale, generator=generator)
        self.bias = nn.Parameter(torch.zeros(1))
        self.deep = mlp([self.num_fields * self.dim] + [int(u) for u in deep_units] + [1], init,
                        init_scale, dropout=dropout, batch_norm=batch_norm, generator=generator)
        self.register_buffer("dense_ids", torch.arange(self.num_dense, dtype=torch.int32).view(1, -1))

    def ids(self, cat):
        """Table ids ``(B, fields)``: the numeric fields' rows, then ``cat`` shifted past them."""
        return torch.cat((self.dense_ids.expand(cat.shape[0], -1), cat + self.num_dense), dim=1)

    def head(self, rows, dense):
        batch = dense.shape[0]
        values = torch.cat((dense, dense.new_ones(batch, self.num_fields - self.num_dense)),
                           dim=1).unsqueeze(2)                                   # (B, fields, 1)
        v = rows[:, :, :self.dim] * values                                       # (B, fields, D)
        linear = (rows[:, :, self.dim:] * values).sum(1) + self.bias             # (B, 1)
        summed = v.sum(1)
        fm = 0.5 * (summed * summed - (v * v).sum(1)).sum(1, keepdim=True)
        deep = self.deep(v.reshape(batch, self.num_fields * self.dim))
        return linear + fm + deep

    def forward(self, cat, dense):
        return self.head(self.embedding(self.ids(cat)), dense)


class DeepFMPeer(PeerModel):
    def __init__(self, cfg, feature_map, seed=1, steps_per_epoch=None):
        generator = torch.Generator().manual_seed(int(seed))
        module = DeepFMNet(feature_map["cardinalities"], feature_map["num_dense"], cfg.embedding_dim,
                           cfg.deep_units, cfg.dropout, cfg.batch_norm, cfg.init, cfg.init_scale,
                           cfg.embedding_scale, generator)
        self.l2 = float(cfg.embedding_l2)
        table = module.embedding.weight
        dense = [p for p in module.parameters() if p is not table]
        bn = [p for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
              for p in m.parameters()]
        super().__init__(module, cfg, feature_map, dense, no_decay=bn, sparse_params=[table],
                         steps_per_epoch=steps_per_epoch)

    def loss(self, cat, dense, labels):
        net = self.module
        ids = net.ids(cat)
        if self.l2 > 0:
            uniq, inverse = torch.unique(ids, return_inverse=True)
            urows = F.embedding(uniq, net.embedding.weight, sparse=True)        # (U, D+1)
            logits = net.head(F.embedding(inverse, urows), dense)
            penalty = 0.5 * self.l2 * (urows * urows).sum()
            return F.binary_cross_entropy_with_logits(logits, labels) + penalty
        logits = net.head(net.embedding(ids), dense)
        return F.binary_cross_entropy_with_logits(logits, labels)

    def _special(self):
        weight = self.module.embedding.weight

        def load(value):                       # ours has a scratch last row
            weight.copy_(torch.from_numpy(np.ascontiguousarray(value[:-1])))

        def dump():
            w = weight.detach().numpy()
            return np.concatenate([w, np.zeros((1, w.shape[1]), w.dtype)])
        return {"embedding.weight": (load, dump)}


PEER = DeepFMPeer

# the cases of ``python -m bench.peer.check``: (name, config overrides, run the init check)
CHECKS = [
    ("deepfm", ["--batch_size", "64", "--dropout", "0.0"], True),
    # SGD: the Dense biases before a batch norm have an exactly zero gradient, so under Adam
    # their update is lr-sized and driven by round-off noise (see bench/peer/check.py)
    ("deepfm bn sgd wd",
     ["--batch_size", "64", "--dropout", "0.0", "--batch_norm", "true", "--optimizer", "sgd",
      "--learning_rate", "0.1", "--weight_decay", "0.01"], True),
    ("deepfm adagrad clip",
     ["--batch_size", "64", "--dropout", "0.0", "--optimizer", "adagrad", "--clip_norm", "0.05"],
     False),
    ("deepfm sgd no l2",
     ["--batch_size", "64", "--dropout", "0.0", "--optimizer", "sgd", "--embedding_l2", "0.0"],
     False),
]


def embedding_fields(fmap):
    """Rows of the embedding table per initial distribution: one for all rows
    (the dense features' rows and every field's)."""
    return [fmap["num_dense"] + sum(fmap["cardinalities"])]
