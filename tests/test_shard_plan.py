"""Shard plans of a sparse model's embedding table: which rank holds which
rows in each parallel mode, the id shift into the sharded order, and shards
taken from and put back into a full table (resharding), the batches routed
to the ranks for the all-to-all exchange, and its choice per device."""
import os

import numpy as np
import pytest

from src.engine.shard_plan import ShardPlan, make_plan

CARDS = (7, 1, 30, 4, 12, 3)          # 57 rows; one field larger than half of them


def _owner_of_rows(plan):
    owners = np.empty(plan.total, np.int64)
    for rank in range(plan.ranks):
        start, end = plan.rows_of(rank)
        owners[start:end] = rank
    return owners


@pytest.mark.parametrize("ranks", [1, 2, 3, 4])
def test_row_mode_cuts_the_table_into_even_contiguous_ranges(ranks):
    plan = make_plan("row", CARDS, ranks)
    sizes = [end - start for start, end in map(plan.rows_of, range(ranks))]
    assert sum(sizes) == 57 and max(sizes) - min(sizes) <= 1
    ids = np.array([[0, 7, 8, 38, 42, 54], [6, 7, 37, 41, 53, 56]])
    assert (plan.to_sharded(ids) == ids).all()              # the global layout is kept


@pytest.mark.parametrize("ranks", [2, 3, 4])
def test_table_mode_keeps_fields_whole_and_balances_rows(ranks):
    plan = make_plan("table", CARDS, ranks)
    owners = _owner_of_rows(plan)
    offsets = np.concatenate(([0], np.cumsum(CARDS)[:-1]))
    held = np.zeros(ranks, np.int64)
    for f, card in enumerate(CARDS):
        ids = np.zeros((card, len(CARDS)), np.int64)
        ids[:, f] = offsets[f] + np.arange(card)
        positions = plan.to_sharded(ids)[:, f]
        assert len(set(owners[positions])) == 1                 # a field lives on one rank
        assert (np.diff(positions) == 1).all()                  # in its own order
        held[owners[positions[0]]] += card
    assert sorted(held) == sorted(b - a for a, b in map(plan.rows_of, range(ranks)))
    # greedy largest-first: no rank can take a field from the fullest rank and end below it
    assert held.max() - held.min() <= max(CARDS)
    assert make_plan("table", CARDS, 2).rows_of(0) == (0, 30)   # the 30-row field alone


def _positions(plan):
    """``positions[g]``: where global id ``g`` sits in the sharded order, from
    :meth:`ShardPlan.to_sharded` (one batch row per id, the id in its field)."""
    offsets = np.concatenate(([0], np.cumsum(CARDS)[:-1]))
    field = np.repeat(np.arange(len(CARDS)), CARDS)
    ids = np.tile(offsets, (plan.total, 1))
    ids[np.arange(plan.total), field] = np.arange(plan.total)
    return plan.to_sharded(ids)[np.arange(plan.total), field]


@pytest.mark.parametrize("mode,ranks", [("row", 3), ("table", 3), ("data", 2)])
def test_every_position_has_one_global_id(mode, ranks):
    assert sorted(_positions(make_plan(mode, CARDS, ranks))) == list(range(57))


@pytest.mark.parametrize("mode", ["data", "row", "table"])
def test_shards_put_back_give_the_table(mode):
    rng = np.random.default_rng(0)
    table = rng.normal(size=(57 + 1, 3)).astype(np.float32)     # the scratch row is ignored
    plan = make_plan(mode, CARDS, 3)
    by_position = np.empty((57, 3), np.float32)
    by_position[_positions(plan)] = table[:57]
    shards = [plan.shard(table, r) for r in range(3)]
    for rank, part in enumerate(shards):
        start, end = plan.rows_of(rank)
        assert np.array_equal(part, by_position[start:end])     # its positions' rows, in order
    assert np.array_equal(plan.assemble(shards), table[:57])


def test_resharding_to_another_rank_count_and_mode():
    rng = np.random.default_rng(1)
    table = rng.normal(size=(57, 2)).astype(np.float32)
    two = make_plan("table", CARDS, 2)
    four = make_plan("row", CARDS, 4)
    full = two.assemble([two.shard(table, r) for r in range(2)])
    assert all(np.array_equal(four.shard(full, r), four.shard(table, r)) for r in range(4))
    assert ShardPlan.from_dict(two.to_dict()) == two


def test_bad_plans_and_shards():
    with pytest.raises(ValueError, match="parallel must be one of"):
        make_plan("column", CARDS, 2)
    with pytest.raises(ValueError, match="use parallel: row"):
        make_plan("table", CARDS, 7)
    with pytest.raises(ValueError, match="at least one row"):
        make_plan("row", (3, 0), 2)
    plan = make_plan("row", CARDS, 2)
    with pytest.raises(ValueError, match="shard 1 has 3 rows"):
        plan.assemble([np.zeros((28, 2)), np.zeros((3, 2))])
    with pytest.raises(ValueError, match="2 ranks, got 1 shards"):
        plan.assemble([np.zeros((57, 2))])
    with pytest.raises(ValueError, match="rank 2 is outside"):
        plan.rows_of(2)
    with pytest.raises(ValueError, match="5 fields"):
        plan.to_sharded(np.zeros((2, 5), np.int64))


@pytest.mark.parametrize("mode", ["row", "table"])
def test_a_rank_makes_its_own_initial_rows_with_the_whole_tables_values(mode, monkeypatch):
    from src.layers import embedding
    monkeypatch.setattr(embedding, "BLOCK_ROWS", 5)         # fields span blocks, ranks cut them
    full = embedding.uniform_rows(CARDS, 3, np.random.default_rng(4))
    assert full.shape == (58, 3) and not full[-1].any()     # the zero scratch row
    offsets = np.concatenate(([0], np.cumsum(CARDS)))
    for f, card in enumerate(CARDS):                        # U(+-sqrt(1/n)) per field
        block = full[offsets[f]:offsets[f + 1]]
        assert np.abs(block).max() <= np.sqrt(1.0 / card) and np.abs(block).max() > 0.3 / np.sqrt(card)
    plan = make_plan(mode, CARDS, 3)
    shards = [embedding.uniform_rows(CARDS, 3, np.random.default_rng(4), plan=plan, rank=r)
              for r in range(3)]
    assert [len(s) - 1 for s in shards] == [b - a for a, b in map(plan.rows_of, range(3))]
    assert all(not s[-1].any() for s in shards)
    assert np.array_equal(plan.assemble([s[:-1] for s in shards]), full[:-1])
    with pytest.raises(ValueError, match="the plan is for fields"):
        embedding.uniform_rows(CARDS[:-1], 3, np.random.default_rng(4), plan=plan)


def test_initial_shards_with_real_block_sizes():
    from src.layers.embedding import uniform_rows
    cards = (70000, 3, 140000, 5)                        # fields of several blocks, cut by ranks
    full = uniform_rows(cards, 2, np.random.default_rng(9))
    for mode, ranks in (("row", 3), ("table", 2)):
        plan = make_plan(mode, cards, ranks)
        shards = [uniform_rows(cards, 2, np.random.default_rng(9), plan=plan, rank=r)[:-1]
                  for r in range(ranks)]
        assert np.array_equal(plan.assemble(shards), full[:-1])


def test_resharding_reads_only_the_shards_it_needs():
    rng = np.random.default_rng(3)
    table = rng.normal(size=(57, 2, 2)).astype(np.float32)      # e.g. Adam's two moments per row
    old = make_plan("row", CARDS, 4)
    shards = [old.shard(table, r) for r in range(4)]
    for mode, ranks in (("row", 2), ("table", 3), ("row", 5)):
        new = make_plan(mode, CARDS, ranks)
        for rank in range(ranks):
            read = []
            part = new.take(rank, old, lambda r: read.append(r) or shards[r])
            assert np.array_equal(part, new.shard(table, rank))
            start, end = new.rows_of(rank)
            held = _positions(new).argsort()[start:end]            # global ids of its positions
            needed = set(_owner_of_rows(old)[_positions(old)[held]])
            assert sorted(read) == sorted(needed)                  # each needed shard, read once
    with pytest.raises(ValueError, match="different tables"):
        make_plan("row", CARDS[:-1], 2).take(0, old, shards.__getitem__)


def _all_to_all(parts):
    """What AlltoAll gives every rank: ``parts[s]`` (R*C, ...) from each source
    rank s -> per rank r the C-row parts addressed to it, in source order."""
    ranks = len(parts)
    split = [np.split(p, ranks) for p in parts]
    return [np.concatenate([split[s][r] for s in range(ranks)]) for r in range(ranks)]


@pytest.mark.parametrize("mode", ["table", "row"])
@pytest.mark.parametrize("ranks", [2, 3, 4])
def test_route_puts_each_distinct_id_once_in_its_holders_bucket(mode, ranks):
    plan = make_plan(mode, CARDS, ranks)
    owners = _owner_of_rows(plan)
    rng = np.random.default_rng(ranks)
    offsets = np.concatenate(([0], np.cumsum(CARDS)[:-1]))
    # a batch of 40 rows holds every row of the fields up to 30 rows: the largest buckets
    for batch in (1, 5, 40):
        cat = rng.integers(0, CARDS, (batch, len(CARDS))) + offsets
        cat[:min(batch, 30), 2] = offsets[2] + np.arange(min(batch, 30))
        ids = plan.to_sharded(cat)
        send, inverse = plan.route(ids)
        capacity = plan.capacity(batch)
        assert send.dtype == np.int32 and inverse.dtype == np.int32
        assert send.shape == (ranks * capacity,) and inverse.shape == ids.shape
        assert (send[inverse] == ids).all()
        real = send[send != plan.total]
        assert sorted(real) == sorted(set(ids.ravel()))           # each distinct id once
        buckets = send.reshape(ranks, capacity)
        for rank in range(ranks):
            mine = buckets[rank][buckets[rank] != plan.total]
            assert (owners[mine] == rank).all()
        assert capacity <= min(batch * len(CARDS), plan.total)


def test_route_capacity_follows_the_rows_a_rank_can_see():
    plan = make_plan("table", (1000, 1000, 1000, 1000), 4)       # a field per rank
    assert plan.capacity(128) == 128                            # N/R of a 128 x 4 batch
    assert make_plan("row", (1000, 1000, 1000, 1000), 4).capacity(128) == 128
    # rank 0: a 1000-row field and the 3-row one (the 2-row one goes to rank 1)
    assert make_plan("table", (1000, 2, 3, 1000), 2).capacity(128) == 128 + 3
    with pytest.raises(ValueError, match="outside the table's 57 rows"):
        make_plan("row", CARDS, 2).route(np.array([[0, 57, 1, 2, 3, 4]]))


@pytest.mark.parametrize("mode", ["table", "row"])
def test_exchange_by_all_to_all_looks_up_and_updates_as_the_replicated_table(mode):
    """The sharded step's exchange (src/engine/sharded.py) played out in NumPy
    on 3 ranks: the rows each rank receives are the table's rows of its
    batch, and the gradients each holder sums are the ranks' mean gradient."""
    ranks, dim = 3, 4
    plan = make_plan(mode, CARDS, ranks)
    rng = np.random.default_rng(7)
    table = rng.normal(size=(plan.total, dim))                   # sharded order
    shards = [table[slice(*plan.rows_of(r))] for r in range(ranks)]
    offsets = np.concatenate(([0], np.cumsum(CARDS)[:-1]))
    ids = [plan.to_sharded(rng.integers(0, CARDS, (6, len(CARDS))) + offsets) for _ in range(ranks)]
    routed = [plan.route(i) for i in ids]
    received = _all_to_all([send for send, _ in routed])
    looked = []
    for rank, recv in enumerate(received):
        start, end = plan.rows_of(rank)
        held = (recv >= start) & (recv < end)
        assert held.sum() == (recv != plan.total).sum()          # every id arrives at its holder
        looked.append(np.where(held[:, None], shards[rank][np.where(held, recv - start, 0)], 0.0))
    rows = _all_to_all(looked)
    for rank, (_, inverse) in enumerate(routed):
        assert np.allclose(rows[rank][inverse], table[ids[rank]])
    # backward: a gradient per id on every rank; the holders' sums are the mean
    grads = [rng.normal(size=i.shape + (dim,)) for i in ids]
    want = np.zeros_like(table)
    for i, g in zip(ids, grads):
        np.add.at(want, i.ravel(), g.reshape(-1, dim) / ranks)
    per_row = []
    for (send, inverse), g in zip(routed, grads):
        row_grad = np.zeros((len(send), dim))
        np.add.at(row_grad, inverse.ravel(), g.reshape(-1, dim))
        per_row.append(row_grad)
    got = np.zeros_like(table)
    for rank, (recv, back) in enumerate(zip(received, _all_to_all(per_row))):
        held = recv != plan.total
        np.add.at(got, recv[held], back[held] / ranks)
    assert np.allclose(got, want)


def test_the_config_files_choose_the_exchange_per_device():
    from src.config import parse_config
    from src.engine.sharded import native_alltoall
    from src.registry import get_model_spec, model_names
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    model = next(n for n in model_names() if get_model_spec(n).sparse)
    config = {name: os.path.join(root, f"default_config{suffix}.yaml")
              for name, suffix in (("Ascend", ""), ("GPU", "_gpu"), ("CPU", "_cpu"))}
    for device, native in (("Ascend", True), ("GPU", True), ("CPU", False)):
        cfg = parse_config(["--model", model], config_path=config[device])
        assert native_alltoall(cfg, device) is native
    cpu = parse_config(["--model", model, "--alltoall", "native"], config_path=config["CPU"])
    with pytest.raises(ValueError, match="the CPU backend has none: use alltoall: emulated"):
        native_alltoall(cpu, "CPU")
