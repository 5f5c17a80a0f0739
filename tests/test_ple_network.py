"""The PLE network against a NumPy reference of the paper's equations:
shapes, values, which experts each gate sees, its checks."""
import numpy as np
import pytest
from mindspore import Tensor

from src.ple.network import PLE
from test_towers import assert_tower_output_init


def _softmax(z):
    z = np.exp(z - z.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


def _relu(z):
    return np.maximum(z, 0.0)


def _numpy_forward(net, x):
    """PLE written expert by expert, task by task (no stacking tricks)."""
    p = {name: v.asnumpy() for name, v in net.parameters_and_names()}
    t, m_t, m_s, u = net.num_tasks, net.task_experts, net.shared_experts, net.expert_units
    task_in, shared_in = [x] * t, x
    for level in range(net.num_levels):
        own = [[_relu(task_in[k] @ p[f"task_expert_kernel{level}"][k][:, e * u:(e + 1) * u]
                      + p[f"task_expert_bias{level}"][k][0, e * u:(e + 1) * u])
                for e in range(m_t)] for k in range(t)]
        shared = [_relu(shared_in @ p[f"shared_expert_kernel{level}"][:, e * u:(e + 1) * u]
                        + p[f"shared_expert_bias{level}"][e * u:(e + 1) * u])
                  for e in range(m_s)]
        nxt = []
        for k in range(t):
            g = _softmax(task_in[k] @ p[f"task_gate_kernel{level}"][k]
                         + p[f"task_gate_bias{level}"][k])
            pool = own[k] + shared                       # own experts first, then shared
            nxt.append(sum(g[:, [j]] * e for j, e in enumerate(pool)))
        if level < net.num_levels - 1:
            g = _softmax(shared_in @ p[f"shared_gate_kernel{level}"]
                         + p[f"shared_gate_bias{level}"])
            pool = [e for k in range(t) for e in own[k]] + shared
            shared_in = sum(g[:, [j]] * e for j, e in enumerate(pool))
        task_in = nxt
    layers = sum(1 for k in p if k.startswith("towers.weight"))
    out = []
    for k in range(t):
        z = task_in[k]
        for i in range(layers):
            z = z @ p[f"towers.weight{i}"][k] + p[f"towers.bias{i}"][k]
            if i < layers - 1:
                z = _relu(z)
        out.append(z[:, 0])
    return np.stack(out, axis=1)


@pytest.mark.parametrize("levels, m_t, m_s, towers", [(1, 2, 1, [3]), (2, 2, 3, [4]),
                                                      (3, 1, 2, [])])
def test_outputs_match_numpy(levels, m_t, m_s, towers):
    net = PLE(input_dim=7, num_tasks=3, num_levels=levels, task_experts=m_t, shared_experts=m_s,
              expert_units=5, tower_units=towers, init="normal", init_scale=0.5)
    x = np.random.default_rng(levels).standard_normal((11, 7)).astype(np.float32)
    got = net(Tensor(x)).asnumpy()
    assert got.shape == (11, 3)
    np.testing.assert_allclose(got, _numpy_forward(net, x), rtol=1e-4, atol=1e-5)


def test_a_task_is_blind_to_the_other_tasks_experts_at_the_top_level():
    """With one level, task 0's output does not move when task 1's experts do;
    with two, it does (through the shared gate of level 0)."""
    x = Tensor(np.random.default_rng(0).standard_normal((6, 4)).astype(np.float32))
    for levels, moves in ((1, False), (2, True)):
        net = PLE(input_dim=4, num_tasks=2, num_levels=levels, expert_units=3,
                  init="normal", init_scale=0.5)
        before = net(x).asnumpy()
        kernel = net.task_expert_kernels[0]
        value = kernel.asnumpy()
        value[1] += 1.0                               # task 1's experts at level 0
        kernel.set_data(Tensor(value))
        after = net(x).asnumpy()
        assert not np.allclose(before[:, 1], after[:, 1])
        assert np.allclose(before[:, 0], after[:, 0]) is not moves


def test_parameter_shapes():
    net = PLE(input_dim=10, num_tasks=2, num_levels=2, task_experts=3, shared_experts=2,
              expert_units=4)
    assert net.task_expert_kernels[0].shape == (2, 10, 12)
    assert net.task_expert_kernels[1].shape == (2, 4, 12)
    assert net.task_gate_kernels[1].shape == (2, 4, 5)
    assert net.shared_expert_kernels[0].shape == (10, 8)
    assert len(net.shared_gate_kernels) == 1                  # none above the top level
    assert net.shared_gate_kernels[0].shape == (10, 8)     # 2 * 3 task + 2 shared


@pytest.mark.parametrize("key", ["input_dim", "num_levels", "task_experts", "shared_experts",
                                 "expert_units"])
def test_constructor_checks(key):
    kwargs = {"input_dim": 5, key: 0}
    with pytest.raises(ValueError, match=f"{key} must be a positive integer"):
        PLE(**kwargs)



@pytest.mark.parametrize("levels", [1, 2])
def test_folded_field_embedding_gives_the_reference_and_the_same_gradients(levels):
    """From ``fold_batch`` rows on, level 0's products run through the
    embedding matrix's products with their kernels: the NumPy reference's
    outputs on the embedded input, and the unfolded network's gradients (the
    embedding's too)."""
    from folding import WIDTH, field_layer, one_hot_rows, unfolded_twin
    from weighted import assert_same_function
    from src.layers.fields import fold_from

    def make():
        layer = field_layer()
        return PLE(input_dim=layer.output_dim, input_layer=layer, num_tasks=2, num_levels=levels,
                   task_experts=2, shared_experts=1, expert_units=3, tower_units=[4],
                   init="normal", init_scale=0.5)
    folded = make()
    plain = unfolded_twin(folded, make)
    products = 2 * 2 * 3 + 2 * 3 + 3 + (2 * 2 + 1 if levels > 1 else 0)   # level 0's widths
    assert folded.fold_batch == fold_from(WIDTH, folded.input_dim, products) < 2 ** 31 - 1
    rng = np.random.default_rng(levels)
    x = one_hot_rows(folded.fold_batch + 5, rng)
    embedded = x @ folded.input_layer.matrix().asnumpy()
    np.testing.assert_allclose(folded(Tensor(x)).asnumpy(), _numpy_forward(folded, embedded),
                               rtol=1e-4, atol=1e-5)
    assert_same_function(plain, folded, x, rng.standard_normal((len(x), 2)).astype(np.float32))


def test_tower_output_init_reaches_the_towers():
    assert_tower_output_init(lambda how: PLE(input_dim=6, num_levels=2, task_experts=1,
                                             shared_experts=1, expert_units=4, tower_units=[4],
                                             init="xavier_uniform", tower_output_init=how), 6)


@pytest.mark.parametrize("levels", [1, 2])
def test_prediction_through_the_sparse_input_product(levels):
    from folding import assert_input_product_predicts_the_same

    def make(layer, product):
        return PLE(input_dim=layer.output_dim if layer else 82, input_layer=layer, num_tasks=2,
                   num_levels=levels, task_experts=2, shared_experts=1, expert_units=3,
                   tower_units=[3], init="normal", init_scale=0.5, input_product=product)
    assert_input_product_predicts_the_same(make, np.random.default_rng(12))
