"""Optimizers by name, fed a per-step learning-rate array."""
from mindspore import Tensor, nn

OPTIMIZERS = ("adam", "sgd", "momentum", "adagrad")


def build_optimizer(name, params, lr, weight_decay=0.0, adam_beta1=0.9, adam_beta2=0.999,
                    adam_eps=1e-8, momentum=0.9, loss_scale=1.0):
    """An optimizer over ``params`` with the per-step learning rates ``lr``.

    ``loss_scale`` is the static loss scale the gradients still carry when
    they reach the optimizer (1.0 when the train step unscales them itself).
    """
    lr = Tensor(lr)
    if name == "adam":
        return nn.Adam(params, learning_rate=lr, beta1=adam_beta1, beta2=adam_beta2, eps=adam_eps,
                       weight_decay=weight_decay, loss_scale=loss_scale)
    if name == "sgd":
        return nn.SGD(params, learning_rate=lr, weight_decay=weight_decay, loss_scale=loss_scale)
    if name == "momentum":
        return nn.Momentum(params, learning_rate=lr, momentum=momentum, weight_decay=weight_decay,
                           loss_scale=loss_scale)
    if name == "adagrad":
        return nn.Adagrad(params, learning_rate=lr, weight_decay=weight_decay, loss_scale=loss_scale)
    raise ValueError(f"unknown optimizer {name!r}; choose one of {', '.join(OPTIMIZERS)}")
