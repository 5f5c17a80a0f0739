"""Weight initialisers by name, so that every model takes its init from config."""
import mindspore as ms
import numpy as np
from mindspore.common import initializer as init

INITIALIZERS = ("truncated_normal", "normal", "uniform", "xavier_uniform", "xavier_normal",
                "he_uniform", "he_normal", "zeros")


def make_initializer(name, scale=0.01):
    """An initializer object for ``name``; ``scale`` is the sigma (normal and
    truncated normal) or the half range (uniform); the Xavier/He ones ignore it."""
    if name == "truncated_normal":
        return init.TruncatedNormal(sigma=scale)
    if name == "normal":
        return init.Normal(sigma=scale)
    if name == "uniform":
        return init.Uniform(scale=scale)
    if name == "xavier_uniform":
        return init.XavierUniform()
    if name == "xavier_normal":
        return init.XavierNormal()
    if name == "he_uniform":
        return init.HeUniform()
    if name == "he_normal":
        return init.HeNormal()
    if name == "zeros":
        return init.Zero()
    raise ValueError(f"unknown initializer {name!r}; choose one of {', '.join(INITIALIZERS)}")


def init_matrix(initializer, fan_in, fan_out):
    """A ``(fan_in, fan_out)`` float32 array for ``x @ W``.

    MindSpore computes the fans of a 2-D shape as ``(out, in)`` (the Dense
    layout), so the array is drawn in that layout and transposed: Xavier and
    He then see the true fan-in and fan-out.
    """
    return init.initializer(initializer, (fan_out, fan_in), ms.float32).init_data().asnumpy().T.copy()


def init_stack(initializer, count, fan_in, fan_out):
    """``count`` independent ``(fan_in, fan_out)`` matrices stacked on axis 0."""
    return np.stack([init_matrix(initializer, fan_in, fan_out) for _ in range(count)])
