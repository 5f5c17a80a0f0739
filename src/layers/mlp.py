"""Multi-layer perceptrons shared by the CTR models."""
import math

import numpy as np
from mindspore import Parameter, Tensor, nn, ops

from src.layers.initializers import init_matrix


def reference_dense(fan_in, fan_out, rng):
    """The reference DLRM's Linear initialisation: ``W ~ N(0, sqrt(2/(in+out)))``,
    ``b ~ N(0, sqrt(1/out))``; returns ``(W (in, out), b (out,))`` float32."""
    weight = rng.normal(0.0, math.sqrt(2.0 / (fan_in + fan_out)), (fan_in, fan_out))
    bias = rng.normal(0.0, math.sqrt(1.0 / fan_out), fan_out)
    return weight.astype(np.float32), bias.astype(np.float32)


class Dense(nn.Cell):
    """``x @ W + b`` with ``W`` stored ``(in, out)`` (as the towers and experts are).

    The MatMul primitive, not the ``@`` operator: the operator's gradient
    (MatMulExt) transposes its operands explicitly, which took a fifth of a
    DLRM step on CPU; MatMul's gradient passes transpose flags instead. The
    bias: an ``Add`` in training (``BiasAdd``'s gradient was the slower) and
    ``BiasAdd`` in prediction (the faster kernel on CPU at large batches;
    bench/notes.md); the same sums. ``bias_relu``: a cell taking ``(y,
    bias)`` to ``max(y + bias, 0)`` in one pass
    (:class:`~src.layers.bias_relu.BiasRelu`), used in prediction instead of
    ``BiasAdd``; the layer's ReLU is then done (see :class:`HiddenReLU`).
    ``train_bias_relu``: such a cell with a gradient, used in training
    instead of the ``Add``."""

    def __init__(self, weight, bias, bias_relu=None, train_bias_relu=None):
        super().__init__()
        self.weight = Parameter(Tensor(weight), name="weight")
        self.bias = Parameter(Tensor(bias), name="bias")
        self.matmul = ops.MatMul()
        self.bias_add = ops.BiasAdd()
        self.bias_relu = bias_relu
        self.train_bias_relu = train_bias_relu

    def construct(self, x):
        return self.finish(self.matmul(x, self.weight))

    def finish(self, y):
        """The layer after its product ``y = x @ W``: the bias (and, through
        ``bias_relu`` / ``train_bias_relu``, the ReLU); for a caller that
        computes the product another way (folded, see
        :class:`src.layers.fields.FieldEmbedding`)."""
        if self.training:
            if self.train_bias_relu is not None:
                return self.train_bias_relu(y, self.bias)
            return y + self.bias
        if self.bias_relu is not None:
            return self.bias_relu(y, self.bias)
        return self.bias_add(y, self.bias)


class HiddenReLU(nn.Cell):
    """The ReLU after a :class:`Dense` whose prediction (``in_predict``
    False) or training (``in_train`` False) already applies it (its
    ``bias_relu`` or ``train_bias_relu``): a ReLU where it does not, nothing
    where it does."""

    def __init__(self, in_train=True, in_predict=False):
        super().__init__()
        self.relu = ops.ReLU()
        self.in_train, self.in_predict = bool(in_train), bool(in_predict)

    def construct(self, x):
        if self.training:
            if self.in_train:
                return self.relu(x)
            return x
        if self.in_predict:
            return self.relu(x)
        return x


class MLP(nn.Cell):
    """``dims[0] -> dims[1] -> ... -> dims[-1]`` with ReLU after every layer but
    (unless ``last_activation``) the last.

    Args:
        dims: layer widths, input first.
        init: ``"reference_dlrm"`` (see :func:`reference_dense`) or a MindSpore
            initializer object (biases start at zero).
        dropout: dropout rate after each hidden activation, active only in training.
        batch_norm: batch norm before each hidden activation.
        last_activation: ReLU after the last layer too (DLRM's bottom MLP).
        seed: seed of the reference initialisation.
        bias_relu: a cell doing a layer's bias and ReLU in one pass
            (:class:`~src.layers.bias_relu.BiasRelu`, config key
            ``predict_mlp``), used in prediction by every layer with a ReLU
            right after it (without batch norm).
        train_bias_relu: the same with a gradient (config key
            ``train_mlp``), used in training by the same layers; a layer
            followed by dropout takes a copy doing the dropout too
            (:meth:`~src.layers.bias_relu.BiasRelu.with_dropout`). The
            parameters are the same either way.

    >>> MLP([13, 64, 16], "reference_dlrm")(ops.ones((4, 13), ms.float32)).shape
    (4, 16)
    """

    def __init__(self, dims, init, dropout=0.0, batch_norm=False, last_activation=False, seed=0,
                 bias_relu=None, train_bias_relu=None):
        super().__init__()
        dims = [int(d) for d in dims]
        if len(dims) < 2 or min(dims) < 1:
            raise ValueError(f"an MLP needs an input width and at least one positive layer width, "
                             f"got {dims}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must lie in [0, 1), got {dropout}")
        rng = np.random.default_rng(seed)
        layers = []
        for i, (fan_in, fan_out) in enumerate(zip(dims[:-1], dims[1:])):
            if init == "reference_dlrm":
                weight, bias = reference_dense(fan_in, fan_out, rng)
            else:
                weight, bias = init_matrix(init, fan_in, fan_out), np.zeros(fan_out, np.float32)
            hidden = i < len(dims) - 2
            relu = hidden or last_activation
            fusable = relu and not (hidden and batch_norm)
            fused = bias_relu if fusable else None
            train_fused = train_bias_relu if fusable else None
            fused_dropout = train_fused is not None and hidden and dropout > 0
            if fused_dropout:                 # the layer's dropout in the same pass
                train_fused = train_fused.with_dropout(dropout)
            layers.append(Dense(weight, bias, bias_relu=fused, train_bias_relu=train_fused))
            if hidden and batch_norm:
                layers.append(nn.BatchNorm1d(fan_out))
            if relu:
                layers.append(nn.ReLU() if fused is None and train_fused is None else
                              HiddenReLU(in_train=train_fused is None, in_predict=fused is None))
            if hidden and dropout > 0:        # (an identity in its place keeps the names)
                layers.append(nn.Identity() if fused_dropout else nn.Dropout(p=dropout))
        self.layers = nn.SequentialCell(layers)
        self.out_dim = dims[-1]

    def construct(self, x):
        return self.layers(x)
