"""PyTorch peer of DLRM (``src/dlrm/dlrm.py``) in two table layouts
(``VARIANTS``):

* ``fused`` (the default; which is faster depends on the case, so the
  benchmark runs both): one ``nn.Embedding(sum n_f, D,
  sparse=True)`` looked up with the global ids, every field's rows one slice
  of it, as torchrec's fused tables keep them; one gather per step.
* ``reference``: the way the reference facebookresearch DLRM is written, one
  ``nn.EmbeddingBag(n_f, D, mode="sum", sparse=True)`` per categorical field
  (bags of one id; 26 lookups per step).

Both give exactly the same outputs and updates (``bench.peer.check`` checks
each against ours). Rows start ``U(+-sqrt(1/n_f))`` per field; bottom and
top MLPs of ``nn.Linear`` (``W ~ N(0, sqrt(2/(in+out)))``,
``b ~ N(0, sqrt(1/out))``, ReLU; the bottom MLP ends in a ReLU, the top one
in a plain logit), dot interaction (strict lower triangle of ``T T^T`` with
``T = [x, e_1, ..., e_F]``, row-major pairs, optionally the diagonal) or
concatenation.

The input ``cat`` holds global ids (offsets added); the reference layout
subtracts the offsets and looks every field up in its own table. Loss:
BCE with logits, mean over the batch (+ ``embedding_l2 / 2`` times the
squares of the unique rows in the batch, if set; 0 by default).
Optimizer: one ``torch.optim.SGD`` over MLPs and tables for ``sgd`` (sparse
gradients, as the reference); ``adagrad`` / ``adam`` use torch's sparse
Adagrad / SparseAdam for the tables, like our row-wise optimizers.
"""
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from bench.peer.common import PeerModel, mlp


def interaction_width(num_sparse, dim, interaction, self_interaction):
    vectors = num_sparse + 1
    if interaction == "dot":
        return dim + vectors * (vectors - 1) // 2 + (vectors if self_interaction else 0)
    return dim * vectors


VARIANTS = ("fused", "reference")


class DLRMNet(nn.Module):
    def __init__(self, cardinalities, offsets, num_dense, embedding_dim, bottom_units, top_units,
                 interaction, self_interaction, generator, layout="fused"):
        super().__init__()
        if layout not in VARIANTS:
            raise ValueError(f"unknown DLRM peer layout {layout!r}; choose one of {VARIANTS}")
        cardinalities = [int(c) for c in cardinalities]
        self.num_sparse, self.dim = len(cardinalities), int(embedding_dim)
        self.cardinalities = cardinalities
        self.fused = layout == "fused"
        if self.fused:
            self.embedding = nn.Embedding(sum(cardinalities), self.dim, sparse=True)
        else:
            self.embeddings = nn.ModuleList(nn.EmbeddingBag(n, self.dim, mode="sum", sparse=True)
                                            for n in cardinalities)
        with torch.no_grad():              # the same draws in either layout
            tables = (torch.split(self.embedding.weight, cardinalities) if self.fused
                      else [bag.weight for bag in self.embeddings])
            for n, table in zip(cardinalities, tables):
                bound = float(np.sqrt(1.0 / n))
                table.uniform_(-bound, bound, generator=generator)
        self.bottom = mlp([int(num_dense)] + [int(u) for u in bottom_units], "reference_dlrm",
                          last_activation=True, generator=generator)
        width = interaction_width(self.num_sparse, self.dim, interaction, self_interaction)
        self.top = mlp([width] + [int(u) for u in top_units] + [1], "reference_dlrm",
                       generator=generator)
        self.dot = interaction == "dot"
        self.vectors = self.num_sparse + 1
        li, lj = np.tril_indices(self.vectors, 0 if self_interaction else -1)
        self.register_buffer("li", torch.from_numpy(li.astype(np.int64)))
        self.register_buffer("lj", torch.from_numpy(lj.astype(np.int64)))
        self.register_buffer("offsets", torch.tensor([int(o) for o in offsets], dtype=torch.int32))

    def tables(self):
        """The embedding weights: one (fused) or one per field (reference)."""
        return [self.embedding.weight] if self.fused else [bag.weight for bag in self.embeddings]

    def vectors_of(self, x, cat):
        """``(B, F+1, D)``: the bottom MLP's output, then every field's row."""
        if self.fused:
            return torch.cat((x.unsqueeze(1), self.embedding(cat)), dim=1)
        local = cat - self.offsets                                          # per-field ids
        return torch.stack([x] + [bag(local[:, f:f + 1]) for f, bag in enumerate(self.embeddings)],
                           dim=1)

    def interact(self, t):
        if not self.dot:
            return t.reshape(-1, self.vectors * self.dim)
        z = torch.bmm(t, t.transpose(1, 2))
        return torch.cat((t[:, 0], z[:, self.li, self.lj]), dim=1)

    def forward(self, cat, dense):
        return self.top(self.interact(self.vectors_of(self.bottom(dense), cat)))

    def penalty_rows(self, cat):
        """The batch's unique rows of every table (sparse gradients)."""
        if self.fused:
            return [F.embedding(torch.unique(cat), self.embedding.weight, sparse=True)]
        local = cat - self.offsets
        return [F.embedding(torch.unique(local[:, f]), bag.weight, sparse=True)
                for f, bag in enumerate(self.embeddings)]


class DLRMPeer(PeerModel):
    def __init__(self, cfg, feature_map, seed=1, steps_per_epoch=None, variant=None):
        generator = torch.Generator().manual_seed(int(seed))
        module = DLRMNet(feature_map["cardinalities"], feature_map["offsets"],
                         feature_map["num_dense"], cfg.embedding_dim, cfg.bottom_units,
                         cfg.top_units, cfg.interaction, cfg.self_interaction, generator,
                         layout=variant or VARIANTS[0])
        self.l2 = float(cfg.embedding_l2)
        dense = list(module.bottom.parameters()) + list(module.top.parameters())
        super().__init__(module, cfg, feature_map, dense, sparse_params=module.tables(),
                         steps_per_epoch=steps_per_epoch)

    def loss(self, cat, dense, labels):
        net = self.module
        loss = F.binary_cross_entropy_with_logits(net(cat, dense), labels)
        if self.l2 > 0:
            for rows in net.penalty_rows(cat):
                loss = loss + 0.5 * self.l2 * (rows * rows).sum()
        return loss

    def _special(self):
        net = self.module
        bounds = np.cumsum([0] + net.cardinalities)
        tables = net.tables()

        def load(value):                     # ours: one table plus a scratch row
            for f, table in enumerate(tables):
                part = value[:-1] if net.fused else value[bounds[f]:bounds[f + 1]]
                table.copy_(torch.from_numpy(np.ascontiguousarray(part)))

        def dump():
            parts = [table.detach().numpy() for table in tables]
            return np.concatenate(parts + [np.zeros((1, net.dim), np.float32)])
        return {"embedding.weight": (load, dump)}


PEER = DLRMPeer

# the cases of ``python -m bench.peer.check``: (name, config overrides, run the init check)
# (a fourth item names a peer variant; default: the first of VARIANTS)
CHECKS = [
    ("dlrm", ["--batch_size", "128"], True),
    ("dlrm reference layout", ["--batch_size", "128"], True, "reference"),
    ("dlrm adam l2 self-interaction",
     ["--batch_size", "64", "--optimizer", "adam", "--learning_rate", "0.001",
      "--embedding_l2", "0.001", "--self_interaction", "true"], False),
    ("dlrm reference adam l2",
     ["--batch_size", "64", "--optimizer", "adam", "--learning_rate", "0.001",
      "--embedding_l2", "0.001"], False, "reference"),
    ("dlrm adagrad cat", ["--batch_size", "64", "--optimizer", "adagrad", "--interaction", "cat"],
     False),
]


def embedding_fields(fmap):
    """Rows of the embedding table per initial distribution: one per field
    (U(+-sqrt(1/rows of the field)))."""
    return list(fmap["cardinalities"])
