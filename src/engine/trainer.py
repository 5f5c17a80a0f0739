"""The training loop shared by every model."""
import math
import time

import mindspore as ms
import numpy as np

from src import faults
from src.engine import checkpoint
from src.engine.callbacks import TrainState
from src.engine.lr import learning_rates
from src.engine.optim import build_optimizer
from src.engine.runtime import as_tensors, kernel_threads
from src.engine.sparse import build_sparse_train_step, rows_between_ranks, same_rows
from src.engine.train_step import MultiStep, build_train_step, random_cells
from src.engine.evaluation import evaluate
from src.engine.graph_call import GraphCall, threaded
from src.engine.source_pin import pin_sources
from src.engine.errors import TrainingDiverged


def nonfinite_parameters(cell):
    """Names of ``cell``'s parameters holding NaN or infinite values."""
    return [p.name for p in cell.get_parameters()
            if p.dtype in (ms.float16, ms.float32, ms.float64, ms.bfloat16)
            and not np.isfinite(p.asnumpy()).all()]


# steps_per_call 0 (auto): AUTO_STEPS steps per call for a train step without dropout,
# at any batch size (MMoE and DLRM on the 2-core CPU, bench/notes.md); a sparse step
# only in a single process and with parameter_copies none
AUTO_STEPS = 4


def _steps_per_call(cfg, spec, network):
    """``cfg.steps_per_call`` (0: chosen from the train step), checked against
    what the model can run that way."""
    steps = int(cfg.get("steps_per_call", 1))
    if steps < 0:
        raise ValueError(f"steps_per_call must be 0 (auto) or at least 1, got {steps}")
    random = random_cells(network) if steps != 1 else []
    distributed = spec.sparse and steps != 1 and rows_between_ranks(network.embedding)
    copies = spec.sparse and cfg.get("parameter_copies", "default") != "none"
    if steps == 0:
        return AUTO_STEPS if not (random or distributed or copies) else 1
    if steps > 1 and distributed:
        raise ValueError(f"steps_per_call {steps}: a distributed run of {spec.name} exchanges "
                         "its embedding rows between the ranks every step, so it runs one step "
                         "per call; set steps_per_call 1")
    if steps > 1 and copies:
        raise ValueError(f"steps_per_call {steps}: {spec.name}'s sparse step reads its embedding "
                         "table once a step, and MindSpore would copy the whole table before each "
                         "read; set parameter_copies none (or steps_per_call 1)")
    if random:
        raise ValueError(f"steps_per_call {steps}: the dropout of {', '.join(random)} would draw "
                         f"the same masks in all {steps} steps of a call (one random stream per "
                         "op of a graph); set steps_per_call 1 or the dropout rate to 0")
    return steps


class Trainer:
    """Builds the train step of a model from config and runs the epochs.

    ``cfg`` keys used: epoch_size, batch_size, optimizer, learning_rate,
    lr_schedule, warmup_epochs, lr_decay_rate, min_lr, weight_decay, adam_beta1,
    adam_beta2, adam_eps, momentum, loss_scale_mode, loss_scale, scale_window,
    clip_norm, steps_per_call.
    """

    def __init__(self, spec, cfg, feature_map, network, steps_per_epoch, is_main=True, printer=print):
        self.spec, self.cfg, self.feature_map = spec, cfg, feature_map
        self.network, self.is_main, self.print = network, is_main, printer
        self.steps_per_epoch, self.epochs = int(steps_per_epoch), int(cfg.epoch_size)
        self.lr = learning_rates(cfg.lr_schedule, cfg.learning_rate, self.steps_per_epoch,
                                 self.epochs, warmup_epochs=cfg.warmup_epochs,
                                 decay_rate=cfg.lr_decay_rate, min_lr=cfg.min_lr)
        self.net_with_loss = spec.net_with_loss(network, cfg, feature_map)
        self.optimizer = build_optimizer(cfg.optimizer, network.trainable_params(), self.lr,
                                         weight_decay=cfg.weight_decay, adam_beta1=cfg.adam_beta1,
                                         adam_beta2=cfg.adam_beta2, adam_eps=cfg.adam_eps,
                                         momentum=cfg.momentum,
                                         dense_update=cfg.get("dense_update", "graph"),
                                         threads=kernel_threads())
        if spec.sparse:
            self.train_step = build_sparse_train_step(network, self.net_with_loss, self.optimizer,
                                                      self.lr, cfg)
        else:
            self.train_step = build_train_step(self.net_with_loss, self.optimizer,
                                               loss_scale_mode=cfg.loss_scale_mode,
                                               loss_scale=cfg.loss_scale,
                                               scale_window=cfg.scale_window,
                                               clip_norm=cfg.clip_norm)
        self._run_step = GraphCall(threaded(self.train_step, cfg, "train"))
        self.steps_per_call = _steps_per_call(cfg, spec, network)
        self._run_steps = None
        if self.steps_per_call > 1:
            multi = MultiStep(self.train_step, self.steps_per_call)
            multi.set_train(True)
            self._run_steps = GraphCall(threaded(multi, cfg, "train"))
        self.predictor = threaded(spec.predictor(network), cfg, "predict")
        self.start_epoch = 0
        self.resumed_from = None
        self.divergence_factor = float(cfg.get("divergence_factor", 0) or 0)
        # graphs compiled later (validation, new batch shapes) read the source
        # this run imported, even if a file is edited while it trains
        pin_sources()

    def checkpoint_shard(self):
        """``(plan, rank)`` when this rank holds a shard of the network's
        table (its checkpoints are then written by every rank), else None."""
        table = getattr(self.network, "embedding", None)
        return (table.plan, table.rank) if getattr(table, "sharded", False) else None

    def checkpoint_meta(self):
        """What every checkpoint of this run says about itself besides model
        and position: the effective config and the data set's fingerprints."""
        return {"config": self.cfg.to_dict(),
                "data_fingerprint": self.feature_map.get("fingerprint"),
                "encoding_fingerprint": self.feature_map.get("encoding_fingerprint")}

    def step(self, batch):
        """One training step on a batch of numpy arrays; returns the loss."""
        return float(self._run_step(*as_tensors(batch)).asnumpy())

    def run_batches(self, batches):
        """Train on ``batches`` (numpy batches, e.g. one epoch of a reader) in
        order, yielding each step's loss. With ``steps_per_call`` k > 1, every
        k consecutive batches of one shape go through one graph call
        (:class:`~src.engine.train_step.MultiStep`), so losses come k at a
        time; the last batches of ``batches`` that do not fill a call run one
        by one."""
        for losses in self.run_calls(batches):
            yield from losses

    def run_calls(self, batches):
        """:meth:`run_batches` one graph call at a time: yields the list of the
        losses of each call's steps, after the call has run."""
        if self._run_steps is None:
            for batch in batches:
                yield [self.step(batch)]
            return
        group = []
        for batch in batches:
            group.append(batch)
            if len(group) == self.steps_per_call:
                yield self._steps(group)
                group = []
        for batch in group:
            yield [self.step(batch)]

    def _steps(self, group):
        if self.spec.sparse:
            group = same_rows(group, self.network.embedding.scratch_row)
        if len({tuple(a.shape for a in batch) for batch in group}) > 1:
            return [self.step(batch) for batch in group]          # a partial last batch
        losses = self._run_steps(*[t for batch in group for t in as_tensors(batch)])
        return [float(loss) for loss in losses.asnumpy()]

    def resume_from(self, path):
        """Restore weights, optimizer state and the epoch counter from a
        periodic checkpoint; training continues with the next epoch."""
        # The per-step learning rates are rebuilt from the config (a longer
        # --epoch_size makes the table longer); everything else is restored.
        shard = self.checkpoint_shard()
        reshard = None if shard is None else shard + (
            [p.name for p in self.train_step.get_parameters() if p.layerwise_parallel],)
        meta = checkpoint.load_into(self.train_step, path, self.spec.name,
                                    skip=("learning_rate", "row_learning_rate"),
                                    reshard=reshard)
        self.start_epoch = int(meta.get("epoch", 0))
        expected = self.start_epoch * self.steps_per_epoch
        if int(meta.get("global_step", expected)) != expected:
            raise checkpoint.CheckpointError(
                f"{path} was saved after {meta.get('global_step')} steps, but epoch "
                f"{self.start_epoch} at {self.steps_per_epoch} steps/epoch means {expected}: "
                "resume with the data and the global batch (batch_size times ranks) of the "
                "original run")
        self.resumed_from = path
        self.print(f"resumed from {path}: epoch {self.start_epoch} done, "
                   f"global step {expected}", flush=True)
        return meta

    def fit(self, train_data, callbacks=()):
        """Train from ``start_epoch + 1`` to ``epoch_size``; returns the final state."""
        state = TrainState(self.epochs, self.steps_per_epoch, train_data.batch_size, self.start_epoch)
        if len(train_data) != self.steps_per_epoch:
            raise ValueError(f"the data gives {len(train_data)} steps per epoch, the schedule "
                             f"was built for {self.steps_per_epoch}")
        for cb in callbacks:
            cb.on_train_begin(self)
        set_progress = getattr(self.net_with_loss, "set_progress", None)  # scheduled loss terms
        ramp_steps = getattr(self.net_with_loss, "ramp_epochs", 0.0) * self.steps_per_epoch
        if set_progress is not None:
            set_progress((state.global_step + 1) / self.steps_per_epoch)
        early = None                    # the first step's loss (before any update): the early level
        for epoch in range(self.start_epoch + 1, self.epochs + 1):
            self.network.set_train(True)
            state.epoch, state.step_in_epoch, state.epoch_loss_sum = epoch, 0, 0.0
            state.epoch_start = time.time()
            for loss in self.run_batches(train_data.epoch(epoch)):
                state.step_in_epoch += 1
                state.global_step += 1
                if set_progress is not None and state.global_step < ramp_steps:
                    set_progress((state.global_step + 1) / self.steps_per_epoch)  # the next step
                if not math.isfinite(loss):
                    raise TrainingDiverged(self._diverged_message(f"loss became {loss}", state,
                                                                  callbacks))
                if early is None:
                    early = max(loss, 1e-3)
                elif self.divergence_factor > 0 and loss > self.divergence_factor * early:
                    raise TrainingDiverged(self._diverged_message(
                        f"loss {loss:.6g} exceeds {self.divergence_factor:g} times its early level "
                        f"{early:.6g}, the first step's (divergence_factor)", state, callbacks))
                state.loss = loss
                state.epoch_loss_sum += loss
                for cb in callbacks:
                    cb.on_step_end(self, state)
                faults.point("train.step")
            state.lr = float(self.lr[min(state.global_step, len(self.lr)) - 1])
            bad = nonfinite_parameters(self.network)
            if bad:             # checked before any checkpoint of this epoch is written
                raise TrainingDiverged(self._diverged_message(
                    f"{len(bad)} weight(s) are no longer finite (e.g. {', '.join(bad[:3])})",
                    state, callbacks))
            for cb in callbacks:
                cb.on_epoch_end(self, state)
            if state.stop:
                break
        for cb in callbacks:
            cb.on_train_end(self, state)
        return state

    def _diverged_message(self, what, state, callbacks):
        last = [cb.last_path for cb in callbacks if getattr(cb, "last_path", None)]
        last = last[-1] if last else self.resumed_from
        kept = (f"the last good checkpoint is {last}" if last else
                "no checkpoint was written yet")
        return (f"{what} at epoch {state.epoch}, step {state.step_in_epoch} "
                f"(global step {state.global_step}); training stopped and {kept}. "
                "Lower learning_rate, enable clip_norm or check the input data.")

    def evaluate(self, dataset):
        """Per-task metrics of the network on a split."""
        return evaluate(self.spec, self.feature_map, self.network, dataset, self.predictor)
