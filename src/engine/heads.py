"""What the engine puts around a network: the losses, the train-time
wrappers ``(inputs..., labels) -> loss`` and the predictor ``inputs ->
probabilities`` that eval.py runs and export.py exports. Which of them a model
gets follows from its data set's task type and the interfaces its network
declares (:mod:`src.engine.interfaces`), never from its name."""
import mindspore as ms
import numpy as np
from mindspore import Parameter, Tensor, nn, ops

from src.engine.interfaces import require


class MultiTaskBCELoss(nn.Cell):
    """Sigmoid cross-entropy per task on ``(B, T)`` logits, averaged over the
    batch and summed over tasks with optional task weights."""

    def __init__(self, task_weights):
        super().__init__()
        self.bce = nn.BCEWithLogitsLoss(reduction="none")
        self.weights = ops.stop_gradient(ops.Tensor(np.asarray(task_weights, np.float32)))

    def construct(self, logits, labels):
        per_task = self.bce(logits, labels).mean(axis=0)
        return (per_task * self.weights).sum()


class MultiTaskSoftmaxCELoss(nn.Cell):
    """Softmax cross-entropy per task on ``(B, T, C)`` logits and ``(B, T)``
    integer labels, averaged over the batch and summed over tasks with
    optional task weights. The one softmax is applied here, on logits."""

    def __init__(self, task_weights):
        super().__init__()
        self.ce = nn.CrossEntropyLoss(reduction="none")
        self.weights = ops.stop_gradient(ops.Tensor(np.asarray(task_weights, np.float32)))
        self.num_tasks = len(task_weights)

    def construct(self, logits, labels):
        classes = logits.shape[-1]
        per_row = self.ce(logits.reshape((-1, classes)), ops.cast(labels, ms.int32).reshape((-1,)))
        per_task = per_row.reshape((-1, self.num_tasks)).mean(axis=0)
        return (per_task * self.weights).sum()


def scheduled_weight(weight, warmup_epochs):
    """``progress -> weight``, where ``progress`` counts epochs of training
    done by the end of the step being weighted (fractional: step ``s`` of an
    epoch of ``n`` steps in epoch ``e`` is ``e - 1 + s / n``). Constant, or
    ramped linearly from 0 over the first ``warmup_epochs`` epochs, so the
    ramp advances every step. ``at.ramp_epochs`` says until when it changes."""
    if weight < 0 or warmup_epochs < 0:
        raise ValueError(f"regulariser weight and warm-up must not be negative, got {weight}, "
                         f"{warmup_epochs}")

    def at(progress):
        if warmup_epochs <= 0:
            return float(weight)
        return float(weight) * min(1.0, progress / float(warmup_epochs))
    at.ramp_epochs = float(warmup_epochs)
    return at


class NetWithLoss(nn.Cell):
    """``(inputs..., labels) -> loss`` for the train step."""

    def __init__(self, network, loss_fn):
        super().__init__(auto_prefix=False)
        self.network = network
        self.loss_fn = loss_fn

    def construct(self, *args):
        logits = ops.cast(self.network(*args[:-1]), ms.float32)  # float16 under amp
        return self.loss_fn(logits, args[-1])


class NetWithRegLoss(NetWithLoss):
    """``(inputs..., labels) -> loss + w * regulariser`` for networks whose
    ``forward_with_reg`` returns ``(logits, regulariser)`` (DSelect-k's gates).

    ``w`` follows a schedule over training progress (``epochs done -> weight``,
    :func:`scheduled_weight`); the trainer calls :meth:`set_progress` before
    every graph call while the schedule changes. The weight lives in a
    non-trainable parameter, so the compiled step does not change.
    """

    def __init__(self, network, loss_fn, schedule):
        super().__init__(network, loss_fn)
        self.schedule = schedule
        self.ramp_epochs = float(getattr(schedule, "ramp_epochs", 0.0))
        self._weight = float(schedule(self.ramp_epochs))
        self.reg_weight = Parameter(Tensor(self._weight, ms.float32), name="reg_weight",
                                    requires_grad=False)

    def set_progress(self, progress):
        """Weight the next step as ending at ``progress`` epochs of training."""
        weight = float(self.schedule(progress))
        if weight != self._weight:
            self.reg_weight.set_data(Tensor(weight, ms.float32))
            self._weight = weight

    def construct(self, *args):
        logits, reg = self.network.forward_with_reg(*args[:-1])
        loss = self.loss_fn(ops.cast(logits, ms.float32), args[-1])
        return loss + self.reg_weight * ops.cast(reg, ms.float32)


class Predictor(nn.Cell):
    """``inputs -> probabilities``: the network followed by its output activation.
    This is what eval.py runs and what export.py exports."""

    def __init__(self, network, activation):
        super().__init__(auto_prefix=False)
        self.network = network
        self.activation = activation

    def construct(self, *inputs):
        return self.activation(ops.cast(self.network(*inputs), ms.float32))


def task_weights(cfg, tasks):
    """``cfg.task_weights`` (default 1 per task), checked against the tasks."""
    weights = cfg.get("task_weights") or [1.0] * len(tasks)
    if len(weights) != len(tasks):
        raise ValueError(f"task_weights has {len(weights)} values for {len(tasks)} tasks {tasks}")
    return weights


LOSSES = {"binary": MultiTaskBCELoss, "multiclass": MultiTaskSoftmaxCELoss}
ACTIVATIONS = {"binary": nn.Sigmoid, "multiclass": lambda: nn.Softmax(axis=-1)}


def build_loss(task_type, cfg, tasks):
    """The loss of a data set's task type, weighted by ``cfg.task_weights``."""
    return LOSSES[task_type](task_weights(cfg, tasks))


def predictor(network, task_type):
    """``inputs -> probabilities`` for a network producing logits of ``task_type``."""
    return Predictor(network, ACTIVATIONS[task_type]())


def net_with_loss(network, loss, cfg, sparse=False, reg_schedule=None):
    """The train-time wrapper of ``network``: row-wise embedding training for a
    :class:`~src.engine.interfaces.SparseTable` network, the regularised loss
    for a :class:`~src.engine.interfaces.Regularised` one with a schedule,
    else the plain loss."""
    if sparse:
        from src.engine.sparse import NetWithRowsLoss
        require(network, "SparseTable")
        return NetWithRowsLoss(network, loss, cfg.embedding_l2)
    if reg_schedule is not None:
        require(network, "Regularised")
        return NetWithRegLoss(network, loss, reg_schedule(cfg))
    return NetWithLoss(network, loss)
