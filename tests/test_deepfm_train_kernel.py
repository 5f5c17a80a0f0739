"""DeepFM's training through the rows' FM kernels (src/layers/fm_lookup.cc
``FmRows`` and ``FmRowsGrad``, config ``train_fm``): the kernels against
NumPy through their C entry points, and DeepFM's losses and gradients
through them as through the graph's operators."""
import ctypes

import numpy as np
import pytest
from mindspore import Tensor

from criteo_inputs import CARD, assert_kernel_trains_as_graph
from src.deepfm.deepfm import DeepFM
from src.layers import fm_lookup
from tests.aot import call_aot


def _inputs(unique, fields, num_dense, dim, batch, seed):
    rng = np.random.default_rng(seed)
    rows = rng.standard_normal((unique, dim + 1)).astype(np.float32)
    inverse = rng.integers(0, unique, (batch, fields)).astype(np.int32)
    dense = rng.standard_normal((batch, num_dense)).astype(np.float32)
    return rows, inverse, dense


def _values(inverse, dense):
    return np.concatenate([dense, np.ones((len(inverse), inverse.shape[1] - dense.shape[1]))],
                          axis=1).astype(np.float64)


def _expected(rows, inverse, dense):
    """(vectors, first) in float64, the FM's pairs written out."""
    d = rows.shape[1] - 1
    scaled = rows[inverse].astype(np.float64) * _values(inverse, dense)[..., None]
    v = scaled[..., :d]
    fields = v.shape[1]
    fm = sum((v[:, i] * v[:, j]).sum(1) for i in range(fields) for j in range(i + 1, fields))
    return v.reshape(len(inverse), -1), (scaled[..., d].sum(1) + fm)[:, None]


def _expected_grad(rows, inverse, dense, d_vectors, d_first):
    """The rows' gradient by the chain rule, each (sample, field) term added
    to its row with np.add.at."""
    batch, fields = inverse.shape
    d = rows.shape[1] - 1
    x = _values(inverse, dense)
    v = rows[inverse].astype(np.float64)[..., :d] * x[..., None]          # (B, F, D)
    d_v = d_vectors.reshape(batch, fields, d) + d_first[:, :, None] * (v.sum(1, keepdims=True) - v)
    d_scaled = np.concatenate([d_v, np.broadcast_to(d_first[:, :, None], (batch, fields, 1))], 2)
    d_rows = np.zeros(rows.shape)
    np.add.at(d_rows, inverse.ravel(), (d_scaled * x[..., None]).reshape(-1, d + 1))
    return d_rows


@pytest.fixture(scope="module")
def library():
    return ctypes.CDLL(fm_lookup.library_path("train_fm"))


def _forward(library, rows, inverse, dense, threads):
    d = rows.shape[1] - 1
    vectors = np.full((len(inverse), inverse.shape[1] * d), np.nan, np.float32)
    first = np.full((len(inverse), 1), np.nan, np.float32)
    code = call_aot(library.FmRows, [rows, inverse, dense, np.array([threads], np.int32), vectors,
                                     first])
    return code, vectors, first


def _backward(library, rows, inverse, dense, threads, d_vectors, d_first):
    d_rows = np.full_like(rows, np.nan)
    code = call_aot(library.FmRowsGrad, [rows, inverse, dense, np.array([threads], np.int32),
                                         d_vectors, d_first, d_rows])
    return code, d_rows


# one field of one value; Criteo's 13 + 26 fields; no numeric field; batches
# enough for several threads and several row owners
SHAPES = [(1, 1, 1, 1, 1, 1), (50, 39, 13, 16, 300, 2), (7, 5, 0, 3, 700, 3),
          (4000, 39, 13, 16, 2000, 2), (900, 6, 2, 9, 11000, 4)]


@pytest.mark.parametrize("unique, fields, num_dense, dim, batch, threads", SHAPES)
def test_the_kernels_compute_the_fm_and_the_rows_gradient(library, unique, fields, num_dense, dim,
                                                         batch, threads):
    rows, inverse, dense = _inputs(unique, fields, num_dense, dim, batch, seed=fields + batch)
    code, vectors, first = _forward(library, rows, inverse, dense, threads)
    assert code == 0
    want_vectors, want_first = _expected(rows, inverse, dense)
    np.testing.assert_allclose(vectors, want_vectors, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(first, want_first, rtol=1e-5, atol=1e-4)
    rng = np.random.default_rng(batch)
    d_vectors = rng.standard_normal(vectors.shape).astype(np.float32)
    d_first = rng.standard_normal(first.shape).astype(np.float32)
    code, d_rows = _backward(library, rows, inverse, dense, threads, d_vectors, d_first)
    assert code == 0
    want = _expected_grad(rows, inverse, dense, d_vectors, d_first)
    np.testing.assert_allclose(d_rows, want, rtol=1e-4, atol=1e-3 * np.abs(want).max())
    if threads > 1:                          # the sums' order does not depend on the threads
        assert np.array_equal(_backward(library, rows, inverse, dense, 1, d_vectors,
                                        d_first)[1], d_rows)


def test_the_kernels_refuse_rows_outside_and_shapes_that_do_not_fit(library):
    rows, inverse, dense = _inputs(40, 6, 2, 5, 300, seed=1)
    assert _forward(library, rows, inverse, dense, 2)[0] == 0
    code, vectors, first = _forward(library, rows, inverse, dense, 2)
    grads = (np.ones_like(vectors), np.ones_like(first))
    for bad in (-1, 40):
        wrong = inverse.copy()
        wrong[299, 5] = bad
        assert _forward(library, rows, wrong, dense, 2)[0] == 2
        assert _backward(library, rows, wrong, dense, 2, *grads)[0] == 2
    assert _forward(library, rows, inverse, dense[:299].copy(), 1)[0] == 1           # batch 299
    assert _forward(library, rows, inverse, np.ones((300, 7), np.float32), 1)[0] == 1  # 7 > 6
    assert _forward(library, rows, inverse.astype(np.int64), dense, 1)[0] == 1
    assert _forward(library, rows.astype(np.float64), inverse, dense, 1)[0] == 1
    assert _backward(library, rows, inverse, dense, 1, grads[0][:, :-1].copy(), grads[1])[0] == 1
    assert _backward(library, rows, inverse, dense, 1, grads[0],
                     np.ones((300, 2), np.float32))[0] == 1
    assert call_aot(library.FmRowsGrad, [rows, inverse, dense, np.array([1], np.int32),
                                         *grads, np.zeros((39, 6), np.float32)]) == 1


def test_deepfm_trains_through_the_kernels_as_through_the_graph():
    kwargs = dict(num_dense=13, embedding_dim=4, deep_units=(8, 8), dropout=0.0,
                  embedding_scale=0.3, seed=3)
    plain = DeepFM(CARD, **kwargs)
    kernel = DeepFM(CARD, train_fm=fm_lookup.FmRows(threads=2), **kwargs)
    plain.bias.set_data(Tensor(np.array([0.25], np.float32)))
    d_weights = assert_kernel_trains_as_graph(plain, kernel)
    assert len(d_weights) == 7                             # bias, 3 layers' weights and biases


def test_the_config_key_is_checked_and_export_uses_the_graph():
    from src.config import Config
    from src.deepfm.spec import SPEC, _train_fm
    with pytest.raises(ValueError, match="train_fm must be one of graph, native"):
        _train_fm(Config({"train_fm": "fused"}, config_path=None))
    assert _train_fm(Config({"train_fm": "graph"}, config_path=None)) is None
    assert isinstance(_train_fm(Config({"train_fm": "native"}, config_path=None)),
                      fm_lookup.FmRows)
    with pytest.raises(ValueError, match="set train_fm: graph or amp_level O0"):
        _train_fm(Config({"train_fm": "native", "amp_level": "O2"}, config_path=None))
    assert SPEC.export_overrides["train_fm"] == "graph" and "train_fm" in SPEC.compute_keys
