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

from src.engine.shard_plan import make_plan

# rows drawn from one generator: a rank holding part of a field draws only the
# blocks it overlaps
BLOCK_ROWS = 1 << 16


def uniform_rows(cardinalities, dim, rng, scale=None, plan=None, rank=0):
    """Initial table ``(rows + 1, dim)`` float32: each field's block
    ``U(+-sqrt(1/n_f))`` (the reference DLRM's) or ``U(+-scale)``; the last
    (scratch) row is zero.

    Without ``plan`` the rows are the whole table; with a sharded
    :class:`~src.engine.shard_plan.ShardPlan` they are rank ``rank``'s shard
    (its positions, in order), with exactly the values the whole table has
    there: field ``f``'s rows come in blocks of ``BLOCK_ROWS``, each block from
    a generator seeded by (one draw of ``rng``, ``f``, block), so a rank never
    makes the rows it does not hold. ``rng`` advances by one draw either way."""
    seed = int(rng.integers(1 << 62))
    plan = plan or make_plan("data", cardinalities, 1)
    if tuple(int(c) for c in cardinalities) != plan.cardinalities:
        raise ValueError(f"the plan is for fields {plan.cardinalities}, the table has {cardinalities}")
    start, end = plan.rows_of(rank)
    table = np.zeros((end - start + 1, dim), np.float32)
    for field, _, position, length in plan.blocks():
        lo, hi = max(position, start) - position, min(position + length, end) - position
        if lo >= hi:
            continue                                    # the field has no rows on this rank
        bound = scale if scale is not None else math.sqrt(1.0 / length)
        for block in range(lo // BLOCK_ROWS, -(-hi // BLOCK_ROWS)):
            first = block * BLOCK_ROWS
            rows = np.random.default_rng([seed, field, block]).uniform(
                -bound, bound, (min(BLOCK_ROWS, length - first), dim)).astype(np.float32)
            a, b = max(lo, first), min(hi, first + len(rows))
            table[position + a - start:position + b - start] = rows[a - first:b - first]
    return table


class EmbeddingTable(nn.Cell):
    """``ids (...) -> rows (..., dim)`` from one table with a scratch last row.

    With a sharded ``plan`` (:mod:`src.engine.shard_plan`) the table holds
    rank ``rank``'s shard only: its lookups and updates go through
    :mod:`src.engine.sharded`, never through ``construct``."""

    def __init__(self, initial, plan=None, rank=0):
        super().__init__()
        initial = np.ascontiguousarray(initial, np.float32)
        sharded = plan is not None and plan.sharded
        if initial.ndim != 2 or len(initial) < (1 if sharded else 2):
            raise ValueError(f"embedding table must be 2-D with at least one row plus the scratch "
                             f"row, got shape {initial.shape}")
        self.num_rows, self.dim = initial.shape[0] - 1, initial.shape[1]
        if plan is not None:
            start, end = plan.rows_of(rank)
            if end - start != self.num_rows:
                raise ValueError(f"rank {rank} of the plan holds {end - start} rows, the table "
                                 f"{self.num_rows}")
        self.plan, self.rank = plan, int(rank)
        # kept out of the distributed start's broadcast of rank 0's parameters:
        # a shard is this rank's own, and a whole table is the same on every
        # rank already (made from the seed); broadcasting millions of rows
        # through a graph costs several times their size (bench/sharded.py).
        # from_numpy: the Parameter's copy is the only one (Tensor() made a second)
        self.weight = Parameter(Tensor.from_numpy(initial), name="embedding", requires_grad=False,
                                layerwise_parallel=True)

    @classmethod
    def uniform(cls, cardinalities, dim, rng, scale=None, shard=None):
        """The table of :func:`uniform_rows`; ``shard`` ``(mode, ranks, rank)``
        (the ``parallel`` setting and the job) makes it that rank's shard."""
        if shard is None:
            return cls(uniform_rows(cardinalities, dim, rng, scale))
        mode, ranks, rank = shard
        plan = make_plan(mode, cardinalities, ranks)
        return cls(uniform_rows(cardinalities, dim, rng, scale, plan, rank), plan, rank)

    @property
    def sharded(self):
        return self.plan is not None and self.plan.sharded

    @property
    def scratch_row(self):
        """The padding id of a batch's unique-row list: past the last row of
        the whole table (no rank holds it when the table is sharded)."""
        return self.plan.total if self.sharded else self.num_rows

    def construct(self, ids):
        return ops.gather(self.weight, ids, 0)
