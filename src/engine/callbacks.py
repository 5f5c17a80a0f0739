"""Training callbacks: progress, validation, best and periodic checkpoints,
early stopping and the per-epoch metrics log.

The trainer calls, in order, ``on_train_begin(trainer)``,
``on_step_end(trainer, state)`` after every step and
``on_epoch_end(trainer, state)`` after every epoch, then
``on_train_end(trainer, state)``. ``state`` is a :class:`TrainState`; callbacks
communicate through it (``state.val_metrics``, ``state.stop``). Writers act on
the main process only (rank 0 in distributed runs).
"""
import json
import math
import os
import time

from src import faults
from src.engine import checkpoint
from src.engine.jsonl import append_lines as _append_line, keep_epochs_up_to, read_metrics_log
from src.metrics import format_metrics
from src.clock import hms


class TrainState:
    """What the loop knows: position, losses, validation metrics, stop flag."""

    def __init__(self, epochs, steps_per_epoch, batch_size, start_epoch=0):
        self.epochs, self.steps_per_epoch, self.batch_size = epochs, steps_per_epoch, batch_size
        self.epoch = start_epoch
        self.step_in_epoch = 0
        self.global_step = start_epoch * steps_per_epoch
        self.loss = math.nan
        self.epoch_loss_sum = 0.0
        self.epoch_start = time.time()
        self.val_metrics = None
        self.stop = False
        self.stop_reason = None
        self.lr = None
        self.eval_every = 1             # set by the Evaluator: validation every N epochs
        self.val_seconds = None         # the duration of the last validation
        self.val_seconds_now = 0.0      # of this epoch's validation (0 when there was none)

    @property
    def epoch_loss(self):
        return self.epoch_loss_sum / max(self.step_in_epoch, 1)


class Callback:
    def on_train_begin(self, trainer):
        pass

    def on_step_end(self, trainer, state):
        pass

    def on_epoch_end(self, trainer, state):
        pass

    def on_train_end(self, trainer, state):
        pass


class ProgressLogger(Callback):
    """Loss, step time, throughput and ETA every ``every_steps`` steps, and an
    epoch summary (the loss and time monitors).

    The ETA counts the steps left at the pace measured since the first step
    of this run (the first one also compiles the graph) and the validations
    left at the duration of the last one (``state.val_seconds``, set by the
    :class:`Evaluator`)."""

    def __init__(self, every_steps=100, printer=print, clock=time.time):
        self.every = max(int(every_steps), 1)
        self.print, self.clock = printer, clock
        self._first = None

    def on_train_begin(self, trainer):
        self._first, self._steps_done, self._val_in_pace = None, 0, 0.0

    def on_step_end(self, trainer, state):
        now = self.clock()
        self._steps_done += 1
        if self._first is None:         # the pace is measured from here: compilation left out
            self._first, self._val_in_pace = now, 0.0
        elif state.step_in_epoch == 1:  # the last epoch's validation ran since the last step
            self._val_in_pace += state.val_seconds_now
        if state.step_in_epoch % self.every and state.step_in_epoch != state.steps_per_epoch:
            return
        elapsed = now - state.epoch_start
        per_step = elapsed / state.step_in_epoch
        left = (state.steps_per_epoch - state.step_in_epoch) + \
            (state.epochs - state.epoch) * state.steps_per_epoch
        self.print(f"epoch {state.epoch}/{state.epochs} step {state.step_in_epoch}/"
                   f"{state.steps_per_epoch} loss {state.loss:.6f} | {per_step * 1000:.3f} ms/step, "
                   f"{state.batch_size / per_step:,.0f} samples/s, ETA {hms(self.eta(state, now, left))}",
                   flush=True)

    def eta(self, state, now, steps_left):
        """Seconds left: the steps at the measured pace plus the validations."""
        paced = self._steps_done - 1
        rate = (now - self._first - self._val_in_pace) / paced if paced > 0 else 0.0
        every = max(int(state.eval_every), 1)
        evals = sum(1 for e in range(state.epoch, state.epochs + 1)
                    if e % every == 0 or e == state.epochs)
        return steps_left * rate + evals * (state.val_seconds or 0.0)

    def on_epoch_end(self, trainer, state):
        took = self.clock() - state.epoch_start
        self.print(f"epoch {state.epoch} done: mean loss {state.epoch_loss:.6f}, epoch time "
                   f"{took:.1f} s, per step time {took / state.steps_per_epoch * 1000:.3f} ms",
                   flush=True)


class Evaluator(Callback):
    """Evaluate on the validation split every ``every_epochs`` epochs (and
    after the last one); puts the metrics in ``state.val_metrics``."""

    def __init__(self, dataset, every_epochs=1, printer=print):
        self.dataset, self.every, self.print = dataset, max(int(every_epochs), 1), printer

    def on_epoch_end(self, trainer, state):
        state.val_metrics, state.val_seconds_now, state.eval_every = None, 0.0, self.every
        if state.epoch % self.every and state.epoch != state.epochs:
            return
        start = time.time()
        state.val_metrics = trainer.evaluate(self.dataset)
        state.val_seconds = state.val_seconds_now = time.time() - start
        self.print(f"validation epoch {state.epoch}: {format_metrics(state.val_metrics)} "
                   f"({state.val_seconds:.1f} s)", flush=True)


class MetricsLog(Callback):
    """One JSON line per epoch in ``path``; on resume, lines after the
    resumed epoch are dropped so the log matches the checkpoint."""

    def __init__(self, path, active=True):
        self.path, self.active = path, active

    def on_train_begin(self, trainer):
        if not self.active:
            return
        keep_epochs_up_to(self.path, trainer.start_epoch)
        faults.point("metrics.rewritten")

    def on_epoch_end(self, trainer, state):
        if not self.active:
            return
        record = {"epoch": state.epoch, "global_step": state.global_step,
                  "train_loss": state.epoch_loss, "lr": state.lr,
                  "epoch_time_s": round(time.time() - state.epoch_start, 3),
                  "val": state.val_metrics}
        _append_line(self.path, json.dumps(record) + "\n")
        faults.point("metrics.appended")


class StepLog(Callback):
    """Every training step's loss and learning rate, with the epoch, the step
    and the time: one JSON line each in ``path`` (``steps.jsonl``), appended
    in batches of ``flush_every`` lines and at every epoch's end. On resume
    the lines after the resumed step are dropped, as :class:`MetricsLog` does."""

    def __init__(self, path, flush_every=200, active=True):
        self.path, self.flush_every, self.active = path, max(int(flush_every), 1), active
        self._lines = []

    def on_train_begin(self, trainer):
        if not self.active:
            return
        keep_epochs_up_to(self.path, trainer.start_epoch)
        self._lines = []

    def on_step_end(self, trainer, state):
        if not self.active:
            return
        lr = float(trainer.lr[min(state.global_step, len(trainer.lr)) - 1])
        self._lines.append(json.dumps({
            "epoch": state.epoch, "step": state.step_in_epoch, "global_step": state.global_step,
            "loss": state.loss, "lr": lr, "time": round(time.time(), 3)}) + "\n")
        if len(self._lines) >= self.flush_every:
            self._flush()

    def on_epoch_end(self, trainer, state):
        self._flush()

    def on_train_end(self, trainer, state):
        self._flush()

    def _flush(self):
        if self.active and self._lines:
            _append_line(self.path, "".join(self._lines), sync=False)
            self._lines = []


def _better(value, best, mode):
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return False
    return best is None or (value > best if mode == "max" else value < best)


class BestCheckpoint(Callback):
    """Keep ``best_<metric>.ckpt`` (network weights) for every monitored
    validation metric, e.g. best_income_auc / best_marital_auc / best_avg_auc."""

    def __init__(self, directory, metrics, mode="max", log_path=None, active=True, printer=print):
        self.directory, self.metrics, self.mode = directory, list(metrics), mode
        self.log_path, self.active, self.print = log_path, active, printer
        self.best = {}

    def on_train_begin(self, trainer):
        self.best = {m: None for m in self.metrics}
        for record in read_metrics_log(self.log_path) if self.log_path else []:
            if record["epoch"] <= trainer.start_epoch and record.get("val"):
                for m in self.metrics:
                    if _better(record["val"].get(m), self.best[m], self.mode):
                        self.best[m] = record["val"][m]

    def on_epoch_end(self, trainer, state):
        if not state.val_metrics:
            return
        for m in self.metrics:
            if m not in state.val_metrics:
                raise KeyError(f"best checkpoint metric {m!r} is not among the validation metrics "
                               f"{sorted(state.val_metrics)}")
            value = state.val_metrics[m]
            if _better(value, self.best[m], self.mode):
                self.best[m] = value
                if self.active:
                    checkpoint.save_checkpoint(trainer.network, os.path.join(
                        self.directory, f"best_{m}.ckpt"), trainer.spec.name, state.epoch,
                        state.global_step, shard=trainer.checkpoint_shard(),
                        **trainer.checkpoint_meta())
        self.print("best so far: " + ", ".join(f"{m}={v:.6f}" for m, v in self.best.items()
                                               if v is not None), flush=True)


class PeriodicCheckpoint(Callback):
    """Save the whole training state (weights, optimizer moments, step
    counter) every ``every_epochs`` epochs as ``<prefix>-<epoch>_<steps>.ckpt``,
    keeping the newest ``keep_max``; these are what ``--resume`` continues from."""

    def __init__(self, directory, prefix, every_epochs=1, keep_max=10, active=True):
        if int(keep_max) < 0 or int(every_epochs) < 1:
            raise ValueError(f"keep_checkpoint_max must be 0 (keep all) or more and "
                             f"save_checkpoint_epochs at least 1, got {keep_max} and {every_epochs}")
        self.directory, self.prefix = directory, prefix
        self.every, self.keep_max, self.active = int(every_epochs), int(keep_max), active
        self.last_path = None

    def on_epoch_end(self, trainer, state):
        if not self.active or (state.epoch % self.every and state.epoch != state.epochs):
            return
        path = os.path.join(self.directory,
                            f"{self.prefix}-{state.epoch}_{state.steps_per_epoch}.ckpt")
        shard = trainer.checkpoint_shard()
        checkpoint.save_checkpoint(trainer.train_step, path, trainer.spec.name, state.epoch,
                                   state.global_step, shard=shard, **trainer.checkpoint_meta())
        if shard is None or shard[1] == 0:       # rank 0 removes old checkpoints, shards and all
            checkpoint.rotate(self.directory, self.prefix, self.keep_max)
        self.last_path = path


class EarlyStopping(Callback):
    """Stop when ``monitor`` has not improved for ``patience`` evaluations
    (0 disables)."""

    def __init__(self, monitor, patience, mode="max", log_path=None, printer=print):
        self.monitor, self.patience, self.mode = monitor, int(patience), mode
        self.log_path, self.print = log_path, printer
        self.best, self.bad = None, 0

    def on_train_begin(self, trainer):
        self.best, self.bad = None, 0
        for record in read_metrics_log(self.log_path) if self.log_path else []:
            if record["epoch"] <= trainer.start_epoch and record.get("val"):
                self._update(record["val"].get(self.monitor))

    def _update(self, value):
        if _better(value, self.best, self.mode):
            self.best, self.bad = value, 0
        else:
            self.bad += 1

    def on_epoch_end(self, trainer, state):
        if self.patience <= 0 or not state.val_metrics:
            return
        self._update(state.val_metrics.get(self.monitor))
        if self.bad >= self.patience:
            state.stop = True
            state.stop_reason = (f"early stopping: {self.monitor} has not improved for "
                                 f"{self.bad} evaluations (best {self.best:.6f})")
            self.print(state.stop_reason, flush=True)
