"""Which rank holds which rows of a sparse model's embedding table.

A SparseTable model keeps all categorical fields in one table: field ``f``
owns the global ids ``offset[f] .. offset[f] + cardinality[f] - 1``. The
``parallel`` setting chooses how ranks hold it:

- ``data``: every rank holds the whole table (replicated, data parallel);
- ``table``: every field lives whole on one rank; fields go, largest first,
  to the rank holding the fewest rows so far (balanced by rows);
- ``row``: the table's rows, fields in their order, are cut into one
  contiguous range per rank of nearly equal length, so a field too large for
  one rank is split across several.

Both sharded modes are described alike: an ``order`` of the fields in which
every rank's rows are contiguous, and the ``bounds`` of the ranks' ranges in
that order. A batch's global ids move into that order by a per-field shift
(:meth:`ShardPlan.to_sharded`, host side); rank ``r`` then owns the positions
``bounds[r] .. bounds[r+1] - 1`` and keeps them, in order, as its shard. The
position ``bounds[-1]`` (the table's row count) belongs to no rank: it is the
padding id of the batch's unique-row lists.

In a training step the ranks exchange rows by all-to-all
(:mod:`src.engine.sharded`); :meth:`ShardPlan.route` lays a batch's ids out
for it on the host: one equal-sized bucket per rank, holding the distinct
ids that rank holds, padded to :meth:`ShardPlan.capacity`.
"""
import functools
from dataclasses import dataclass

import numpy as np
import pandas as pd

MODES = ("data", "table", "row")


@dataclass(frozen=True)
class ShardPlan:
    mode: str
    cardinalities: tuple
    ranks: int
    order: tuple            # fields in sharded order
    bounds: tuple           # ranks + 1 boundaries in the sharded order

    @property
    def total(self):
        return int(sum(self.cardinalities))

    @property
    def sharded(self):
        return self.mode != "data"

    def rows_of(self, rank):
        """``(start, end)``: the positions rank ``rank`` holds."""
        if not 0 <= rank < self.ranks:
            raise ValueError(f"rank {rank} is outside 0..{self.ranks - 1}")
        if not self.sharded:
            return 0, self.total
        return int(self.bounds[rank]), int(self.bounds[rank + 1])

    def offsets(self):
        """Each field's first global id (the table's layout)."""
        return np.concatenate(([0], np.cumsum(self.cardinalities)[:-1])).astype(np.int64)

    def sharded_offsets(self):
        """Each field's first position in the sharded order."""
        starts = np.zeros(len(self.cardinalities), np.int64)
        position = 0
        for f in self.order:
            starts[f] = position
            position += self.cardinalities[f]
        return starts

    def shift(self):
        """Per field: sharded position minus global id (0 everywhere for ``row``)."""
        return self.sharded_offsets() - self.offsets()

    def to_sharded(self, ids):
        """``ids (..., F)`` global ids, column ``f`` of field ``f`` -> positions
        in the sharded order (host side, numpy)."""
        ids = np.asarray(ids)
        if ids.shape[-1] != len(self.cardinalities):
            raise ValueError(f"ids have {ids.shape[-1]} fields, the plan {len(self.cardinalities)}")
        return (ids + self.shift().astype(ids.dtype)).astype(ids.dtype)

    def blocks(self):
        """``[(field, global_start, position, length)]`` in sharded order: where
        each field's rows sit in the global layout and in the sharded order."""
        offsets, starts = self.offsets(), self.sharded_offsets()
        return [(f, int(offsets[f]), int(starts[f]), int(self.cardinalities[f])) for f in self.order]

    def take(self, rank, source, source_shard):
        """Rank ``rank``'s rows under this plan, from the shards of another plan
        ``source`` of the same table (another rank count or mode: resharding).
        ``source_shard(r)`` returns source rank ``r``'s array (rows first, any
        trailing shape); it is called once for each rank that holds some of
        the rows, so a rank reads only the shards it needs."""
        if source.cardinalities != self.cardinalities:
            raise ValueError(f"the plans are for different tables: fields {source.cardinalities} "
                             f"and {self.cardinalities}")
        start, end = self.rows_of(rank)
        mine, theirs = self.sharded_offsets(), source.sharded_offsets()
        holders = range(source.ranks) if source.sharded else range(1)
        out, loaded = None, {}
        for f, length in enumerate(self.cardinalities):
            lo, hi = max(int(mine[f]), start), min(int(mine[f]) + length, end)
            if lo >= hi:
                continue
            first = int(theirs[f]) + lo - int(mine[f])         # the segment in the source order
            last = first + hi - lo
            for r in holders:
                s0, s1 = source.rows_of(r)
                x0, x1 = max(first, s0), min(last, s1)
                if x0 >= x1:
                    continue
                if r not in loaded:
                    loaded[r] = np.asarray(source_shard(r))
                    if len(loaded[r]) < s1 - s0:
                        raise ValueError(f"shard {r} has {len(loaded[r])} rows, the plan gives it "
                                         f"{s1 - s0}")
                part = loaded[r]
                if out is None:
                    out = np.empty((end - start,) + part.shape[1:], part.dtype)
                out[lo - start + x0 - first:lo - start + x1 - first] = part[x0 - s0:x1 - s0]
        return out

    def shard(self, table, rank):
        """Rank ``rank``'s rows of a full ``table`` (global layout, ``total``
        rows, extra rows such as the scratch row ignored), in sharded order."""
        whole = make_plan("data", self.cardinalities, 1)
        part = self.take(rank, whole, lambda _: table)
        return part if part is not None else np.zeros((0,) + table.shape[1:], table.dtype)

    def assemble(self, shards):
        """The full table (global layout, ``total`` rows) from every rank's shard."""
        if len(shards) != self.ranks:
            raise ValueError(f"the plan has {self.ranks} ranks, got {len(shards)} shards")
        for rank, part in enumerate(shards):
            start, end = self.rows_of(rank)
            if len(part) != end - start:
                raise ValueError(f"shard {rank} has {len(part)} rows, the plan gives it {end - start}")
        return make_plan("data", self.cardinalities, 1).take(0, self, shards.__getitem__)

    @functools.lru_cache(maxsize=None)      # one value per batch size, asked every batch
    def capacity(self, batch):
        """The length of one rank's bucket in :meth:`route` for batches of
        ``batch`` rows: the most distinct ids such a batch can hold on any one
        rank (per field its rows on that rank, at most ``batch``)."""
        starts, most = self.sharded_offsets(), 1
        for rank in range(self.ranks):
            start, end = self.rows_of(rank)
            most = max(most, sum(min(min(end, s + c) - max(start, s), batch)
                                 for s, c in zip(starts, self.cardinalities)
                                 if max(start, s) < min(end, s + c)))
        return int(most)

    def route(self, ids):
        """Host side: ``ids (B, F)``, positions in the sharded order ->
        ``(send, inverse)``. ``send`` (``ranks * capacity(B)``, int32) holds in
        bucket ``r`` the distinct ids rank ``r`` holds, in order of first
        appearance, padded with ``total`` (no rank's row); ``inverse`` (B, F)
        gives each id's place in ``send``, so ``send[inverse] == ids``."""
        ids = np.asarray(ids)
        if ids.ndim != 2:
            raise ValueError(f"route takes a (batch, fields) array of ids, got shape {ids.shape}")
        capacity = self.capacity(ids.shape[0])
        inverse, values = pd.factorize(ids.reshape(-1))
        values = np.asarray(values)
        if len(values) and (values.min() < 0 or values.max() >= self.total):
            raise ValueError(f"ids outside the table's {self.total} rows: "
                             f"{values.min()}..{values.max()}")
        owner = np.searchsorted(np.asarray(self.bounds[1:]), values, side="right")
        counts = np.bincount(owner, minlength=self.ranks)
        if counts.max(initial=0) > capacity:                  # cannot happen: a safeguard
            raise ValueError(f"a rank's bucket needs {counts.max()} places, capacity {capacity}")
        order = np.argsort(owner, kind="stable")
        first = np.concatenate(([0], np.cumsum(counts)[:-1]))
        slot = np.empty(len(values), np.int64)
        slot[order] = owner[order] * capacity + np.arange(len(values)) - first[owner[order]]
        send = np.full(self.ranks * capacity, self.total, np.int32)
        send[slot] = values
        return send, slot[inverse].reshape(ids.shape).astype(np.int32)

    def to_dict(self):
        return {"mode": self.mode, "cardinalities": list(self.cardinalities), "ranks": self.ranks,
                "order": list(self.order), "bounds": list(self.bounds)}

    @classmethod
    def from_dict(cls, d):
        return cls(d["mode"], tuple(int(c) for c in d["cardinalities"]), int(d["ranks"]),
                   tuple(int(f) for f in d["order"]), tuple(int(b) for b in d["bounds"]))


def make_plan(mode, cardinalities, ranks):
    """The :class:`ShardPlan` of ``mode`` for a table of ``cardinalities`` on ``ranks`` ranks."""
    if mode not in MODES:
        raise ValueError(f"parallel must be one of {', '.join(MODES)}, got {mode!r}")
    cards = tuple(int(c) for c in cardinalities)
    if not cards or min(cards) < 1:
        raise ValueError(f"every field needs at least one row, got {cards}")
    if int(ranks) < 1:
        raise ValueError(f"ranks must be positive, got {ranks}")
    ranks, total = int(ranks), sum(cards)
    if mode == "data":
        return ShardPlan(mode, cards, ranks, tuple(range(len(cards))), (0, total))
    if mode == "row":
        bounds = tuple(total * r // ranks for r in range(ranks + 1))
        return ShardPlan(mode, cards, ranks, tuple(range(len(cards))), bounds)
    if ranks > len(cards):
        raise ValueError(f"table-wise sharding puts whole fields on ranks: {len(cards)} fields "
                         f"cannot fill {ranks} ranks; use parallel: row")
    held, owner = [0] * ranks, [0] * len(cards)
    for f in sorted(range(len(cards)), key=lambda f: (-cards[f], f)):
        rank = min(range(ranks), key=lambda r: (held[r], r))
        owner[f] = rank
        held[rank] += cards[f]
    order = tuple(f for rank in range(ranks) for f in range(len(cards)) if owner[f] == rank)
    bounds = tuple(int(b) for b in np.concatenate(([0], np.cumsum(held))))
    return ShardPlan(mode, cards, ranks, order, bounds)
