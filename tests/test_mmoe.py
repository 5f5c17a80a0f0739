import mindspore as ms
import numpy as np
import pytest
from mindspore import Tensor

from src.layers.towers import TaskTowers
from src.layers.initializers import make_initializer
from src.mmoe.mmoe import MMoE
from test_towers import assert_tower_output_init
from weighted import assert_same_function


def _x(b, f, seed=0):
    return Tensor(np.random.default_rng(seed).standard_normal((b, f)).astype(np.float32))


@pytest.mark.parametrize("batch,tasks,experts,units,towers", [(32, 2, 8, 4, [8]), (5, 3, 3, 6, [16, 4]),
                                                               (1, 1, 1, 1, [])])
def test_output_shape(batch, tasks, experts, units, towers):
    net = MMoE(input_dim=20, num_tasks=tasks, num_experts=experts, expert_units=units,
               tower_units=towers)
    assert net(_x(batch, 20)).shape == (batch, tasks)


def test_parameter_shapes_follow_config():
    net = MMoE(input_dim=30, num_tasks=2, num_experts=8, expert_units=4, tower_units=[8])
    shapes = {p.name: p.shape for p in net.get_parameters()}
    assert shapes["expert_kernel"] == (30, 32)
    assert shapes["gate_kernel"] == (30, 16)
    assert shapes["towers.weight0"] == (2, 4, 8)
    assert shapes["towers.weight1"] == (2, 8, 1)


@pytest.mark.parametrize("mixture", ["matmul", "batch_matmul", "broadcast"])
def test_matches_a_numpy_reference(mixture):
    """Experts, softmax gates, mixture and towers compute what MMoE defines."""
    net = MMoE(input_dim=6, num_tasks=2, num_experts=3, expert_units=2, tower_units=[4],
               init="normal", init_scale=0.5, mixture=mixture, matmul_from=1)
    p = {q.name: q.asnumpy() for q in net.get_parameters()}
    x = np.random.default_rng(1).standard_normal((7, 6)).astype(np.float32)
    experts = np.maximum(x @ p["expert_kernel"] + p["expert_bias"], 0).reshape(7, 3, 2)
    logits = (x @ p["gate_kernel"] + p["gate_bias"]).reshape(7, 2, 3)
    gates = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    out = np.zeros((7, 2))
    for t in range(2):
        mixed = np.einsum("be,beu->bu", gates[:, t], experts)
        h = np.maximum(mixed @ p["towers.weight0"][t] + p["towers.bias0"][t, 0], 0)
        out[:, t] = (h @ p["towers.weight1"][t] + p["towers.bias1"][t, 0])[:, 0]
    np.testing.assert_allclose(net(Tensor(x)).asnumpy(), out, rtol=1e-4, atol=1e-5)


def test_tasks_have_their_own_gates():
    """With per-task gates the two tasks differ even when their towers are equal."""
    net = MMoE(input_dim=8, num_tasks=2, num_experts=4, expert_units=3, tower_units=[5],
               init="normal", init_scale=0.5)
    for name in ("weight0", "weight1", "bias0", "bias1"):
        param = getattr(net.towers, "weights" if name.startswith("w") else "biases")[int(name[-1])]
        value = param.asnumpy()
        value[1] = value[0]
        param.set_data(Tensor(value))
    out = net(_x(16, 8)).asnumpy()
    assert not np.allclose(out[:, 0], out[:, 1])


@pytest.mark.parametrize("kwargs,match", [({"num_experts": 0}, "num_experts"),
                                          ({"input_dim": 0}, "input_dim"),
                                          ({"tower_units": [4, 0]}, "tower hidden units"),
                                          ({"tower_dropout": 1.0}, "dropout"),
                                          ({"init": "bogus"}, "unknown initializer"),
                                          ({"mixture": "einsum"}, "mixture must be one of")])
def test_bad_sizes_are_rejected(kwargs, match):
    args = dict(input_dim=10, num_tasks=2, num_experts=2, expert_units=2, tower_units=[4])
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        MMoE(**args)


@pytest.mark.parametrize("other", ["batch_matmul", "broadcast"])
def test_mixture_forms_give_the_same_outputs_and_gradients(other):
    """Training uses one form and export another, on the same checkpoint."""
    kwargs = dict(input_dim=12, num_tasks=3, num_experts=5, expert_units=4, tower_units=[6],
                  init="normal", init_scale=0.5)
    matmul = MMoE(mixture="matmul", matmul_from=9, **kwargs)
    second = MMoE(mixture=other, **kwargs)
    ms.load_param_into_net(second, {p.name: p for p in matmul.get_parameters()}, strict_load=True)
    x = _x(9, 12, seed=3)
    weights = Tensor(np.random.default_rng(4).standard_normal((9, 3)).astype(np.float32))
    assert_same_function(matmul, second, x, weights, params=8)


def test_matmul_mixture_keeps_no_extra_parameters():
    """The matmul form's 0/1 matrices are constants: checkpoints of all forms
    hold the same parameters."""
    names = {mixture: sorted(p.name for p in MMoE(input_dim=6, mixture=mixture).get_parameters())
             for mixture in ("matmul", "batch_matmul", "broadcast")}
    assert names["matmul"] == names["batch_matmul"] == names["broadcast"]


def test_matmul_mixture_takes_the_batched_product_below_its_batch():
    """Below ``matmul_from`` rows the matmul form mixes with the batched
    product (the mixture's only use of it; the towers have their own)."""
    net = MMoE(input_dim=6, mixture="matmul", matmul_from=16)
    calls, product = [], net.batch_matmul
    net.batch_matmul = lambda a, b: calls.append(a.shape) or product(a, b)
    ms.set_context(mode=ms.PYNATIVE_MODE)        # construct runs as Python: the calls are seen
    try:
        net(_x(8, 6))
        assert calls == [(8, 2, 8)]
        net(_x(16, 6))
        assert calls == [(8, 2, 8)]
    finally:
        ms.set_context(mode=ms.GRAPH_MODE)


def test_tower_dropout_is_active_only_in_training():
    net = MMoE(input_dim=10, num_tasks=2, num_experts=4, expert_units=8, tower_units=[64],
               init="normal", init_scale=0.5, tower_dropout=0.5)
    x = _x(64, 10)
    net.set_train(True)
    a, b = net(x).asnumpy(), net(x).asnumpy()
    assert not np.allclose(a, b)
    net.set_train(False)
    np.testing.assert_array_equal(net(x).asnumpy(), net(x).asnumpy())


def test_towers_xavier_uses_true_fans():
    towers = TaskTowers(3, 400, [], 2, make_initializer("xavier_uniform"))
    w = towers.weights[0].asnumpy()
    bound = np.sqrt(6.0 / (400 + 2))
    assert w.shape == (3, 400, 2) and np.abs(w).max() <= bound
    assert np.abs(w).max() > 0.8 * bound


def test_folded_field_embedding_gives_the_same_outputs_and_gradients():
    """From ``fold_batch`` rows on, the experts and gates are computed through
    the embedding matrix's products with their kernels: the same outputs and
    gradients (the embedding's too) as applying the embedding first."""
    from folding import WIDTH, field_layer, one_hot_rows, unfolded_twin
    from src.layers.fields import fold_from

    def make():
        layer = field_layer()
        return MMoE(input_dim=layer.output_dim, input_layer=layer, num_tasks=2, num_experts=3,
                    expert_units=2, tower_units=[4], init="normal", init_scale=0.5)
    folded = make()
    plain = unfolded_twin(folded, make)
    i, o, k = WIDTH, 50, 3 * 2 + 2 * 3        # input, embedding and first products' widths
    fixed, saving = 3 * i * o * k, 2 * i * o + 3 * o * k - 2 * i * k     # per call, per row
    assert folded.fold_batch == fold_from(i, o, k) == -(-fixed // saving) == 19
    rng = np.random.default_rng(7)
    x = one_hot_rows(folded.fold_batch + 5, rng)
    weights = rng.standard_normal((len(x), 2)).astype(np.float32)
    assert_same_function(plain, folded, x, weights, params=9)


def test_fold_from_counts_multiply_adds():
    from src.layers.fields import fold_from
    assert fold_from(518, 166, 48) == 85   # generated Census files, CPU layout; 8x4 experts, 2x8 gates
    assert fold_from(60, 10, 48) is None           # a product wider than the embedding: never
    assert MMoE(input_dim=20).fold_batch == 2 ** 31 - 1      # no foldable input layer


def test_tower_output_init_reaches_the_towers():
    assert_tower_output_init(lambda how: MMoE(input_dim=6, num_experts=3, expert_units=4,
                                              tower_units=[4], init="xavier_uniform",
                                              tower_output_init=how), 6)
