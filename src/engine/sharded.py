"""Sharded embedding tables (``parallel: table`` or ``row``) in training and
validation.

Each rank holds its shard of the table (:mod:`src.engine.shard_plan`), and
the batch's ids arrive shifted into the sharded order (:func:`table_ids`).
A training step (:class:`ShardedTrainStep`) on ``R`` ranks with ``N`` unique
ids per rank:

1. AllGather of every rank's unique ids (``R*N``);
2. each rank gathers the rows it holds (zeros for the others), and an
   AllReduce (sum) gives every rank every rank's rows; a rank keeps its own
   ``N``;
3. forward and backward as in the replicated step; the dense gradients are
   averaged over the ranks;
4. AllGather of every rank's row gradients, divided by ``R``; the holder of
   a row sums its copies (an id used on several ranks) and updates its shard
   with the row optimizer. Every copy of a row gets the same averaged
   gradient: exactly the update of the replicated table.

The CPU backend (mccl) has AllGather and AllReduce but no AlltoAll or
ReduceScatter, so the rows travel by AllReduce: per step a rank sends and
receives ``R*N`` ids and ``2*R*N*D`` floats (plus the dense gradients),
against ``R*N`` ids and ``R*N*D`` floats for the replicated table; what it
saves is the table's memory, ``1/R`` of the rows (and of the row
optimizer's state) per rank.

Validation reads the same batches on every rank, so the lookup needs no
AllGather: each rank gathers what it holds and the AllReduce completes the
rows (:class:`ShardedPredictor`).
"""
import mindspore as ms
from mindspore import nn, ops

from src.engine.sparse import SparseTrainStep


def table_ids(network):
    """Host side: ``cat -> ids`` of a SparseTable network, shifted into its
    table's sharded order when the table is sharded."""
    plan = network.embedding.plan
    if plan is None or not plan.sharded:
        return network.table_ids
    return lambda cat: plan.to_sharded(network.table_ids(cat))


class ShardRows(nn.Cell):
    """``ids -> (local, held)``: each id's row in this rank's shard (the
    shard's scratch row for the ids it does not hold) and ``(n, 1)`` float
    1.0 / 0.0 for held or not."""

    def __init__(self, plan, rank):
        super().__init__()
        start, end = plan.rows_of(rank)
        self.start, self.end, self.scratch = int(start), int(end), int(end - start)

    def construct(self, ids):
        held = ops.logical_and(ids >= self.start, ids < self.end)
        local = ops.where(held, ids - self.start, ops.full_like(ids, self.scratch))
        return local, ops.cast(held, ms.float32).expand_dims(1)


class ShardedTrainStep(SparseTrainStep):
    """:class:`~src.engine.sparse.SparseTrainStep` over a sharded table
    (``table``: this rank's shard; see the module docstring)."""

    def __init__(self, net_with_loss, table, optimizer, row_optimizer, plan, rank, clip_norm=0.0,
                 loss_scale=1.0):
        super().__init__(net_with_loss, table, optimizer, row_optimizer, clip_norm=clip_norm,
                         loss_scale=loss_scale)
        if not self.distributed or self.ranks != plan.ranks:
            raise ValueError(f"a table sharded over {plan.ranks} ranks trains in a distributed job "
                             f"of as many ranks")
        self.rank = int(rank)
        self.shard_rows = ShardRows(plan, rank)
        self.all_reduce = ops.AllReduce()

    def construct(self, uniq, inverse, *inputs):
        n = uniq.shape[0]
        ids = self.all_gather(uniq)                                         # (R*N,)
        local, held = self.shard_rows(ids)
        every = self.all_reduce(ops.gather(self.table, local, 0) * held)    # (R*N, D)
        rows = every[self.rank * n:(self.rank + 1) * n]
        loss, grads, row_grad = self._gradients(rows, inverse, inputs)
        grads = self.grad_reducer(grads)
        shared = self.all_gather(row_grad) * held / self.ranks              # (R*N, D)
        mean = self._sum_copies(local, shared)
        loss = ops.depend(loss, self.optimizer(grads))
        return ops.depend(loss, self.row_optimizer(local, ops.gather(self.table, local, 0), mean))


class ShardedPredictor(nn.Cell):
    """``(uniq, inverse, other inputs...) -> probabilities`` of a network
    whose table is sharded, every rank running the same batch."""

    def __init__(self, network, activation):
        super().__init__(auto_prefix=False)
        self.network, self.activation = network, activation
        self.shard_rows = ShardRows(network.embedding.plan, network.embedding.rank)
        self.all_reduce = ops.AllReduce()

    def construct(self, uniq, inverse, *inputs):
        local, held = self.shard_rows(uniq)
        rows = self.all_reduce(ops.gather(self.network.embedding.weight, local, 0) * held)
        logits = self.network.forward_rows(rows, inverse, *inputs)
        return self.activation(ops.cast(logits, ms.float32))
