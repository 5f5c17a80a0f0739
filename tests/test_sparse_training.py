"""Row-wise embedding training: the sparse step equals the dense update where
the two must agree (SGD, Adagrad), lazy Adam leaves untouched rows alone, and
only the batch's rows change."""
import mindspore as ms
import numpy as np
import pytest
from mindspore import Tensor, nn, ops

from src.config import Config
from src.datasets import CRITEO
from src.engine import checkpoint
from src.engine.sparse import (NetWithRowsLoss, RowOptimizer, SparseTrainStep, rows_transform,
                               sum_copies, unique_rows)
from src.engine.heads import MultiTaskBCELoss
from src.engine.interfaces import missing
from src.layers.embedding import EmbeddingTable, uniform_rows
from src.registry import ModelSpec, Trial

CARD = [40, 6, 90]
OFFSETS = np.cumsum([0] + CARD[:-1])


def test_unique_rows_pads_with_the_scratch_row():
    ids = np.array([[5, 3, 5], [9, 3, 0]])
    uniq, inverse = unique_rows(ids, scratch_row=99)
    assert uniq.dtype == np.int32 and uniq.shape == (6,) and inverse.shape == (2, 3)
    np.testing.assert_array_equal(uniq[inverse], ids)
    np.testing.assert_array_equal(uniq, [5, 3, 9, 0, 99, 99])      # first appearance, then padding


@pytest.mark.parametrize("buckets, size", [(1, 12), (4, 6), (3, 8), (12, 5), (100, 5)])
def test_unique_rows_buckets_pad_to_the_next_bucket(buckets, size):
    ids = np.array([[5, 3, 5, 7], [9, 3, 0, 5], [5, 3, 3, 5]])       # 5 unique of 12
    uniq, inverse = unique_rows(ids, scratch_row=99, buckets=buckets)
    assert uniq.shape == (size,)
    np.testing.assert_array_equal(uniq[inverse], ids)
    np.testing.assert_array_equal(uniq[:5], [5, 3, 7, 9, 0])
    assert (uniq[5:] == 99).all()


def test_bucketed_rows_train_like_full_padding():
    """Padding only adds scratch rows: three lazy-Adam steps with bucketed
    lengths (two different ones) give the weights of full padding."""
    batches = [_batch(seed=s, n=n) for s, n in ((1, 12), (2, 12), (3, 7))]
    nets = []
    for buckets in (1, 6):
        net = _net(seed=2)
        loss = NetWithRowsLoss(net, MultiTaskBCELoss([1.0]), 0.01)
        rows = RowOptimizer(net.embedding.weight, "adam", np.full(10, 0.05, np.float32))
        step = SparseTrainStep(loss, net.embedding.weight, nn.Adam(net.trainable_params(), 0.01), rows,
                               clip_norm=1.0)
        step.set_train()
        sizes = set()
        for cat, dense, label in batches:
            uniq, inverse = unique_rows(cat, net.embedding.scratch_row, buckets)
            sizes.add(len(uniq))
            step(Tensor(uniq), Tensor(inverse), Tensor(dense), Tensor(label))
        nets.append((net, sizes))
    (full, full_sizes), (bucketed, sizes) = nets
    assert full_sizes == {36, 21} and len(sizes) >= 2 and max(sizes) < 36
    for a, b in zip(full.get_parameters(), bucketed.get_parameters()):
        np.testing.assert_allclose(a.asnumpy(), b.asnumpy(), rtol=1e-6, atol=1e-7)


def test_row_buckets_must_be_positive():
    with pytest.raises(ValueError, match="row_buckets must be a positive integer"):
        rows_transform(lambda b: b, lambda c: c, 9, buckets=0)
    # through the config too: 0 is refused, not read as the default
    spec = ModelSpec(name="tiny", dataset=CRITEO, build_network=lambda cfg, fmap: _net(),
                     capabilities=frozenset({"sparse_table"}), trial=Trial(args=(), expect={}))
    cfg = Config({"row_buckets": 0}, config_path=None)
    with pytest.raises(ValueError, match="row_buckets must be a positive integer"):
        spec.train_transform({"offsets": OFFSETS}, _net(), cfg)


class TinyTable(nn.Cell):
    """The smallest SparseTable network (src/engine/interfaces.py): one
    embedding table over CARD's fields, the dense features, one Dense layer."""

    def __init__(self, seed=0, num_dense=5, dim=4):
        super().__init__()
        rng = np.random.default_rng(seed)
        self.embedding = EmbeddingTable(uniform_rows(CARD, dim, rng))
        self.fields = len(CARD)
        width = self.fields * dim + num_dense
        self.head = nn.Dense(width, 1, weight_init=Tensor(rng.normal(0, 0.3, (1, width)), ms.float32),
                             bias_init=Tensor(rng.normal(0, 0.1, (1,)), ms.float32))

    def _logits(self, emb, dense):
        return self.head(ops.concat((emb.reshape((emb.shape[0], -1)), dense), axis=1))

    def forward_rows(self, rows, inverse, dense):
        return self._logits(ops.gather(rows, inverse, 0), dense)

    def construct(self, cat, dense):
        return self._logits(self.embedding(cat), dense)

    def table_ids(self, cat):
        return cat


def _net(seed=0):
    net = TinyTable(seed)
    assert not missing(net, "SparseTable")
    return net


def _batch(seed=1, n=12):
    rng = np.random.default_rng(seed)
    cat = (rng.integers(0, 6, (n, 3)) + OFFSETS).astype(np.int32)
    dense = rng.random((n, 5)).astype(np.float32)
    label = rng.integers(0, 2, (n, 1)).astype(np.float32)
    return cat, dense, label


def _dense_table_grad(net, cat, dense, label, l2):
    """Gradient of the loss with respect to the whole table (what a dense step uses)."""
    loss = NetWithRowsLoss(net, MultiTaskBCELoss([1.0]), l2)
    table = Tensor(net.embedding.weight.asnumpy())
    grad = ms.grad(loss, grad_position=0)(table, Tensor(cat), Tensor(dense), Tensor(label))
    return table.asnumpy(), grad.asnumpy()


def _sparse_step(net, kind, lr, l2=0.0, steps=1, batch=None):
    cat, dense, label = batch or _batch()
    loss = NetWithRowsLoss(net, MultiTaskBCELoss([1.0]), l2)
    opt = nn.SGD(net.trainable_params(), lr)
    rows = RowOptimizer(net.embedding.weight, kind, np.full(10, lr, np.float32), eps=1e-8)
    step = SparseTrainStep(loss, net.embedding.weight, opt, rows)
    step.set_train()
    uniq, inverse = unique_rows(cat, net.embedding.scratch_row)
    for _ in range(steps):
        step(Tensor(uniq), Tensor(inverse), Tensor(dense), Tensor(label))
    return rows


class _SumCopies(nn.Cell):
    def construct(self, index, grads):
        return sum_copies(index, grads)


def test_sum_copies_gives_every_entry_the_sum_over_its_row():
    """The distributed steps' sum of the ranks' gradients of one row: every
    entry naming a row gets the total of that row's entries, in a graph."""
    rng = np.random.default_rng(3)
    index = rng.integers(0, 9, 40).astype(np.int32)               # many repeats
    grads = rng.normal(size=(40, 4)).astype(np.float32)
    totals = np.zeros((9, 4), np.float32)
    np.add.at(totals, index, grads)
    got = _SumCopies()(Tensor(index), Tensor(grads)).asnumpy()
    np.testing.assert_allclose(got, totals[index], rtol=1e-5, atol=1e-6)


def test_sparse_sgd_equals_the_dense_update():
    """Only the batch's rows have a gradient, so a row-wise SGD step must give
    exactly the table a dense SGD step gives; l2 covers the used rows only."""
    net = _net()
    cat, dense, label = _batch()
    table, grad = _dense_table_grad(net, cat, dense, label, l2=0.0)
    _sparse_step(net, "sgd", lr=0.5)
    np.testing.assert_allclose(net.embedding.weight.asnumpy(), table - 0.5 * grad, atol=1e-6)
    untouched = np.setdiff1d(np.arange(len(table)), np.unique(cat))
    np.testing.assert_array_equal(net.embedding.weight.asnumpy()[untouched], table[untouched])


def test_l2_applies_to_the_rows_in_the_batch():
    net = _net()
    cat, dense, label = _batch()
    table, grad = _dense_table_grad(net, cat, dense, label, l2=0.0)
    _sparse_step(net, "sgd", lr=0.5, l2=0.1)
    after = net.embedding.weight.asnumpy()
    used = np.unique(cat)
    np.testing.assert_allclose(after[used], table[used] - 0.5 * (grad[used] + 0.1 * table[used]),
                               atol=1e-6)
    unused = np.setdiff1d(np.arange(len(table)), used)
    np.testing.assert_array_equal(after[unused], table[unused])    # no decay of unused rows


def test_sparse_adagrad_matches_its_formula_over_two_steps():
    net = _net()
    cat, dense, label = _batch()
    table, g1 = _dense_table_grad(net, cat, dense, label, 0.0)
    _sparse_step(net, "adagrad", lr=0.1, steps=1)
    acc = g1 * g1
    expected = table - 0.1 * g1 / (np.sqrt(acc) + 1e-8)
    used = np.unique(cat)
    np.testing.assert_allclose(net.embedding.weight.asnumpy()[used], expected[used], rtol=1e-4,
                               atol=1e-6)


def test_lazy_adam_moves_only_the_batch_rows_and_their_moments():
    net = _net()
    cat, dense, label = _batch()
    table, grad = _dense_table_grad(net, cat, dense, label, 0.0)
    rows = _sparse_step(net, "adam", lr=0.01)
    used = np.unique(cat)
    untouched = np.setdiff1d(np.arange(len(table) - 1), used)
    after = net.embedding.weight.asnumpy()
    np.testing.assert_array_equal(after[untouched], table[untouched])
    moments = rows.moments.asnumpy()                                  # (rows, 2, D)
    assert np.all(moments[untouched] == 0)
    # first Adam step: m = 0.1 g, v = 0.001 g^2, bias-corrected update = lr * g / (|g| + eps')
    m, v = 0.1 * grad[used], 0.001 * grad[used] ** 2
    np.testing.assert_allclose(moments[used, 0], m, rtol=1e-4, atol=1e-12)
    np.testing.assert_allclose(moments[used, 1], v, rtol=1e-4, atol=1e-15)
    step = 0.01 * np.sqrt(1 - 0.999) / (1 - 0.9) * m / (np.sqrt(v) + 1e-8)
    np.testing.assert_allclose(after[used], table[used] - step, rtol=1e-3, atol=1e-6)
    assert int(rows.step.asnumpy()) == 1


def test_unknown_row_optimizer_is_refused():
    with pytest.raises(ValueError, match="sparse embedding training supports"):
        RowOptimizer(_net().embedding.weight, "momentum", [0.1])


def test_rows_transform_and_learning():
    """Through the transform the trainer uses, the sparse step learns a
    label that depends on one categorical field."""
    net = _net(seed=3)
    rng = np.random.default_rng(4)
    cat = (rng.integers(0, 6, (64, 3)) + OFFSETS).astype(np.int32)
    label = (cat[:, 0] % 2).astype(np.float32)[:, None]
    dense = np.zeros((64, 5), np.float32)
    transform = rows_transform(lambda b: (b["cat"], b["dense"], b["label"]), net.table_ids,
                               net.embedding.scratch_row)
    uniq, inverse, d, y = transform({"cat": cat, "dense": dense, "label": label})
    loss = NetWithRowsLoss(net, MultiTaskBCELoss([1.0]))
    step = SparseTrainStep(loss, net.embedding.weight, nn.Adam(net.trainable_params(), 0.01),
                           RowOptimizer(net.embedding.weight, "adam", np.full(300, 0.05, np.float32)))
    step.set_train()
    losses = [float(step(Tensor(uniq), Tensor(inverse), Tensor(d), Tensor(y)).asnumpy())
              for _ in range(150)]
    assert losses[-1] < 0.2 < losses[0]


def test_static_loss_scale_gives_the_unscaled_step():
    """The loss is scaled before the backward pass and the dense and row
    gradients unscaled after it: in float32 the weights match an unscaled step."""
    nets = []
    for scale in (1.0, 1024.0):
        net = _net(seed=5)
        loss = NetWithRowsLoss(net, MultiTaskBCELoss([1.0]))
        # SGD: an update proportional to the gradient shows any scale left in it
        rows = RowOptimizer(net.embedding.weight, "sgd", np.full(10, 0.05, np.float32))
        step = SparseTrainStep(loss, net.embedding.weight, nn.SGD(net.trainable_params(), 0.05), rows,
                               loss_scale=scale)
        step.set_train()
        for seed in (1, 2, 3):
            cat, dense, label = _batch(seed=seed)
            uniq, inverse = unique_rows(cat, net.embedding.scratch_row)
            step(Tensor(uniq), Tensor(inverse), Tensor(dense), Tensor(label))
        nets.append(net)
    for a, b in zip(nets[0].get_parameters(), nets[1].get_parameters()):
        np.testing.assert_allclose(a.asnumpy(), b.asnumpy(), rtol=1e-5, atol=1e-6)


def test_checkpoint_with_the_two_moment_tables_resumes_into_row_moments(tmp_path):
    """Checkpoints written before the moments were joined (row_moment1 and
    row_moment2) load into today's row_moments, each moment in its half."""
    net = _net()
    rows = _sparse_step(net, "adam", lr=0.01, steps=2)
    moments = rows.moments.asnumpy()
    old = [{"name": "row_moment1", "data": Tensor(moments[:, 0].copy())},
           {"name": "row_moment2", "data": Tensor(moments[:, 1].copy())},
           {"name": "row_step", "data": Tensor(rows.step.asnumpy())}]
    path = str(tmp_path / "old.ckpt")
    ms.save_checkpoint(old, path)
    params, _ = checkpoint.read_checkpoint(path)
    assert "row_moment1" not in params and "row_moment2" not in params
    fresh = RowOptimizer(_net().embedding.weight, "adam", np.full(10, 0.01, np.float32))
    checkpoint.load_into(fresh, path, "tiny", allow_missing=("embedding.", "row_learning_rate"))
    np.testing.assert_array_equal(fresh.moments.asnumpy(), moments)
    assert int(fresh.step.asnumpy()) == 2
