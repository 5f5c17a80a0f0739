"""DeepFM's prediction through the one-pass lookup kernel
(src/layers/fm_lookup.cc, config ``predict_fm``): the kernel against NumPy,
called through its C entry point, and DeepFM predicting through it as
through the graph."""
import ctypes

import mindspore as ms
import numpy as np
import pytest
from mindspore import Tensor

from criteo_inputs import CARD, assert_kernel_predicts_as_graph, criteo_inputs
from src.deepfm.deepfm import DeepFM
from src.layers import bias_relu, fm_lookup
from tests.aot import call_aot


def _expected(table, cat, dense):
    """(vectors, first) in float64, written out field by field."""
    n, d = dense.shape[1], table.shape[1] - 1
    ids = np.concatenate([np.broadcast_to(np.arange(n), (len(cat), n)), cat + n], axis=1)
    values = np.concatenate([dense, np.ones(cat.shape)], axis=1)[..., None].astype(np.float64)
    rows = table[ids].astype(np.float64) * values                       # (B, fields, D+1)
    v = rows[..., :d]
    fields = v.shape[1]
    fm = sum((v[:, i] * v[:, j]).sum(1) for i in range(fields) for j in range(i + 1, fields))
    return v.reshape(len(cat), -1), (rows[..., d].sum(1) + fm)[:, None]


def _call(library, table, cat, dense, threads):
    vectors = np.full((len(cat), (cat.shape[1] + dense.shape[1]) * (table.shape[1] - 1)), np.nan,
                      np.float32)
    first = np.full((len(cat), 1), np.nan, np.float32)
    code = call_aot(library.FmLookup, [table, cat, dense, np.array([threads], np.int32),
                                       vectors, first])
    return code, vectors, first


def _inputs(rows, num_cat, num_dense, dim, batch, seed):
    rng = np.random.default_rng(seed)
    table = rng.standard_normal((rows, dim + 1)).astype(np.float32)
    cat = rng.integers(0, rows - num_dense, (batch, num_cat)).astype(np.int32)
    dense = rng.standard_normal((batch, num_dense)).astype(np.float32)
    return table, cat, dense


@pytest.fixture(scope="module")
def library():
    return ctypes.CDLL(fm_lookup.library_path())


@pytest.mark.parametrize("num_cat, num_dense, dim, batch, threads", [
    (1, 1, 1, 1, 1), (26, 13, 16, 300, 2), (5, 3, 7, 700, 3), (2, 13, 80, 129, 4)])
def test_the_kernel_computes_the_lookup_and_the_fm_terms(library, num_cat, num_dense, dim, batch,
                                                        threads):
    """One field of one value, Criteo's layout, odd widths, rows enough for
    several threads; ids down to 0 and up to the last row (the scratch row)."""
    table, cat, dense = _inputs(60, num_cat, num_dense, dim, batch, seed=dim + batch)
    cat[0, 0], cat[-1, -1] = 0, 60 - num_dense - 1
    code, vectors, first = _call(library, table, cat, dense, threads)
    assert code == 0
    want_vectors, want_first = _expected(table, cat, dense)
    np.testing.assert_allclose(vectors, want_vectors, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(first, want_first, rtol=1e-5, atol=1e-4)


def test_the_kernel_refuses_ids_outside_the_table_and_shapes_that_do_not_fit(library):
    table, cat, dense = _inputs(40, 4, 3, 5, 300, seed=1)
    for bad in (-1, 40 - 3):                    # below 0; past the last row once shifted
        wrong = cat.copy()
        wrong[299, 2] = bad
        assert _call(library, table, wrong, dense, 2)[0] == 2
    assert _call(library, table, cat, dense[:299], 1)[0] == 1                   # batch 299
    assert _call(library, table, cat.astype(np.int64), dense, 1)[0] == 1
    assert _call(library, table.astype(np.float64), cat, dense, 1)[0] == 1
    assert _call(library, table[:2], cat, dense, 1)[0] == 1      # fewer rows than numeric fields


def _pair(fm=True, mlp=False):
    """Two DeepFMs with the same weights, the second predicting through the
    lookup kernel (``fm``) and the MLP's bias-and-ReLU kernel (``mlp``)."""
    plain = DeepFM(CARD, num_dense=3, embedding_dim=4, deep_units=(8, 8), dropout=0.0,
                   embedding_scale=0.3, seed=3)
    kernel = DeepFM(CARD, num_dense=3, embedding_dim=4, deep_units=(8, 8), dropout=0.0,
                    embedding_scale=0.3, seed=3,
                    predict_fm=fm_lookup.FmLookup(threads=2) if fm else None,
                    predict_mlp=bias_relu.BiasRelu(threads=2) if mlp else None)
    plain.bias.set_data(Tensor(np.array([0.25], np.float32)))
    ms.load_param_into_net(kernel, {p.name: p for p in plain.get_parameters()}, strict_load=True)
    return plain, kernel


@pytest.mark.parametrize("fm, mlp", [(True, False), (False, True), (True, True)],
                         ids=["fm", "mlp", "both"])
def test_deepfm_predicts_through_the_kernels_as_through_the_graph_and_trains_on_the_graph(fm, mlp):
    assert_kernel_predicts_as_graph(*_pair(fm, mlp), num_dense=3)


def test_deepfm_through_the_kernel_refuses_an_id_outside_the_table():
    _, kernel = _pair()
    kernel.set_train(False)
    cat, dense = criteo_inputs(n=4, num_dense=3)
    cat[1, 0] = kernel.embedding.num_rows + 5
    with pytest.raises(RuntimeError):
        kernel(Tensor(cat), Tensor(dense)).asnumpy()


def test_the_config_key_is_checked_and_export_uses_the_graph():
    from src.config import Config
    from src.deepfm.spec import SPEC, _predict_fm
    with pytest.raises(ValueError, match="predict_fm must be one of graph, native"):
        _predict_fm(Config({"predict_fm": "fused"}, config_path=None))
    assert _predict_fm(Config({"predict_fm": "graph"}, config_path=None)) is None
    assert isinstance(_predict_fm(Config({"predict_fm": "native"}, config_path=None)),
                      fm_lookup.FmLookup)
    with pytest.raises(ValueError, match="set predict_fm: graph or amp_level O0"):
        _predict_fm(Config({"predict_fm": "native", "amp_level": "O2"}, config_path=None))
    assert SPEC.export_overrides == {"predict_fm": "graph", "predict_mlp": "graph",
                                     "train_mlp": "graph", "train_fm": "graph"}
    assert {"predict_fm", "predict_mlp"} <= SPEC.compute_keys
