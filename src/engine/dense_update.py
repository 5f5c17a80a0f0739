"""Every dense weight's update in one CPU kernel per step: MindSpore custom
operators (AOT, C++: ``dense_update.cc``) in place of an optimizer's
per-weight operators and the train step's clipping.

MindSpore's optimizers issue one update operator per weight, and the
global-norm clipping three or four more per weight; on CPU each operator
costs the runtime's overhead between kernels, which in a small-batch step
can outweigh the work (bench/notes.md). :class:`NativeSgd`,
:class:`NativeMomentum`, :class:`NativeAdagrad` and :class:`NativeAdam` are
:class:`~src.engine.optim.GradientDescent`, ``nn.Momentum``, ``nn.Adagrad``
and ``nn.Adam`` with the same parameters and state (checkpoints load either
way), whose update, with the clipping and weight decay, is one kernel writing
the weights and their state in place. Config key ``dense_update: kernel``;
float32, CPU. The library is compiled with the system's C++ compiler on
first use and cached (:mod:`src.engine.native`).
"""
import os

import mindspore as ms
import numpy as np
from mindspore import Tensor, nn, ops
from mindspore.ops import signature as sig

from src.engine.native import build_library, require_cpu
from src.engine.optim import GradientDescent

SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "dense_update.cc")
FALLBACK = "set dense_update: graph"


def library_path():
    """The compiled dense-update library (:func:`src.engine.native.build_library`)."""
    return build_library(SOURCE, "dense_update", FALLBACK, ("-pthread",))


def _one(*_):
    return (1,)


def _int32(*_):
    return ms.int32


def dense_update_op(kernel, weights, scalars, states):
    """The custom operator ``kernel`` (``DenseSgd``, ``DenseMomentum``,
    ``DenseAdagrad``, ``DenseAdam``: see ``dense_update.cc``) for ``weights``
    parameters, ``scalars`` (1,) state inputs before the weights (Adam's beta
    powers) and ``states`` state tensors per weight. The inputs it writes in
    place (the step, the scalars, the weights and their states) are declared
    so, as MindSpore's ``Assign`` and ``ScatterUpdate`` are, so that the
    parameters are not copied before it."""
    head = 5 + scalars                      # layout, hyper, decay, lr, step, scalars
    count = head + (2 + states) * weights
    written = {4} | set(range(5, head)) | set(range(head, head + weights)) \
        | set(range(head + 2 * weights, count))
    signature = tuple(sig.make_sig(f"input{i}", sig.sig_rw.RW_WRITE if i in written else sig.sig_rw.RW_READ)
                      for i in range(count))
    writer = type(f"{kernel}Op", (ops.Custom,), {"__mindspore_signature__": signature})
    op = writer(f"{library_path()}:{kernel}", out_shape=_one, out_dtype=_int32, func_type="aot")
    op.add_prim_attr("side_effect_mem", True)
    return op


class _Native:
    """What the kernel optimizers share: the checks, the operator, the
    layout, the learning-rate table, the per-weight decay and the clipping
    bound. Each class's ``construct`` passes its own state."""

    fuses_clipping = True

    def _native_setup(self, kernel, threads, constants=(), scalars=0, states=0):
        name = type(self).__name__
        require_cpu("dense_update: kernel", FALLBACK)
        if self.is_group or self.is_group_lr or self.dynamic_weight_decay:
            raise ValueError(f"{name}: one parameter group, one learning-rate schedule and a "
                             f"constant weight decay; or {FALLBACK}")
        if float(self.loss_scale) != 1.0:
            raise ValueError(f"{name}: gradients must reach the optimizer unscaled (loss_scale 1); "
                             f"or {FALLBACK}")
        for p in self._parameters:
            if p.dtype != ms.float32:
                raise ValueError(f"{name}: the kernel updates float32 weights; {p.name} is {p.dtype} "
                                 f"(amp_level must be O0); or {FALLBACK}")
        weights = len(self._parameters)
        self.layout = Tensor(np.array([weights, max(1, int(threads))], np.int32))
        rate = float(self.weight_decay) if self.exec_weight_decay else 0.0
        self.decay = Tensor(np.array([rate if flag else 0.0 for flag in self.decay_flags], np.float32))
        # the per-step table (a 1-D learning rate) or the one constant rate
        table = self.learning_rate.learning_rate if self.dynamic_lr else self.learning_rate
        self.rates = table if table.ndim == 1 else table.reshape((1,))
        self._constants = [float(c) for c in constants]
        self.set_clip_norm(0.0)
        self.update = dense_update_op(kernel, weights, scalars, states)

    def set_clip_norm(self, clip_norm):
        """Clip the gradients to this global norm in the kernel (0: do not);
        before the first step (the graph takes it as a constant)."""
        self.clip_norm = float(clip_norm)
        self.hyper = Tensor(np.array([self.clip_norm] + self._constants, np.float32))

    def _head(self):
        return (self.layout, self.hyper, self.decay, self.rates, self.global_step)


class NativeSgd(GradientDescent, _Native):
    """:class:`~src.engine.optim.GradientDescent`, one ``DenseSgd`` kernel a step."""

    def __init__(self, params, learning_rate, weight_decay=0.0, loss_scale=1.0, threads=1):
        super().__init__(params, learning_rate, weight_decay=weight_decay, loss_scale=loss_scale)
        self._native_setup("DenseSgd", threads)

    def construct(self, gradients):
        return self.update(*(self._head() + tuple(self._parameters) + gradients))


class NativeMomentum(nn.Momentum, _Native):
    """``nn.Momentum`` (not Nesterov's), one ``DenseMomentum`` kernel a step."""

    def __init__(self, params, learning_rate, momentum, weight_decay=0.0, loss_scale=1.0,
                 threads=1):
        super().__init__(params, learning_rate, momentum, weight_decay=weight_decay,
                         loss_scale=loss_scale)
        self._native_setup("DenseMomentum", threads, constants=(momentum,), states=1)

    def construct(self, gradients):
        return self.update(*(self._head() + tuple(self._parameters) + gradients
                             + tuple(self.moments)))


class NativeAdagrad(nn.Adagrad, _Native):
    """``nn.Adagrad`` (accumulators from 0.1), one ``DenseAdagrad`` kernel a step."""

    def __init__(self, params, learning_rate, weight_decay=0.0, loss_scale=1.0, threads=1):
        super().__init__(params, learning_rate=learning_rate, weight_decay=weight_decay,
                         loss_scale=loss_scale)
        self._native_setup("DenseAdagrad", threads, states=1)

    def construct(self, gradients):
        return self.update(*(self._head() + tuple(self._parameters) + gradients + tuple(self.accum)))


class NativeAdam(nn.Adam, _Native):
    """``nn.Adam`` (no AMSGrad, Nesterov or lazy form), one ``DenseAdam``
    kernel a step."""

    def __init__(self, params, learning_rate, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0,
                 loss_scale=1.0, threads=1):
        super().__init__(params, learning_rate=learning_rate, beta1=beta1, beta2=beta2, eps=eps,
                         weight_decay=weight_decay, loss_scale=loss_scale)
        self._native_setup("DenseAdam", threads, constants=(beta1, beta2, eps), scalars=2, states=2)

    def construct(self, gradients):
        head = self._head() + (self.beta1_power, self.beta2_power)
        return self.update(*(head + tuple(self._parameters) + gradients + tuple(self.moment1)
                             + tuple(self.moment2)))


NATIVE = {"sgd": NativeSgd, "momentum": NativeMomentum, "adagrad": NativeAdagrad, "adam": NativeAdam}
