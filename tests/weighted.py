"""For gradient tests: a cell ``sum(cell(x) * sens)``, whose gradient with
respect to ``x`` (or to ``cell``'s weights) is ``cell``'s gradient of
``sens``, and the check that two networks compute the same function and the
same weight gradients."""
import mindspore as ms
import numpy as np
from mindspore import Tensor, nn


class WeightedSum(nn.Cell):
    def __init__(self, cell, sens):
        super().__init__()
        self.cell, self.sens = cell, sens

    def construct(self, x):
        return (self.cell(x) * self.sens).sum()


def assert_same_function(first, second, x, weights, params=None, grad_atol=1e-6, out_atol=1e-6):
    """In training mode, ``second`` gives ``first``'s outputs on ``x`` and the
    same gradients of the ``weights``-weighted sum of them for each parameter
    (``params`` of them, if given; every one non-zero). ``x`` and ``weights``:
    arrays or Tensors."""
    x, weights = (v if isinstance(v, Tensor) else Tensor(v) for v in (x, weights))
    outputs, grads = [], []
    for net in (first, second):
        net.set_train(True)
        outputs.append(net(x).asnumpy())
        grad = ms.grad(WeightedSum(net, weights), grad_position=None, weights=net.trainable_params())
        grads.append([g.asnumpy() for g in grad(x)])
    np.testing.assert_allclose(outputs[1], outputs[0], rtol=1e-5, atol=out_atol)
    assert len(grads[0]) == len(grads[1]) == (params or len(first.trainable_params()))
    for a, b in zip(*grads):
        assert np.abs(a).max() > 0
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=grad_atol)
