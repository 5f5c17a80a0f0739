"""Optimizers by name, fed a per-step learning-rate array."""
from mindspore import Tensor, nn, ops

OPTIMIZERS = ("adam", "sgd", "momentum", "adagrad")

_descend = ops.MultitypeFuncGraph("descend")


@_descend.register("Function", "Tensor", "Tensor", "Tensor")
def _descend_one(apply, lr, param, grad):
    return ops.depend(True, apply(param, lr, grad))


class GradientDescent(nn.Optimizer):
    """Plain SGD, ``p <- p - lr * g``, one in-place ``ApplyGradientDescent``
    per parameter.

    ``nn.SGD`` at momentum 0 computes the same update, but keeps two
    parameter-sized buffers (``accum`` and ``stat``) and reads and writes them
    every step. Weight decay and a static loss scale are applied to the
    gradients first, as in every MindSpore optimizer. Checkpoints hold no
    optimizer state for it (those of ``nn.SGD`` still load: their ``accum``
    and ``stat`` entries are ignored).
    """

    def __init__(self, params, learning_rate, weight_decay=0.0, loss_scale=1.0):
        super().__init__(learning_rate, params, weight_decay, loss_scale)
        if self.is_group_lr or self.dynamic_weight_decay:
            raise ValueError("GradientDescent takes one learning-rate schedule and a constant "
                             "weight decay")
        self.apply = ops.ApplyGradientDescent()
        self.hyper_map = ops.HyperMap()

    def construct(self, gradients):
        gradients = self.scale_grad(self.decay_weight(gradients))
        lr = self.get_lr()
        self.assignadd(self.global_step, self.global_step_increase_tensor)
        return self.hyper_map(ops.partial(_descend, self.apply, lr), self._parameters, gradients)


def build_optimizer(name, params, lr, weight_decay=0.0, adam_beta1=0.9, adam_beta2=0.999,
                    adam_eps=1e-8, momentum=0.9, loss_scale=1.0, dense_update="graph", threads=1):
    """An optimizer over ``params`` with the per-step learning rates ``lr``.

    ``loss_scale`` is the static loss scale the gradients still carry when
    they reach the optimizer (1.0 when the train step unscales them itself).
    ``dense_update``: ``graph`` (MindSpore's operators) or ``kernel`` (one C++
    CPU kernel per step, :mod:`src.engine.dense_update`, run on ``threads``
    threads).
    """
    if dense_update not in ("graph", "kernel"):
        raise ValueError(f"dense_update must be graph or kernel, got {dense_update!r}")
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; choose one of {', '.join(OPTIMIZERS)}")
    lr = Tensor(lr)
    if dense_update == "kernel":
        from src.engine.dense_update import NATIVE
        extra = {"adam": dict(beta1=adam_beta1, beta2=adam_beta2, eps=adam_eps),
                 "momentum": dict(momentum=momentum)}.get(name, {})
        return NATIVE[name](params, lr, weight_decay=weight_decay, loss_scale=loss_scale,
                            threads=threads, **extra)
    if name == "adam":
        return nn.Adam(params, learning_rate=lr, beta1=adam_beta1, beta2=adam_beta2, eps=adam_eps,
                       weight_decay=weight_decay, loss_scale=loss_scale)
    if name == "sgd":
        return GradientDescent(params, learning_rate=lr, weight_decay=weight_decay,
                               loss_scale=loss_scale)
    if name == "momentum":
        return nn.Momentum(params, learning_rate=lr, momentum=momentum, weight_decay=weight_decay,
                           loss_scale=loss_scale)
    return nn.Adagrad(params, learning_rate=lr, weight_decay=weight_decay, loss_scale=loss_scale)
