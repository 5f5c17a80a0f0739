"""Criteo-shaped network inputs for the tests of the Criteo models' networks,
and the checks that a network predicts, or trains, through a CPU kernel as
through its graph."""
import mindspore
import numpy as np
from mindspore import Tensor, nn

CARD = [30, 5, 70, 11]
OFFSETS = np.cumsum([0] + CARD[:-1])


def criteo_inputs(n=6, seed=0, num_dense=13):
    """``(cat, dense)``: global table ids of CARD's fields and dense features."""
    rng = np.random.default_rng(seed)
    cat = (np.stack([rng.integers(0, c, n) for c in CARD], 1) + OFFSETS).astype(np.int32)
    return cat, rng.random((n, num_dense)).astype(np.float32)


def assert_kernel_predicts_as_graph(plain, kernel, num_dense=13):
    """``kernel`` (``plain``'s weights, a prediction kernel) gives ``plain``'s
    outputs in eval mode, at a batch of 700 rows and of 1, and in training,
    where both run the same graph, exactly ``plain``'s."""
    for batch in (700, 1):
        cat, dense = criteo_inputs(n=batch, num_dense=num_dense, seed=batch)
        outs = []
        for train in (False, True):
            for net in (plain, kernel):
                net.set_train(train)
                outs.append(net(Tensor(cat), Tensor(dense)).asnumpy())
        np.testing.assert_allclose(outs[1], outs[0], rtol=1e-5, atol=1e-5)
        np.testing.assert_array_equal(outs[3], outs[2])          # training: the same graph


class _RowsLoss(nn.Cell):
    """A network's training forward (unique rows, their inverse) and a squared loss."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def construct(self, rows, inverse, dense, target):
        return ((self.net.forward_rows(rows, inverse, dense) - target) ** 2).mean()


def assert_kernel_trains_as_graph(plain, kernel, num_dense=13):
    """``kernel`` (``plain``'s weights, a training kernel) gives ``plain``'s
    loss and gradients (the batch's unique rows' and the other weights') in
    :meth:`forward_rows` on 300 rows; returns ``plain``'s weights' gradients."""
    mindspore.load_param_into_net(kernel, {p.name: p for p in plain.get_parameters()},
                                  strict_load=True)
    cat, dense = criteo_inputs(n=300, seed=5, num_dense=num_dense)
    ids, inverse = np.unique(plain.table_ids(cat), return_inverse=True)
    rows = plain.embedding.weight.asnumpy()[ids]
    target = np.random.default_rng(6).random((300, 1)).astype(np.float32)
    args = (Tensor(rows), Tensor(inverse.reshape(len(cat), -1).astype(np.int32)), Tensor(dense),
            Tensor(target))
    results = []
    for net in (plain, kernel):
        net.set_train(True)
        weights = [p for p in net.trainable_params() if "embedding" not in p.name]
        loss, (d_rows, d_weights) = mindspore.value_and_grad(
            _RowsLoss(net), grad_position=0, weights=weights)(*args)
        results.append((loss.asnumpy(), d_rows.asnumpy(), [g.asnumpy() for g in d_weights]))
    (loss, d_rows, d_weights), (k_loss, k_rows, k_weights) = results
    np.testing.assert_allclose(k_loss, loss, rtol=1e-5)
    assert np.abs(d_rows).max() > 0
    np.testing.assert_allclose(k_rows, d_rows, rtol=1e-4, atol=1e-6)
    for got, want in zip(k_weights, d_weights):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)
    return d_weights
