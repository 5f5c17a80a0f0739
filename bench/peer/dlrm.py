"""PyTorch peer of DLRM (``src/dlrm/dlrm.py``), written the way the reference
facebookresearch DLRM is: one ``nn.EmbeddingBag(n_f, D, mode="sum",
sparse=True)`` per categorical field (rows ``U(+-sqrt(1/n_f))``), bottom and
top MLPs of ``nn.Linear`` (``W ~ N(0, sqrt(2/(in+out)))``,
``b ~ N(0, sqrt(1/out))``, ReLU; the bottom MLP ends in a ReLU, the top one
in a plain logit), dot interaction (strict lower triangle of ``T T^T`` with
``T = [x, e_1, ..., e_F]``, row-major pairs, optionally the diagonal) or
concatenation.

The input ``cat`` holds global ids (offsets added); the peer subtracts the
offsets and looks every field up in its own table (bags of one id). Loss:
BCE with logits, mean over the batch (+ ``embedding_l2 / 2`` times the
squares of each table's unique rows in the batch, if set; 0 by default).
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


class DLRMNet(nn.Module):
    def __init__(self, cardinalities, offsets, num_dense, embedding_dim, bottom_units, top_units,
                 interaction, self_interaction, generator):
        super().__init__()
        cardinalities = [int(c) for c in cardinalities]
        self.num_sparse, self.dim = len(cardinalities), int(embedding_dim)
        self.cardinalities = cardinalities
        self.embeddings = nn.ModuleList()
        for n in cardinalities:
            bag = nn.EmbeddingBag(n, self.dim, mode="sum", sparse=True)
            bound = float(np.sqrt(1.0 / n))
            with torch.no_grad():
                bag.weight.uniform_(-bound, bound, generator=generator)
            self.embeddings.append(bag)
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

    def local_ids(self, cat):
        return cat - self.offsets                                           # (B, F) per-field ids

    def lookup(self, local):
        return [bag(local[:, f:f + 1]) for f, bag in enumerate(self.embeddings)]  # F x (B, D)

    def interact(self, x, emb):
        t = torch.stack([x] + emb, dim=1)                                   # (B, F+1, D)
        if not self.dot:
            return t.reshape(-1, self.vectors * self.dim)
        z = torch.bmm(t, t.transpose(1, 2))
        return torch.cat((x, z[:, self.li, self.lj]), dim=1)

    def forward(self, cat, dense):
        x = self.bottom(dense)
        return self.top(self.interact(x, self.lookup(self.local_ids(cat))))


class DLRMPeer(PeerModel):
    def __init__(self, cfg, feature_map, seed=1, steps_per_epoch=None):
        generator = torch.Generator().manual_seed(int(seed))
        module = DLRMNet(feature_map["cardinalities"], feature_map["offsets"],
                         feature_map["num_dense"], cfg.embedding_dim, cfg.bottom_units,
                         cfg.top_units, cfg.interaction, cfg.self_interaction, generator)
        self.l2 = float(cfg.embedding_l2)
        tables = [bag.weight for bag in module.embeddings]
        dense = list(module.bottom.parameters()) + list(module.top.parameters())
        super().__init__(module, cfg, feature_map, dense, sparse_params=tables,
                         steps_per_epoch=steps_per_epoch)

    def loss(self, cat, dense, labels):
        net = self.module
        local = net.local_ids(cat)
        x = net.bottom(dense)
        logits = net.top(net.interact(x, net.lookup(local)))
        loss = F.binary_cross_entropy_with_logits(logits, labels)
        if self.l2 > 0:
            for f, bag in enumerate(net.embeddings):
                rows = F.embedding(torch.unique(local[:, f]), bag.weight, sparse=True)
                loss = loss + 0.5 * self.l2 * (rows * rows).sum()
        return loss

    def _special(self):
        net = self.module
        bounds = np.cumsum([0] + net.cardinalities)

        def load(value):                     # ours: one table plus a scratch row
            for f, bag in enumerate(net.embeddings):
                bag.weight.copy_(torch.from_numpy(np.ascontiguousarray(value[bounds[f]:bounds[f + 1]])))

        def dump():
            parts = [bag.weight.detach().numpy() for bag in net.embeddings]
            return np.concatenate(parts + [np.zeros((1, net.dim), np.float32)])
        return {"embedding.weight": (load, dump)}


PEER = DLRMPeer

# the cases of ``python -m bench.peer.check``: (name, config overrides, run the init check)
CHECKS = [
    ("dlrm", ["--batch_size", "128"], True),
    ("dlrm adam l2 self-interaction",
     ["--batch_size", "64", "--optimizer", "adam", "--learning_rate", "0.001",
      "--embedding_l2", "0.001", "--self_interaction", "true"], False),
    ("dlrm adagrad cat", ["--batch_size", "64", "--optimizer", "adagrad", "--interaction", "cat"],
     False),
]


def embedding_fields(fmap):
    """Rows of the embedding table per initial distribution: one per field
    (U(+-sqrt(1/rows of the field)))."""
    return list(fmap["cardinalities"])
