import numpy as np
import pytest
from mindspore import Tensor, ops

from src.dselect_k.gate import DSelectKGate, smooth_step
from src.dselect_k.gate import binary_codes


def _set(param, value):
    param.set_data(Tensor(np.asarray(value, np.float32).reshape(param.shape)))


def _logits_for(expert, bits, big=10.0):
    return [big if (expert >> b) & 1 else -big for b in range(bits)]


def test_smooth_step_pieces():
    gamma = 2.0
    t = Tensor(np.array([-5, -1, -0.5, 0, 0.5, 1, 5], np.float32))
    s = smooth_step(t, gamma).asnumpy()
    cubic = lambda v: -2 / gamma ** 3 * v ** 3 + 3 / (2 * gamma) * v + 0.5
    np.testing.assert_allclose(s, [0, 0, cubic(-0.5), 0.5, cubic(0.5), 1, 1], atol=1e-6)
    assert cubic(-1) == pytest.approx(0) and cubic(1) == pytest.approx(1)   # continuous at the edges


def test_codes():
    np.testing.assert_array_equal(binary_codes(5), [[0, 0, 0], [1, 0, 0], [0, 1, 0], [1, 1, 0],
                                                    [0, 0, 1]])
    assert binary_codes(2).shape == (2, 1)


def test_weights_sum_to_one_for_power_of_two():
    gate = DSelectKGate(num_experts=8, k=3, gamma=1.0, seed=0)
    _set(gate.z, np.random.default_rng(1).uniform(-0.4, 0.4, (1, 3, 3)))
    weights, reg = gate(Tensor(np.zeros((4, 1), np.float32)))
    w = weights.asnumpy()
    assert w.shape == (4, 8) and np.all(w >= 0)
    np.testing.assert_allclose(w.sum(axis=1), 1.0, rtol=1e-5)
    assert np.isfinite(reg.asnumpy())


def test_saturated_selectors_pick_exactly_k_experts():
    gate = DSelectKGate(num_experts=8, k=2, gamma=1.0)
    _set(gate.z, [_logits_for(5, 3), _logits_for(2, 3)])
    _set(gate.w, [0.3, -0.2])
    weights, reg = gate(Tensor(np.zeros((2, 1), np.float32)))
    w = weights.asnumpy()[0]
    softmax = np.exp([0.3, -0.2]) / np.exp([0.3, -0.2]).sum()
    expected = np.zeros(8)
    expected[5], expected[2] = softmax
    np.testing.assert_allclose(w, expected, atol=1e-6)               # exact binary selection
    assert (w > 0).sum() == 2
    assert reg.asnumpy() == pytest.approx(0.0, abs=1e-4)            # one-hot selectors: no entropy


def test_gradients_flow_only_in_the_smooth_region():
    gate = DSelectKGate(num_experts=4, k=1, gamma=1.0)
    x = Tensor(np.zeros((1, 1), np.float32))

    def grad_of_z(z):
        _set(gate.z, z)
        fn = lambda inp: gate(inp)[0][0, 1]
        return ops.GradOperation(get_by_list=True)(fn, gate.trainable_params())(x)[0].asnumpy()

    assert np.abs(grad_of_z([0.1, -0.2])).sum() > 0
    assert np.abs(grad_of_z([5.0, -5.0])).sum() == 0


def test_non_power_of_two_penalises_codes_without_expert():
    gate = DSelectKGate(num_experts=5, k=1, gamma=1.0)
    x = Tensor(np.zeros((1, 1), np.float32))
    _set(gate.z, _logits_for(3, 3))
    weights, valid_reg = gate(x)
    np.testing.assert_allclose(weights.asnumpy().sum(), 1.0, rtol=1e-6)
    _set(gate.z, _logits_for(7, 3))                                   # code 111: no expert 7
    weights, invalid_reg = gate(x)
    assert weights.asnumpy().sum() == pytest.approx(0.0, abs=1e-6)
    assert invalid_reg.asnumpy() > 1000 * valid_reg.asnumpy() + 1


def test_per_example_mode_depends_on_the_input():
    gate = DSelectKGate(num_experts=6, k=2, gamma=2.0, mode="per_example", input_dim=5)
    x = Tensor(np.random.default_rng(0).standard_normal((7, 5)).astype(np.float32) * 3)
    weights, _ = gate(x)
    w = weights.asnumpy()
    assert w.shape == (7, 6) and not np.allclose(w[0], w[1])


@pytest.mark.parametrize("kwargs,match", [({"num_experts": 1}, "at least 2"),
                                          ({"k": 9}, "k must lie"),
                                          ({"gamma": 0}, "gamma"),
                                          ({"mode": "dynamic"}, "mode"),
                                          ({"mode": "per_example"}, "input_dim"),
                                          ({"balance": 0.5}, "per_example gates only"),
                                          ({"mode": "per_example", "input_dim": 4,
                                            "balance": -1.0}, "must be >= 0"),
                                          ({"overlap": -1.0}, "overlap weight")])
def test_bad_arguments(kwargs, match):
    args = dict(num_experts=8, k=2)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        DSelectKGate(**args)


def test_minimising_the_regulariser_selects_k_experts():
    """Training on the regulariser alone drives every selector into saturation,
    leaving at most k experts with weight (here 6 experts: the unused-code
    term keeps the weight on codes that have an expert)."""
    import mindspore as ms
    from mindspore import nn

    gate = DSelectKGate(6, 2, gamma=1.0, seed=3)

    class RegOnly(nn.Cell):
        def __init__(self, g):
            super().__init__()
            self.g = g

        def construct(self, x):
            return self.g(x)[1]

    step = nn.TrainOneStepCell(RegOnly(gate), nn.Adam(gate.trainable_params(), 0.05))
    step.set_train()
    x = ms.Tensor(np.zeros((4, 3), np.float32))
    for _ in range(300):
        step(x)
    weights = gate(x)[0].asnumpy()
    assert np.all((weights > 1e-6).sum(1) <= 2)
    np.testing.assert_allclose(weights.sum(1), 1.0, atol=1e-5)


def test_load_balancing_term_of_per_example_gates():
    x = Tensor(np.random.default_rng(3).normal(size=(6, 5)).astype(np.float32))
    plain = DSelectKGate(num_experts=4, k=2, mode="per_example", input_dim=5, seed=2)
    balanced = DSelectKGate(num_experts=4, k=2, mode="per_example", input_dim=5, seed=2,
                            balance=0.5)
    for dense in ("z_dense", "w_dense"):   # the same logits in both gates
        for name in ("weight", "bias"):
            getattr(getattr(balanced, dense), name).set_data(getattr(getattr(plain, dense), name))
    weights, reg = plain(x)
    weights_b, reg_b = balanced(x)
    np.testing.assert_allclose(weights_b.asnumpy(), weights.asnumpy())
    importance = weights.asnumpy().mean(axis=0)
    cv2 = importance.var() / importance.mean() ** 2
    assert float(reg_b.asnumpy()) - float(reg.asnumpy()) == pytest.approx(0.5 * cv2, rel=1e-4)


def test_overlap_term_counts_selector_pairs_on_the_same_expert():
    x = Tensor(np.zeros((2, 1), np.float32))
    gate = DSelectKGate(num_experts=8, k=3, gamma=1.0, overlap=0.25)
    plain = DSelectKGate(num_experts=8, k=3, gamma=1.0)
    saturated = [_logits_for(5, 3), _logits_for(5, 3), _logits_for(2, 3)]   # two on expert 5
    for g in (gate, plain):
        _set(g.z, saturated)
    extra = float(gate(x)[1].asnumpy()) - float(plain(x)[1].asnumpy())
    assert extra == pytest.approx(0.25 * 1.0, abs=1e-5)                 # one colliding pair
    _set(gate.z, [_logits_for(5, 3), _logits_for(1, 3), _logits_for(2, 3)])
    _set(plain.z, [_logits_for(5, 3), _logits_for(1, 3), _logits_for(2, 3)])
    assert float(gate(x)[1].asnumpy()) == pytest.approx(float(plain(x)[1].asnumpy()), abs=1e-5)
    # soft selectors: the term equals sum_{i<j} <r_i, r_j> computed in NumPy
    rng = np.random.default_rng(0)
    z = rng.uniform(-0.3, 0.3, (3, 3))
    _set(gate.z, z)
    _set(plain.z, z)
    r = np.array([[np.prod([(S if c else 1 - S) for c, S in zip(code, s_row)])
                   for code in binary_codes(8)]
                  for s_row in smooth_step(Tensor(z.astype(np.float32)), 1.0).asnumpy()])
    pairs = sum(r[i] @ r[j] for i in range(3) for j in range(i + 1, 3))
    extra = float(gate(x)[1].asnumpy()) - float(plain(x)[1].asnumpy())
    assert extra == pytest.approx(0.25 * pairs, rel=1e-4)


def test_paper_start_is_kept_and_distinct_start_puts_selectors_on_different_codes():
    paper = DSelectKGate(num_experts=6, k=3, gamma=2.0, seed=(4, 1))
    apart = DSelectKGate(num_experts=6, k=3, gamma=2.0, seed=(4, 1), start=0.5)
    z0, z = paper.z.asnumpy()[0], apart.z.asnumpy()[0]
    assert np.all(np.abs(z0) <= 2.0 / 100)                            # the paper's U(+-gamma/100)
    np.testing.assert_allclose(np.abs(z), 0.5 * 2.0 / 2)              # start * gamma/2 on every bit
    np.testing.assert_array_equal(apart.w.asnumpy(), paper.w.asnumpy())
    experts = [int(sum(1 << b for b in range(3) if row[b] > 0)) for row in z]
    assert len(set(experts)) == 3 and max(experts) < 6                 # distinct, existing experts
    r = apart.selectors(apart.z).asnumpy()[0]                         # (k, n)
    np.testing.assert_array_equal(r.argmax(axis=1), experts)
    s = 0.5 ** 3 * -2 / 8 + 3 / 4 * 0.5 + 0.5                          # S(start * gamma/2)
    np.testing.assert_allclose(r.max(axis=1), s ** 3, rtol=1e-5)
    per_example = DSelectKGate(num_experts=6, k=3, gamma=2.0, mode="per_example", input_dim=5,
                               seed=(4, 1), start=0.5)
    np.testing.assert_allclose(per_example.z_dense.bias.asnumpy(), z.reshape(-1))


@pytest.mark.parametrize("start", [-0.1, 1.0])
def test_start_must_stay_inside_the_smooth_region(start):
    with pytest.raises(ValueError, match="start must lie in"):
        DSelectKGate(num_experts=8, k=2, start=start)
