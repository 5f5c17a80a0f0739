"""The task towers' output layer initialisation (``output_init``), and the
check that a network passes its ``tower_output_init`` on to its towers
(:func:`assert_tower_output_init`, used by each model's tests)."""
import mindspore as ms
import numpy as np
import pytest
from mindspore import Tensor, nn

from src.layers.initializers import make_initializer
from src.layers.towers import TaskTowers


def _towers(output_init, seed=3):
    ms.set_seed(seed)
    return TaskTowers(2, 4, [6, 5], 1, make_initializer("xavier_uniform"),
                      output_init=output_init)


def _weights(towers):
    return [w.asnumpy().copy() for w in towers.weights]     # asnumpy shares the updated memory


def test_zero_output_init_zeroes_the_last_layer_alone():
    drawn, zero = _weights(_towers("init")), _weights(_towers("zero"))
    assert np.all(zero[-1] == 0) and zero[-1].shape == (2, 5, 1)
    assert np.any(drawn[-1] != 0)
    for a, b in zip(drawn[:-1], zero[:-1]):       # the hidden layers keep the same draws
        np.testing.assert_array_equal(a, b)


def test_zero_output_init_starts_at_the_bias_for_every_input():
    towers = _towers("zero")
    x = np.random.default_rng(0).standard_normal((7, 2, 4)).astype(np.float32)
    np.testing.assert_array_equal(towers(Tensor(x)).asnumpy(), np.zeros((7, 2, 1), np.float32))


def test_zero_output_init_learns_the_output_weights_first():
    """A first training step moves only the output weights (the hidden
    layers get no gradient through zero weights); the second moves the
    hidden layers too."""
    towers = _towers("zero")
    rng = np.random.default_rng(1)
    x = Tensor(rng.standard_normal((32, 2, 4)).astype(np.float32))
    y = Tensor(rng.integers(0, 2, (32, 2, 1)).astype(np.float32))
    step = nn.TrainOneStepCell(nn.WithLossCell(towers, nn.BCEWithLogitsLoss()),
                               nn.SGD(towers.trainable_params(), learning_rate=0.5))
    start = _weights(towers)
    step(x, y)
    first = _weights(towers)
    np.testing.assert_array_equal(first[0], start[0])
    np.testing.assert_array_equal(first[1], start[1])
    assert np.any(first[2] != 0)
    step(x, y)
    second = _weights(towers)
    assert np.any(second[0] != first[0]) and np.any(second[1] != first[1])


def _train_rare_task(towers, x, y, steps=300):
    step = nn.TrainOneStepCell(nn.WithLossCell(towers, nn.BCEWithLogitsLoss()),
                               nn.Adam(towers.trainable_params(), learning_rate=0.01))
    for _ in range(steps):
        loss = step(Tensor(x), Tensor(y))
    hidden = np.maximum(x[:, 0] @ towers.weights[0].asnumpy()[0] + towers.biases[0].asnumpy()[0], 0)
    return float(loss.asnumpy()), (hidden > 0).mean(0)


def test_output_weights_of_one_sign_switch_a_rare_task_tower_off_and_zero_ones_do_not():
    """The failure ``zero`` prevents (Shared-Bottom's income tower on real
    data, docs/results.md): a task with about 10 % positives, drawn output
    weights all positive. Lowering the logit towards the base rate then
    switches hidden units off, and most end active on almost no rows; from
    zero output weights they stay in use and the loss ends lower."""
    rng = np.random.default_rng(0)
    x = np.abs(rng.standard_normal((2048, 1, 8))).astype(np.float32)
    logit = 3 * (x[:, 0, 0] - x[:, 0, 1]) - 3.5
    y = (rng.random(2048) < 1 / (1 + np.exp(-logit))).astype(np.float32).reshape(-1, 1, 1)
    ms.set_seed(0)
    positive = TaskTowers(1, 8, [8], 1, make_initializer("xavier_uniform"))
    positive.weights[-1].set_data(Tensor(np.abs(positive.weights[-1].asnumpy())))
    ms.set_seed(0)
    zero = TaskTowers(1, 8, [8], 1, make_initializer("xavier_uniform"), output_init="zero")
    loss_positive, active_positive = _train_rare_task(positive, x, y)
    loss_zero, active_zero = _train_rare_task(zero, x, y)
    assert (active_positive < 0.03).sum() >= 4
    assert (active_zero < 0.03).sum() <= 1
    assert loss_zero < loss_positive - 0.03


def test_unknown_output_init_is_refused():
    with pytest.raises(ValueError, match="output_init"):
        _towers("ones")


def assert_tower_output_init(build, input_dim, num_tasks=2):
    """``build(tower_output_init)`` -> a network with ``towers``: with ``zero``
    its towers' output weights are zero and it outputs zeros (the biases'
    start) for any input; with ``init`` they are drawn."""
    x = Tensor(np.random.default_rng(2).standard_normal((5, input_dim)).astype(np.float32))
    zero = build("zero")
    assert np.all(zero.towers.weights[-1].asnumpy() == 0)
    np.testing.assert_array_equal(zero(x).asnumpy(), np.zeros((5, num_tasks), np.float32))
    assert np.any(build("init").towers.weights[-1].asnumpy() != 0)
