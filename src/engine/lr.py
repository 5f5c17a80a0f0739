"""Learning-rate schedules, expanded to one value per training step."""
import math

import numpy as np

SCHEDULES = ("constant", "warmup", "noam", "exponential", "cosine")


def learning_rates(schedule, base_lr, steps_per_epoch, epochs, warmup_epochs=0.0,
                   decay_rate=0.1, min_lr=0.0):
    """An array of ``steps_per_epoch * epochs`` float32 learning rates.

    - ``constant``: ``base_lr`` throughout;
    - ``warmup``: linear warm-up from ``base_lr / a`` to ``base_lr`` over
      ``a = warmup_epochs`` epochs of steps, then constant;
    - ``noam``: the upstream MMoE schedule
      ``base_lr * sqrt(a) * min((s+1) * a^-1.5, (s+1)^-0.5)`` with ``a`` warm-up
      steps: a linear rise to ``base_lr`` at step ``a``, then ``1/sqrt(s)`` decay;
    - ``exponential``: ``base_lr * decay_rate ** (s / total)`` after warm-up;
    - ``cosine``: cosine decay from ``base_lr`` to ``min_lr`` after warm-up.
    """
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown lr schedule {schedule!r}; choose one of {', '.join(SCHEDULES)}")
    if not base_lr > 0:                 # also refuses NaN
        raise ValueError(f"learning rate must be positive, got {base_lr}")
    if not warmup_epochs >= 0:
        raise ValueError(f"warmup_epochs must not be negative, got {warmup_epochs}")
    total = int(steps_per_epoch) * int(epochs)
    if total <= 0:
        raise ValueError(f"no training steps: {steps_per_epoch} steps/epoch x {epochs} epochs")
    step = np.arange(total, dtype=np.float64)
    warm = max(1, int(round(warmup_epochs * steps_per_epoch))) if warmup_epochs > 0 else 0
    if schedule == "constant":
        lr = np.full(total, base_lr)
    elif schedule == "noam":
        a = max(warm, 1)
        lr = base_lr * math.sqrt(a) * np.minimum((step + 1) * a ** -1.5, (step + 1) ** -0.5)
    else:
        after = np.clip(step - warm, 0, None)
        span = max(total - warm, 1)
        if schedule == "warmup":
            lr = np.full(total, base_lr)
        elif schedule == "exponential":
            lr = base_lr * decay_rate ** (after / span)
        else:
            lr = min_lr + 0.5 * (base_lr - min_lr) * (1 + np.cos(np.pi * after / span))
        if warm:
            lr[:warm] = base_lr * (step[:warm] + 1) / warm
    return lr.astype(np.float32)
