"""The in-place row-update kernels (src/engine/row_update.cc) against the
graph's gather-update-scatter: the same tables, optimizer state and losses."""
import mindspore as ms
import numpy as np
import pytest
from mindspore import Parameter, Tensor, nn

from src.config import Config
from src.engine import row_update
from src.engine.heads import MultiTaskBCELoss
from src.engine.sparse import (NetWithRowsLoss, RowOptimizer, SparseTrainStep, in_place_rows,
                               unique_rows)
from tests.test_sparse_training import _batch, _net


def _train(kind, in_place, batches, clip_norm=0.0, buckets=1):
    net = _net(seed=3)
    loss = NetWithRowsLoss(net, MultiTaskBCELoss([1.0]), 0.01)
    lrs = np.array([0.05, 0.1, 0.02, 0.08], np.float32)          # a new rate every step
    rows = RowOptimizer(net.embedding.weight, kind, lrs, eps=1e-6, in_place=in_place)
    step = SparseTrainStep(loss, net.embedding.weight, nn.Adam(net.trainable_params(), 0.01), rows,
                           clip_norm=clip_norm)
    step.set_train()
    losses = []
    for cat, dense, label in batches:
        uniq, inverse = unique_rows(cat, net.embedding.scratch_row, buckets)
        losses.append(float(step(Tensor(uniq), Tensor(inverse), Tensor(dense), Tensor(label)).asnumpy()))
    state = {name: p.asnumpy() for name, p in rows.parameters_and_names()}
    state.update({name: p.asnumpy() for name, p in net.parameters_and_names()})
    return losses, state


@pytest.mark.parametrize("kind, clip_norm, buckets", [("sgd", 0.0, 1), ("adagrad", 0.5, 4),
                                                      ("adam", 0.5, 1), ("adam", 0.0, 6)])
def test_the_kernel_trains_as_the_graphs_scatters(kind, clip_norm, buckets):
    batches = [_batch(seed=s, n=n) for s, n in ((1, 12), (2, 12), (3, 7), (4, 12))]
    graph_losses, graph = _train(kind, False, batches, clip_norm, buckets)
    kernel_losses, kernel = _train(kind, True, batches, clip_norm, buckets)
    np.testing.assert_allclose(kernel_losses, graph_losses, rtol=1e-6)
    assert graph.keys() == kernel.keys()
    before = _net(seed=3).embedding.weight.asnumpy()
    assert not np.array_equal(graph["embedding.weight"], before)       # the rows did move
    for name in graph:
        np.testing.assert_allclose(kernel[name], graph[name], rtol=2e-6, atol=1e-7, err_msg=name)


class _Sgd(nn.Cell):
    def __init__(self, table, threads=1):
        super().__init__()
        self.table = Parameter(Tensor(table), name="table")
        self.update = row_update.row_update_op("sgd")
        self.threads = Tensor(np.array([threads], np.int32))

    def construct(self, ids, grad, lr):
        return self.update(self.table, ids, grad, lr, self.threads)


def test_a_row_is_updated_once_and_the_trailing_padding_once():
    table = np.arange(40, dtype=np.float32).reshape(10, 4)
    cell = _Sgd(table)
    ids = np.array([3, 1, 7, 9, 9, 9], np.int32)                   # 9: the scratch row, padding
    grad = np.ones((6, 4), np.float32)
    out = cell(Tensor(ids), Tensor(grad), Tensor([0.5], ms.float32))
    assert out.shape == (1,) and int(out.asnumpy()[0]) == 0
    expected = table.copy()
    expected[[3, 1, 7, 9]] -= 0.5                                   # row 9 once, not three times
    np.testing.assert_array_equal(cell.table.asnumpy(), expected)


def test_an_id_outside_the_table_is_an_error_and_writes_nothing():
    table = np.zeros((10, 4), np.float32)
    cell = _Sgd(table)
    with pytest.raises(RuntimeError):
        cell(Tensor(np.array([3, 12], np.int32)), Tensor(np.ones((2, 4), np.float32)),
             Tensor([0.5], ms.float32))
    np.testing.assert_array_equal(cell.table.asnumpy(), table)


def test_row_update_key_chooses_the_kernel_only_for_single_process_runs(monkeypatch):
    assert in_place_rows(Config({"row_update": "kernel"}, config_path=None), distributed=False)
    assert not in_place_rows(Config({"row_update": "kernel"}, config_path=None), distributed=True)
    assert not in_place_rows(Config({"row_update": "graph"}, config_path=None), distributed=False)
    with pytest.raises(ValueError, match="row_update must be graph or kernel"):
        in_place_rows(Config({"row_update": "scatter"}, config_path=None), distributed=False)
    monkeypatch.setattr(ms, "get_context", lambda key: "Ascend")
    with pytest.raises(ValueError, match="row_update: kernel is a CPU kernel; on Ascend set "
                                         "row_update: graph"):
        in_place_rows(Config({"row_update": "kernel"}, config_path=None), distributed=False)
    assert not in_place_rows(Config({"row_update": "graph"}, config_path=None), distributed=False)


def test_the_library_is_compiled_once_and_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    path = row_update.library_path()
    assert path.startswith(str(tmp_path)) and path.endswith(".so")
    stamp = (tmp_path / path).stat().st_mtime_ns
    assert row_update.library_path() == path
    assert (tmp_path / path).stat().st_mtime_ns == stamp
    assert [p.name for p in (tmp_path / "recsys-kernels").iterdir()] == [path.rsplit("/", 1)[1]]


def _adam_rows(threads, table, ids, grad, moments):
    import ctypes
    from tests.aot import call_aot
    library = ctypes.CDLL(row_update.library_path())
    table, moments, out = table.copy(), moments.copy(), np.full(1, -1, np.int32)
    hyper = np.array([0.01, 0.9, 0.999, 1e-8], np.float32)
    code = call_aot(library.RowAdam, [table, ids, grad, moments, hyper,
                                      np.array([threads], np.int32), out])
    return code, out, table, moments


def test_adam_rows_split_among_threads_update_as_one_thread_and_as_numpy():
    rng = np.random.default_rng(0)
    rows, d, n = 9000, 17, 5000                          # several threads' worth of ids
    table = rng.standard_normal((rows, d)).astype(np.float32)
    moments = np.abs(rng.standard_normal((rows, 2, d))).astype(np.float32)
    ids = np.concatenate([rng.permutation(rows - 1)[:n - 3], [rows - 1] * 3]).astype(np.int32)
    grad = rng.standard_normal((n, d)).astype(np.float32)
    code, out, one_table, one_moments = _adam_rows(1, table, ids, grad, moments)
    assert code == 0 and out[0] == 0
    for threads in (2, 3):
        _, _, split_table, split_moments = _adam_rows(threads, table, ids, grad, moments)
        assert np.array_equal(split_table, one_table) and np.array_equal(split_moments, one_moments)
    applied = ids[:n - 2]                              # the padding's first id only
    m = 0.9 * moments[applied, 0] + 0.1 * grad[:n - 2]
    v = 0.999 * moments[applied, 1] + 0.001 * grad[:n - 2] ** 2
    want = table.copy()
    want[applied] -= 0.01 * m / (np.sqrt(v) + 1e-8)
    np.testing.assert_allclose(one_table, want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(one_moments[applied, 1], v, rtol=1e-5, atol=1e-6)
    untouched = np.setdiff1d(np.arange(rows), applied)
    assert np.array_equal(one_table[untouched], table[untouched])
    bad = _adam_rows(2, table, ids, grad, moments[:, :, :-1].copy())
    assert bad[0] == 1 and bad[1][0] == -1
