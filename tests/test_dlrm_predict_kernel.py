"""DLRM's prediction through the one-pass lookup-and-interaction kernel
(src/layers/dot_interaction.cc, config ``predict_interaction``): the kernel
against NumPy, called through its C entry point, and DLRM predicting
through it as through the graph."""
import ctypes

import mindspore as ms
import numpy as np
import pytest
from mindspore import Tensor

from criteo_inputs import CARD, assert_kernel_predicts_as_graph, criteo_inputs
from src.dlrm.dlrm import DLRM
from src.layers import bias_relu, dot_interaction
from tests.aot import call_aot


def _expected(table, cat, bottom, self_interaction):
    t = np.concatenate([bottom[:, None], table[cat]], axis=1).astype(np.float64)   # (B, V, D)
    gram = t @ t.transpose(0, 2, 1)
    li, lj = np.tril_indices(t.shape[1], 0 if self_interaction else -1)
    return np.concatenate([bottom, gram[:, li, lj]], axis=1)


def _call(library, table, cat, bottom, threads, self_interaction, width=None):
    vectors = cat.shape[1] + 1
    pairs = vectors * (vectors - 1) // 2 + (vectors if self_interaction else 0)
    out = np.full((len(cat), width or bottom.shape[1] + pairs), np.nan, np.float32)
    layout = np.array([threads, int(self_interaction)], np.int32)
    return call_aot(library.DotInteraction, [table, cat, bottom, layout, out]), out


def _inputs(rows, fields, dim, batch, seed):
    rng = np.random.default_rng(seed)
    table = rng.standard_normal((rows, dim)).astype(np.float32)
    cat = rng.integers(0, rows, (batch, fields)).astype(np.int32)
    return table, cat, rng.standard_normal((batch, dim)).astype(np.float32)


@pytest.fixture(scope="module", params=[False, True], ids=["avx2", "portable"])
def library(request):
    return ctypes.CDLL(dot_interaction.library_path(portable=request.param))


@pytest.mark.parametrize("self_interaction", [False, True], ids=["pairs", "self"])
@pytest.mark.parametrize("fields, dim, batch, threads", [
    (1, 1, 1, 1), (26, 16, 300, 2), (3, 5, 700, 3), (9, 64, 129, 4)])
def test_the_kernel_computes_the_lookup_and_the_pairs(library, self_interaction, fields, dim,
                                                      batch, threads):
    table, cat, bottom = _inputs(50, fields, dim, batch, seed=fields + dim)
    cat[0, 0], cat[-1, -1] = 0, 49
    code, out = _call(library, table, cat, bottom, threads, self_interaction)
    assert code == 0
    np.testing.assert_allclose(out, _expected(table, cat, bottom, self_interaction),
                               rtol=1e-5, atol=1e-5)


def test_the_kernel_refuses_ids_outside_the_table_and_shapes_that_do_not_fit(library):
    table, cat, bottom = _inputs(40, 4, 6, 300, seed=1)
    for bad in (-1, 40):
        wrong = cat.copy()
        wrong[299, 3] = bad
        assert _call(library, table, wrong, bottom, 2, False)[0] == 2
    assert _call(library, table, cat, bottom, 1, False, width=6 + 11)[0] == 1   # 10 pairs, not 11
    assert _call(library, table, cat, bottom[:, :5], 1, False)[0] == 1          # D 5 != 6
    assert _call(library, table, cat.astype(np.int64), bottom, 1, False)[0] == 1
    assert _call(library, table.astype(np.float64), cat, bottom, 1, False)[0] == 1


def _pair(self_interaction, interaction=True, mlp=False):
    """Two DLRMs with the same weights, the second predicting through the
    interaction kernel (``interaction``) and the MLPs' bias-and-ReLU kernel
    (``mlp``)."""
    kwargs = dict(num_dense=13, embedding_dim=4, bottom_units=(8, 4), top_units=(8,),
                  self_interaction=self_interaction, seed=3)
    plain = DLRM(CARD, **kwargs)
    kernel = DLRM(CARD, predict_interaction=dot_interaction.DotInteraction(
        len(CARD), self_interaction, threads=2) if interaction else None,
                  predict_mlp=bias_relu.BiasRelu(threads=2) if mlp else None, **kwargs)
    ms.load_param_into_net(kernel, {p.name: p for p in plain.get_parameters()}, strict_load=True)
    return plain, kernel


@pytest.mark.parametrize("self_interaction, interaction, mlp", [
    (False, True, False), (True, True, False), (False, False, True), (True, True, True)],
    ids=["pairs", "self", "mlp", "self-both"])
def test_dlrm_predicts_through_the_kernels_as_through_the_graph_and_trains_on_the_graph(
        self_interaction, interaction, mlp):
    assert_kernel_predicts_as_graph(*_pair(self_interaction, interaction, mlp))


def test_dlrm_through_the_kernel_refuses_an_id_outside_the_table():
    _, kernel = _pair(False)
    kernel.set_train(False)
    cat, dense = criteo_inputs(n=4)
    cat[2, 1] = -3
    with pytest.raises(RuntimeError):
        kernel(Tensor(cat), Tensor(dense)).asnumpy()


def test_the_config_key_is_checked_and_export_uses_the_graph():
    from src.config import Config
    from src.dlrm.spec import SPEC, _interaction
    fmap = {"cardinalities": CARD}
    with pytest.raises(ValueError, match="predict_interaction must be one of graph, native"):
        _interaction(Config({"predict_interaction": "fused"}, config_path=None), fmap, "predict")
    assert _interaction(Config({"predict_interaction": "graph"}, config_path=None), fmap,
                        "predict") is None
    native = _interaction(Config({"predict_interaction": "native", "interaction": "dot",
                                  "self_interaction": True}, config_path=None), fmap, "predict")
    assert isinstance(native, dot_interaction.DotInteraction)
    assert native.layout.asnumpy()[1] == 1
    # the kernel computes the dot interaction: a concatenation stays on the graph
    assert _interaction(Config({"predict_interaction": "native", "interaction": "cat"},
                               config_path=None), fmap, "predict") is None
    with pytest.raises(ValueError, match="computes the dot interaction, not cat"):
        DLRM(CARD, embedding_dim=4, bottom_units=(8, 4), top_units=(8,), interaction="cat",
             predict_interaction=native)
    with pytest.raises(ValueError, match="set predict_interaction: graph or amp_level O0"):
        _interaction(Config({"predict_interaction": "native", "amp_level": "O2"},
                            config_path=None), fmap, "predict")
    assert SPEC.export_overrides == {"predict_interaction": "graph", "predict_mlp": "graph",
                                     "train_interaction": "graph", "train_mlp": "graph"}
    assert {"predict_interaction", "predict_mlp"} <= SPEC.compute_keys


def test_the_cat_interaction_needs_no_compiler(tmp_path, monkeypatch):
    """``predict_interaction: native`` (the CPU config's) with ``interaction:
    cat`` predicts on the graph, so it builds nothing."""
    from src.config import Config
    from src.dlrm.spec import _interaction
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setenv("CXX", "no-such-compiler")
    cfg = Config({"predict_interaction": "native", "interaction": "cat"}, config_path=None)
    assert _interaction(cfg, {"cardinalities": CARD}, "predict") is None
