"""DLRM's training through the dot-interaction kernels (src/layers/dot_interaction.cc
``DotPairs`` and ``DotPairsGrad``, config ``train_interaction``): the kernels
against NumPy through their C entry points (AVX2 and portable builds), the
operator's gradient in a graph, and DLRM's losses and gradients through it
as through the graph's operators."""
import ctypes

import mindspore
import numpy as np
import pytest
from mindspore import Tensor, nn

from criteo_inputs import CARD, assert_kernel_trains_as_graph
from src.dlrm.dlrm import DLRM
from src.layers import dot_interaction
from tests.aot import call_aot


def _expected(bottom, emb, self_interaction):
    t = np.concatenate([bottom[:, None], emb], axis=1).astype(np.float64)      # (B, V, D)
    li, lj = np.tril_indices(t.shape[1], 0 if self_interaction else -1)
    return np.concatenate([bottom, (t @ t.transpose(0, 2, 1))[:, li, lj]], axis=1), t, li, lj


def _expected_grad(bottom, emb, dout, self_interaction):
    _, t, li, lj = _expected(bottom, emb, self_interaction)
    gram = np.zeros((len(t), t.shape[1], t.shape[1]))
    gram[:, li, lj] = dout[:, bottom.shape[1]:]
    d_t = (gram + gram.transpose(0, 2, 1)) @ t          # d(t_i . t_j) reaches both vectors
    return dout[:, :bottom.shape[1]] + d_t[:, 0], d_t[:, 1:]


def _inputs(batch, fields, dim, seed):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((batch, dim)).astype(np.float32),
            rng.standard_normal((batch, fields, dim)).astype(np.float32))


def _width(fields, dim, self_interaction):
    return dim + dot_interaction.pair_count(fields, self_interaction)


@pytest.fixture(scope="module", params=[False, True], ids=["avx2", "portable"])
def library(request):
    return ctypes.CDLL(dot_interaction.library_path(portable=request.param))


# dims below, at and above a vector's 8 and 4 lanes; up to 70 fields (more
# vector blocks than the unrolled cases)
SHAPES = [(1, 1, 1, 1), (300, 26, 16, 2), (700, 3, 5, 3), (129, 9, 64, 4), (260, 70, 12, 2),
          (5, 7, 33, 1)]


@pytest.mark.parametrize("self_interaction", [False, True], ids=["pairs", "self"])
@pytest.mark.parametrize("batch, fields, dim, threads", SHAPES)
def test_the_kernels_compute_the_pairs_and_their_gradient(library, self_interaction, batch, fields,
                                                          dim, threads):
    bottom, emb = _inputs(batch, fields, dim, seed=fields + dim)
    layout = np.array([threads, int(self_interaction)], np.int32)
    out = np.full((batch, _width(fields, dim, self_interaction)), np.nan, np.float32)
    assert call_aot(library.DotPairs, [bottom, emb, layout, out]) == 0
    np.testing.assert_allclose(out, _expected(bottom, emb, self_interaction)[0], rtol=1e-5,
                               atol=1e-4)
    dout = np.random.default_rng(batch).standard_normal(out.shape).astype(np.float32)
    d_bottom = np.full_like(bottom, np.nan)
    d_emb = np.full_like(emb, np.nan)
    assert call_aot(library.DotPairsGrad, [bottom, emb, layout, dout, d_bottom, d_emb]) == 0
    want_bottom, want_emb = _expected_grad(bottom, emb, dout, self_interaction)
    np.testing.assert_allclose(d_bottom, want_bottom, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(d_emb, want_emb, rtol=1e-5, atol=1e-4)


def test_the_kernels_refuse_shapes_and_dtypes_that_do_not_fit(library):
    bottom, emb = _inputs(40, 4, 6, seed=1)
    layout = np.array([2, 0], np.int32)
    out = np.zeros((40, 6 + 10), np.float32)
    dout = np.zeros_like(out)
    assert call_aot(library.DotPairs, [bottom, emb, layout, out]) == 0
    assert call_aot(library.DotPairs, [bottom, emb, layout, out[:, :-1].copy()]) == 1  # 10 pairs
    assert call_aot(library.DotPairs, [bottom[:, :5].copy(), emb, layout, out]) == 1    # D 5 != 6
    assert call_aot(library.DotPairs, [bottom[:39].copy(), emb, layout, out]) == 1      # B
    assert call_aot(library.DotPairs, [bottom, emb.astype(np.float64), layout, out]) == 1
    assert call_aot(library.DotPairs, [bottom, emb, layout[:1].copy(), out]) == 1
    grads = [np.zeros_like(bottom), np.zeros_like(emb)]
    assert call_aot(library.DotPairsGrad, [bottom, emb, layout, dout, *grads]) == 0
    assert call_aot(library.DotPairsGrad, [bottom, emb, layout, dout, grads[0],
                                           np.zeros((40, 3, 6), np.float32)]) == 1
    assert call_aot(library.DotPairsGrad, [bottom, emb, layout, dout,
                                           np.zeros((40, 5), np.float32), grads[1]]) == 1
    assert call_aot(library.DotPairsGrad, [bottom, emb, layout, dout[:, :-1].copy(), *grads]) == 1


class _Loss(nn.Cell):
    def __init__(self, fields, self_interaction):
        super().__init__()
        self.pairs = dot_interaction.DotPairs(fields, self_interaction, threads=2)

    def construct(self, bottom, emb, dout):
        return (self.pairs(bottom, emb) * dout).sum()


def test_the_operator_has_its_gradient_in_a_graph():
    bottom, emb = _inputs(600, 5, 8, seed=2)
    dout = np.random.default_rng(3).standard_normal((600, _width(5, 8, True))).astype(np.float32)
    d_bottom, d_emb = mindspore.grad(_Loss(5, True), grad_position=(0, 1))(
        Tensor(bottom), Tensor(emb), Tensor(dout))
    want_bottom, want_emb = _expected_grad(bottom, emb, dout, True)
    np.testing.assert_allclose(d_bottom.asnumpy(), want_bottom, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(d_emb.asnumpy(), want_emb, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("self_interaction", [False, True], ids=["pairs", "self"])
def test_dlrm_trains_through_the_kernel_as_through_the_graph(self_interaction):
    kwargs = dict(num_dense=13, embedding_dim=4, bottom_units=(8, 4), top_units=(8,),
                  self_interaction=self_interaction, seed=3)
    plain = DLRM(CARD, **kwargs)
    kernel = DLRM(CARD, train_interaction=dot_interaction.DotPairs(len(CARD), self_interaction,
                                                                   threads=2), **kwargs)
    assert_kernel_trains_as_graph(plain, kernel)
