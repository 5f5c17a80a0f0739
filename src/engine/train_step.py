"""Cell-based train steps (GRAPH_MODE): gradients, clipping, loss scaling.

A plain ``@ms.jit`` function step measured about 8x slower on CPU than a
Cell, so both steps are Cells compiled once.
"""
import mindspore as ms
from mindspore import Tensor, nn, ops

_square_sum = ops.MultitypeFuncGraph("square_sum")
_reduce_sum = ops.ReduceSum(keep_dims=False)


@_square_sum.register("Tensor")
def _sum_of_squares(grad):
    # first over the leading axis, then the rest: MindSpore's CPU ReduceSum
    # over all axes of a matrix at once is several times slower (bench/notes.md)
    squares = ops.square(grad)
    if squares.ndim > 1:
        squares = _reduce_sum(squares, 0)
    return ops.cast(_reduce_sum(squares, ()), ms.float32).expand_dims(0)      # (1,)


# ``hyper_map(ops.partial(scale_by, factor), grads)``: every gradient times a
# float32 factor, in the gradient's dtype
scale_by = ops.MultitypeFuncGraph("scale_by")


@scale_by.register("Tensor", "Tensor")
def _scale(factor, grad):
    return grad * ops.cast(factor, ops.dtype(grad))


def clip_by_global_norm(grads, clip_norm):
    """``grads`` scaled by ``clip_norm / max(global_norm, clip_norm)``
    (``clip_norm``: a ``(1,)`` float32 tensor), as ``ops.clip_by_global_norm``
    (deprecated in MindSpore 2.10) does, with one multiplication per gradient
    instead of two.

    Measured on CPU (bench/notes.md): norms kept as ``(1,)`` tensors run this
    way; the same arithmetic on ``()`` scalars, with a Python float bound or
    over the gradients concatenated made a whole MMoE step at batch 2048 a
    third slower, not only the clipping."""
    norm = ops.sqrt(ops.addn(ops.HyperMap()(_square_sum, grads)))
    factor = clip_norm / ops.maximum(norm, clip_norm)
    return ops.HyperMap()(ops.partial(scale_by, factor), grads)


_all_finite = ops.MultitypeFuncGraph("all_finite")


@_all_finite.register("Tensor")
def _finite(grad):
    return ops.isfinite(grad).all()


class TrainStep(nn.TrainOneStepCell):
    """Forward, backward, optional global-norm clipping, update; returns the loss."""

    def __init__(self, net_with_loss, optimizer, clip_norm=0.0):
        super().__init__(net_with_loss, optimizer)
        self.clip = clip_norm > 0
        self.clip_norm = Tensor([float(clip_norm) if clip_norm > 0 else 1.0], ms.float32)

    def construct(self, *inputs):
        loss = self.network(*inputs)
        sens = ops.fill(loss.dtype, loss.shape, 1.0)
        grads = self.grad(self.network, self.weights)(*inputs, sens)
        grads = self.grad_reducer(grads)
        if self.clip:
            grads = clip_by_global_norm(grads, self.clip_norm)
        return ops.depend(loss, self.optimizer(grads))


class LossScaleTrainStep(nn.TrainOneStepWithLossScaleCell):
    """Train step for float16 on Ascend/GPU: the loss is scaled before the
    backward pass, gradients are unscaled, checked for overflow (the update is
    skipped and a dynamic scale lowered when they overflow) and clipped."""

    def __init__(self, net_with_loss, optimizer, scale_sense, clip_norm=0.0):
        super().__init__(net_with_loss, optimizer, scale_sense)
        self.clip = clip_norm > 0
        self.clip_norm = Tensor([float(clip_norm) if clip_norm > 0 else 1.0], ms.float32)

    def construct(self, *inputs):
        loss = self.network(*inputs)
        scaling_sens = self.scale_sense
        sens = ops.ones_like(loss) * ops.cast(scaling_sens, ops.dtype(loss))
        grads = self.grad(self.network, self.weights)(*inputs, sens)
        grads = self.hyper_map(ops.partial(scale_by, ops.Reciprocal()(scaling_sens)), grads)
        grads = self.grad_reducer(grads)
        overflow = ops.logical_not(ops.stack(self.hyper_map(_all_finite, grads)).all())
        if self.is_distributed:
            overflow = self.allreduce(ops.cast(overflow, ms.float32)) > 0
        overflow = self.process_loss_scale(overflow)
        if self.clip:
            grads = clip_by_global_norm(grads, self.clip_norm)
        if not overflow:
            loss = ops.depend(loss, self.optimizer(grads))
        return loss


class MultiStep(nn.Cell):
    """``steps`` train steps in one graph: ``MultiStep(step, k)(*inputs)``
    takes the inputs of ``k`` batches one after the other (each batch's
    tensors in the order ``step`` takes them) and returns the ``k`` losses.

    The steps run in order, each on the parameters and optimizer state the
    one before left (MindSpore orders a graph's parameter reads and writes as
    written), so the result is that of ``k`` separate calls. Whether it is
    faster depends on the model, the batch and the CPU (bench/notes.md).

    Every random op of ``step`` would draw the same numbers in each of the
    ``k`` copies within a call (a graph gives each op instance one seeded
    stream): :func:`random_cells` lists the cells that make this unusable.
    """

    def __init__(self, step, steps):
        super().__init__(auto_prefix=False)      # the parameters keep their names
        if int(steps) < 2:
            raise ValueError(f"MultiStep runs 2 or more steps per call, got {steps}")
        self.step, self.steps = step, int(steps)

    def construct(self, *inputs):
        n = len(inputs) // self.steps
        losses = ()
        for i in range(self.steps):
            losses = losses + (self.step(*inputs[i * n:(i + 1) * n]),)
        return ops.stack(losses)


def random_cells(network):
    """Names of the cells of ``network`` that draw random numbers in training:
    dropout with a positive rate, and the project's cells that say so
    (``draws_random``, e.g. the fused bias, ReLU and dropout kernel's).
    ``nn.Dropout(p=...)`` keeps a meaningless ``keep_prob`` of 0.5; only a
    cell made with ``keep_prob`` has no ``p``."""
    def drops(cell):
        if getattr(cell, "draws_random", False):
            return True
        if not isinstance(cell, nn.Dropout):
            return False
        if getattr(cell, "p", None) is not None:
            return cell.p > 0
        return (cell.keep_prob or 1) < 1
    return [name for name, cell in network.cells_and_names() if drops(cell)]


def build_train_step(net_with_loss, optimizer, loss_scale_mode="none", loss_scale=1.0,
                     scale_window=1000, clip_norm=0.0):
    """``loss_scale_mode``: ``none`` (float32 on CPU), ``static`` (a fixed
    scale) or ``dynamic`` (start at ``loss_scale``, halve on overflow, double
    after ``scale_window`` clean steps)."""
    if not clip_norm >= 0:
        raise ValueError(f"clip_norm must be 0 (no clipping) or positive, got {clip_norm}")
    if getattr(optimizer, "fuses_clipping", False):
        # the update kernel clips (src/engine/dense_update.py): one operator, not one per weight
        optimizer.set_clip_norm(clip_norm)
        clip_norm = 0.0
    if loss_scale_mode == "none":
        step = TrainStep(net_with_loss, optimizer, clip_norm)
    elif loss_scale_mode == "static":
        step = LossScaleTrainStep(net_with_loss, optimizer, Tensor(float(loss_scale), ms.float32),
                                  clip_norm)
    elif loss_scale_mode == "dynamic":
        manager = nn.DynamicLossScaleUpdateCell(loss_scale_value=float(loss_scale), scale_factor=2,
                                                scale_window=int(scale_window))
        step = LossScaleTrainStep(net_with_loss, optimizer, manager, clip_norm)
    else:
        raise ValueError(f"unknown loss_scale_mode {loss_scale_mode!r}; choose none, static or dynamic")
    step.set_train(True)
    return step
