"""Criteo-shaped network inputs for the tests of the Criteo models' networks,
and the check that a network predicts through a CPU kernel as through its graph."""
import numpy as np
from mindspore import Tensor

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
