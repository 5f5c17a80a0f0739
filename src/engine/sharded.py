"""Sharded embedding tables (``parallel: table`` or ``row``) in training and
validation.

Each rank holds its shard of the table (:mod:`src.engine.shard_plan`), and
the batch's ids arrive shifted into the sharded order (:func:`table_ids`).
For training, the host lays a batch's distinct ids out in one bucket per
rank, each padded to the same capacity ``C`` (:meth:`ShardPlan.route
<src.engine.shard_plan.ShardPlan.route>`, :func:`routed_transform`). A
training step (:class:`ShardedTrainStep`) on ``R`` ranks:

1. all-to-all of the buckets: each rank receives from every rank the ids
   it holds (``R*C``), gathers those rows from its shard (zeros for the
   padding) and sends them back by a second all-to-all;
2. forward and backward as in the replicated step; the dense gradients are
   averaged over the ranks;
3. all-to-all of the row gradients, divided by ``R``, back to the rows'
   holders; a holder sums the copies of a row (an id used on several ranks)
   and updates its shard with the row optimizer. Every copy of a row gets
   the same averaged gradient: exactly the update of the replicated table.

The all-to-all is the backend's own (``alltoall: native``: HCCL on Ascend,
NCCL on GPU). CPU's mccl has none (nor ReduceScatter), so there
(``alltoall: emulated``) every rank AllGathers all buckets and keeps the
parts addressed to it: the same result for ``R`` times the traffic. Per step
a rank sends ``R*C`` ids and ``2*R*C*D`` floats natively, ``R`` times that
emulated, against ``R*N`` ids and ``R*N*D`` floats (``N``: the batch's id
count) for the replicated table; ``C`` is about ``N/R`` when the fields
spread evenly over the ranks. What sharding saves is the table's memory,
``1/R`` of the rows (and of the row optimizer's state) per rank.

Validation reads the same batches on every rank, so the lookup needs no
exchange of ids: each rank gathers what it holds and an AllReduce completes
the rows (:class:`ShardedPredictor`).
"""
import mindspore as ms
from mindspore import nn, ops

from src.engine.sparse import SparseTrainStep, sum_copies


def table_ids(network):
    """Host side: ``cat -> ids`` of a SparseTable network, shifted into its
    table's sharded order when the table is sharded."""
    plan = network.embedding.plan
    if plan is None or not plan.sharded:
        return network.table_ids
    return lambda cat: plan.to_sharded(network.table_ids(cat))


def routed_transform(transform, network):
    """Wrap a batch transform ``batch -> (cat, *rest)`` into the sharded
    training step's ``batch -> (send, inverse, *rest)``."""
    plan, ids_of = network.embedding.plan, table_ids(network)

    def apply(batch):
        cat, *rest = transform(batch)
        return (*plan.route(ids_of(cat)), *rest)
    return apply


def native_alltoall(cfg, device_target):
    """True when ``cfg.alltoall`` (native or emulated: the config schema's
    choices) asks for the backend's own AlltoAll; ``native`` on CPU, which
    has none, is refused."""
    choice = cfg.get("alltoall", "emulated")
    if choice == "native" and device_target == "CPU":
        raise ValueError("alltoall: native needs the AlltoAll of Ascend (HCCL) or GPU (NCCL); "
                         "the CPU backend has none: use alltoall: emulated")
    return choice == "native"


class AllToAll(nn.Cell):
    """``x (R*C, ...) -> (R*C, ...)``: part ``j`` of ``x`` (``C`` rows) goes to
    rank ``j``; the result holds the parts addressed to this rank, in rank
    order. ``native``: the backend's AlltoAll; otherwise an AllGather of
    every rank's ``x`` from which this rank keeps its parts (CPU)."""

    def __init__(self, ranks, rank, native):
        super().__init__()
        self.ranks, self.rank, self.native = int(ranks), int(rank), bool(native)
        if self.native:
            self.exchange = ops.AlltoAll(self.ranks, 0, 0)
        else:
            self.all_gather = ops.AllGather()

    def construct(self, x):
        if self.native:
            return self.exchange(x)
        every = self.all_gather(x)                          # (R*R*C, ...): source, then target
        parts = every.reshape((self.ranks, self.ranks, -1))[:, self.rank]
        return parts.reshape(x.shape)


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
                 loss_scale=1.0, native_alltoall=False):
        super().__init__(net_with_loss, table, optimizer, row_optimizer, clip_norm=clip_norm,
                         loss_scale=loss_scale)
        if not self.distributed or self.ranks != plan.ranks:
            raise ValueError(f"a table sharded over {plan.ranks} ranks trains in a distributed job "
                             f"of as many ranks")
        self.rank = int(rank)
        self.shard_rows = ShardRows(plan, rank)
        self.all_to_all = AllToAll(plan.ranks, rank, native_alltoall)

    def construct(self, send, inverse, *inputs):
        local, held = self.shard_rows(self.all_to_all(send))               # (R*C,): ids held here
        mine = ops.gather(self.table, local, 0)     # the one read of the shard (see SparseTrainStep)
        rows = self.all_to_all(mine * held)                                # (R*C, D): send's rows
        loss, grads, row_grad = self._gradients(rows, inverse, inputs)
        grads = self.grad_reducer(grads)
        shared = self.all_to_all(row_grad) * held / self.ranks              # (R*C, D) per held id
        mean = sum_copies(local, shared)
        loss = ops.depend(loss, self.optimizer(grads))
        return ops.depend(loss, self.row_optimizer(local, mine, mean))


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
