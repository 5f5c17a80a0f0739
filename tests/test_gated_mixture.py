"""The gated mixture (src/layers/gated_mixture.cc) and its gradient against
NumPy references, called through their C entry points (both builds: AVX2 and
portable) and as a MindSpore operator."""
import ctypes

import mindspore
import numpy as np
import pytest
from mindspore import Tensor, nn

from src.layers import gated_mixture
from tests.aot import call_aot


def _reference(experts, gates, t, e, u):
    """Per task, softmax(gates) weighting ReLU(experts), in float64."""
    x = np.maximum(experts.astype(np.float64), 0).reshape(-1, 1, e, u)
    logits = gates.astype(np.float64).reshape(-1, t, e)
    weights = np.exp(logits - logits.max(-1, keepdims=True))
    weights /= weights.sum(-1, keepdims=True)
    return (weights[..., None] * x).sum(2).reshape(-1, t * u)


def _reference_grad(experts, gates, dout, t, e, u):
    """The gradients of ``sum(dout * mixture)`` by experts and gates, float64."""
    x = experts.astype(np.float64).reshape(-1, e, u)
    logits = gates.astype(np.float64).reshape(-1, t, e)
    w = np.exp(logits - logits.max(-1, keepdims=True))
    w /= w.sum(-1, keepdims=True)                                          # (B, T, E)
    d = dout.astype(np.float64).reshape(-1, t, u)
    d_x = np.einsum("bte,btu->beu", w, d) * (x > 0)
    dot = np.einsum("btu,beu->bte", d, np.maximum(x, 0))
    d_g = w * (dot - (w * dot).sum(-1, keepdims=True))
    return d_x.reshape(len(x), -1), d_g.reshape(len(x), -1)


def _call_grad(library, experts, gates, dout, layout):
    """``GatedMixtureGrad``; its outputs start as NaN."""
    d_x, d_g = np.full(experts.shape, np.nan, np.float32), np.full(gates.shape, np.nan, np.float32)
    code = call_aot(library.GatedMixtureGrad,
                    [experts, gates, np.array(layout, np.int32), dout, d_x, d_g])
    return code, d_x, d_g


def _call(library, experts, gates, layout):
    """``GatedMixture`` through its AOT signature; the output starts as NaN."""
    t, u = layout[0], layout[2]
    out = np.full((experts.shape[0], t * u), np.nan, np.float32)
    code = call_aot(library.GatedMixture, [experts, gates, np.array(layout, np.int32), out])
    return code, out


@pytest.fixture(scope="module", params=[False, True], ids=["avx2", "portable"])
def library(request):
    return ctypes.CDLL(gated_mixture.library_path(portable=request.param))


@pytest.mark.parametrize("rows, t, e, u, threads", [
    (1, 1, 1, 1, 1), (5, 2, 8, 4, 1), (3000, 2, 8, 4, 2), (2100, 3, 5, 3, 3), (7, 2, 13, 2, 1),
    (40, 4, 16, 1, 1)])
def test_the_kernel_computes_the_mixture(library, rows, t, e, u, threads):
    """Gate counts below, at and above the 8 lanes of the exponential, logits
    of either sign and spread, and rows enough for several threads."""
    rng = np.random.default_rng(rows + t + e + u)
    experts = rng.standard_normal((rows, e * u)).astype(np.float32)
    gates = (rng.standard_normal((rows, t * e)) * 6).astype(np.float32)
    code, out = _call(library, experts, gates, [t, e, u, 0, 0, threads])
    assert code == 0
    np.testing.assert_allclose(out, _reference(experts, gates, t, e, u), rtol=2e-6, atol=1e-6)


def test_the_columns_are_found_at_their_offsets(library):
    """One input holding experts then gates, and inputs with extra columns."""
    rng = np.random.default_rng(1)
    both = rng.standard_normal((30, 8 * 4 + 2 * 8 + 3)).astype(np.float32)
    code, out = _call(library, both, both, [2, 8, 4, 0, 32, 1])
    assert code == 0
    np.testing.assert_allclose(out, _reference(both[:, :32], both[:, 32:48], 2, 8, 4),
                               rtol=2e-6, atol=1e-6)
    code, out = _call(library, both, both, [1, 3, 2, 5, 40, 1])
    assert code == 0
    np.testing.assert_allclose(out, _reference(both[:, 5:11], both[:, 40:43], 1, 3, 2),
                               rtol=2e-6, atol=1e-6)


def test_extreme_logits_and_nan(library):
    """A logit far above the others takes all the weight; a NaN or infinite
    logit makes its task NaN and leaves the other task alone, as in the
    graph's softmax; the ReLU maps NaN to 0."""
    experts = np.array([[1.0, 2.0, np.nan, 4.0]] * 4, np.float32)       # E 4, U 1
    gates = np.zeros((4, 8), np.float32)
    gates[0, 1] = 200.0                                 # task 0: expert 1 only
    gates[0, 4:] = [-1e30, -1e30, -1e30, 0.0]           # task 1: expert 3 only
    gates[1, 2] = np.nan
    gates[2, 0] = np.inf
    gates[3, 4:] = -np.inf                              # all -inf: NaN, as 0 / 0
    code, out = _call(library, experts, gates, [2, 4, 1, 0, 0, 1])
    assert code == 0
    np.testing.assert_allclose(out[0], [2.0, 4.0], rtol=1e-6)
    assert np.isnan(out[1, 0]) and np.isnan(out[2, 0])
    np.testing.assert_allclose(out[1:3, 1], [7.0 / 4] * 2, rtol=1e-6)   # (1 + 2 + 0 + 4) / 4
    assert np.isnan(out[3, 1])


def test_the_kernel_refuses_shapes_dtypes_and_layouts_that_do_not_fit(library):
    experts, gates = np.ones((4, 8), np.float32), np.ones((4, 6), np.float32)
    assert _call(library, experts, gates, [2, 3, 2, 0, 0, 1])[0] == 0
    assert _call(library, experts, gates, [2, 3, 3, 0, 0, 1])[0] == 1     # 9 expert columns
    assert _call(library, experts, gates, [2, 3, 2, 3, 0, 1])[0] == 1     # offset past the end
    assert _call(library, experts, gates, [2, 4, 2, 0, 0, 1])[0] == 1     # 8 gate columns
    assert _call(library, experts, gates, [0, 3, 2, 0, 0, 1])[0] == 1
    assert _call(library, experts, gates[:3], [2, 3, 2, 0, 0, 1])[0] == 1  # rows differ
    assert _call(library, experts.astype(np.float64), gates, [2, 3, 2, 0, 0, 1])[0] == 1
    out = np.zeros((4, 5), np.float32)                                     # T*U is 4
    assert call_aot(library.GatedMixture,
                    [experts, gates, np.array([2, 3, 2, 0, 0, 1], np.int32), out]) == 1


@pytest.mark.parametrize("rows, t, e, u, threads", [
    (1, 1, 1, 1, 1), (13, 2, 8, 4, 1), (3000, 2, 8, 4, 2), (2100, 3, 5, 3, 3), (9, 2, 13, 2, 1)])
def test_the_gradient_kernel_computes_the_gradient(library, rows, t, e, u, threads):
    """Rows in groups of 8 lanes and a tail, several threads; columns outside
    the experts' and gates' are zero."""
    rng = np.random.default_rng(rows + t + e + u)
    experts = rng.standard_normal((rows, e * u + 3)).astype(np.float32)
    gates = (rng.standard_normal((rows, t * e + 2)) * 4).astype(np.float32)
    dout = rng.standard_normal((rows, t * u)).astype(np.float32)
    code, d_x, d_g = _call_grad(library, experts, gates, dout, [t, e, u, 2, 1, threads])
    assert code == 0
    want_x, want_g = _reference_grad(experts[:, 2:2 + e * u], gates[:, 1:1 + t * e], dout, t, e, u)
    # a gate's gradient is a difference of float32 sums of order-1 terms
    np.testing.assert_allclose(d_x[:, 2:2 + e * u], want_x, rtol=1e-5, atol=4e-6)
    np.testing.assert_allclose(d_g[:, 1:1 + t * e], want_g, rtol=1e-5, atol=4e-6)
    assert not d_x[:, :2].any() and not d_x[:, 2 + e * u:].any()
    assert not d_g[:, :1].any() and not d_g[:, 1 + t * e:].any()


def test_the_gradient_of_a_nan_or_zero_expert_output_is_zero(library):
    experts = np.array([[1.0, np.nan, 0.0, -2.0]] * 9, np.float32)          # E 4, U 1
    gates = np.zeros((9, 4), np.float32)
    code, d_x, _ = _call_grad(library, experts, gates, np.ones((9, 1), np.float32),
                              [1, 4, 1, 0, 0, 1])
    assert code == 0
    np.testing.assert_allclose(d_x, [[0.25, 0.0, 0.0, 0.0]] * 9, rtol=1e-6)


def test_the_gradient_kernel_refuses_shapes_that_do_not_fit(library):
    experts, gates, dout = (np.ones((4, 8), np.float32), np.ones((4, 6), np.float32),
                            np.ones((4, 4), np.float32))
    assert _call_grad(library, experts, gates, dout, [2, 3, 2, 0, 0, 1])[0] == 0
    assert _call_grad(library, experts, gates, dout[:, :3], [2, 3, 2, 0, 0, 1])[0] == 1
    assert _call_grad(library, experts, gates, dout[:3], [2, 3, 2, 0, 0, 1])[0] == 1
    assert _call_grad(library, experts, gates, dout, [2, 3, 3, 0, 0, 1])[0] == 1
    layout = np.array([2, 3, 2, 0, 0, 1], np.int32)
    wrong = [experts, gates, layout, dout, np.zeros((4, 7), np.float32), np.zeros((4, 6), np.float32)]
    assert call_aot(library.GatedMixtureGrad, wrong) == 1


class _Mix(nn.Cell):
    def __init__(self, t, e, u, threads):
        super().__init__()
        self.mix = gated_mixture.GatedMixture(t, e, u, threads)

    def construct(self, experts, gates):
        return self.mix(experts, gates), self.mix(experts)


def test_the_operator_gives_the_reference_in_a_graph():
    rng = np.random.default_rng(3)
    experts = rng.standard_normal((2500, 12 + 6)).astype(np.float32)
    gates = rng.standard_normal((2500, 6)).astype(np.float32)
    apart, together = _Mix(2, 3, 4, 2)(Tensor(experts), Tensor(gates))
    np.testing.assert_allclose(apart.asnumpy(), _reference(experts[:, :12], gates, 2, 3, 4),
                               rtol=2e-6, atol=1e-6)
    np.testing.assert_allclose(together.asnumpy(),
                               _reference(experts[:, :12], experts[:, 12:], 2, 3, 4),
                               rtol=2e-6, atol=1e-6)


class _Loss(nn.Cell):
    def __init__(self, together):
        super().__init__()
        self.mix, self.together = gated_mixture.GatedMixture(2, 3, 4, 2), together

    def construct(self, experts, gates, dout):
        out = self.mix(experts) if self.together else self.mix(experts, gates)
        return (out * dout).sum()


def test_the_operator_has_the_gradient_in_a_graph():
    """Of two inputs, and of one holding both (the two parts added up)."""
    rng = np.random.default_rng(4)
    both = rng.standard_normal((2500, 12 + 6)).astype(np.float32)
    dout = rng.standard_normal((2500, 8)).astype(np.float32)
    want_x, want_g = _reference_grad(both[:, :12], both[:, 12:], dout, 2, 3, 4)
    d_x, d_g = mindspore.grad(_Loss(False), grad_position=(0, 1))(
        Tensor(both[:, :12]), Tensor(both[:, 12:]), Tensor(dout))
    np.testing.assert_allclose(d_x.asnumpy(), want_x, rtol=1e-5, atol=4e-6)
    np.testing.assert_allclose(d_g.asnumpy(), want_g, rtol=1e-5, atol=4e-6)
    d_both = mindspore.grad(_Loss(True), grad_position=0)(Tensor(both), Tensor(both[:, 12:]),
                                                            Tensor(dout))
    np.testing.assert_allclose(d_both.asnumpy(), np.concatenate([want_x, want_g], 1),
                               rtol=1e-5, atol=4e-6)


def test_the_operator_is_cpu_only_and_checks_its_sizes(monkeypatch):
    with pytest.raises(ValueError, match="threads must be a positive integer"):
        gated_mixture.GatedMixture(2, 8, 4, threads=0)
    with pytest.raises(ValueError, match="num_experts must be a positive integer"):
        gated_mixture.GatedMixture(2, 0, 4)
    monkeypatch.setattr(mindspore, "get_context", lambda key: "Ascend")
    with pytest.raises(ValueError, match="on Ascend set predict_mixture: graph"):
        gated_mixture.GatedMixture(2, 8, 4)
    with pytest.raises(ValueError, match="train_mixture: native is a CPU kernel; on Ascend set "
                                         "train_mixture: graph"):
        gated_mixture.GatedMixture(2, 8, 4, key="train_mixture")
