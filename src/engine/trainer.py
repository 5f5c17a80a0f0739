"""The training loop shared by every model."""
import math
import time

from src.engine import checkpoint
from src.engine.callbacks import TrainState
from src.engine.lr import learning_rates
from src.engine.optim import build_optimizer
from src.engine.runtime import as_tensors
from src.engine.sparse import build_sparse_train_step
from src.engine.train_step import build_train_step
from src.engine.evaluation import evaluate
from src.engine.graph_call import GraphCall


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite."""


class Trainer:
    """Builds the train step of a model from config and runs the epochs.

    ``cfg`` keys used: epoch_size, batch_size, optimizer, learning_rate,
    lr_schedule, warmup_epochs, lr_decay_rate, min_lr, weight_decay, adam_beta1,
    adam_beta2, adam_eps, momentum, loss_scale_mode, loss_scale, scale_window,
    clip_norm.
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
                                         momentum=cfg.momentum)
        if spec.sparse:
            self.train_step = build_sparse_train_step(network, self.net_with_loss, self.optimizer,
                                                      self.lr, cfg)
        else:
            self.train_step = build_train_step(self.net_with_loss, self.optimizer,
                                               loss_scale_mode=cfg.loss_scale_mode,
                                               loss_scale=cfg.loss_scale,
                                               scale_window=cfg.scale_window,
                                               clip_norm=cfg.clip_norm)
        self._run_step = GraphCall(self.train_step)
        self.predictor = spec.predictor(network)
        self.start_epoch = 0

    def step(self, batch):
        """One training step on a batch of numpy arrays; returns the loss."""
        return float(self._run_step(*as_tensors(batch)).asnumpy())

    def resume_from(self, path):
        """Restore weights, optimizer state and the epoch counter from a
        periodic checkpoint; training continues with the next epoch."""
        # The per-step learning rates are rebuilt from the config (a longer
        # --epoch_size makes the table longer); everything else is restored.
        meta = checkpoint.load_into(self.train_step, path, self.spec.name,
                                    skip=("learning_rate", "row_learning_rate"))
        self.start_epoch = int(meta.get("epoch", 0))
        expected = self.start_epoch * self.steps_per_epoch
        if int(meta.get("global_step", expected)) != expected:
            raise checkpoint.CheckpointError(
                f"{path} was saved after {meta.get('global_step')} steps, but epoch "
                f"{self.start_epoch} at {self.steps_per_epoch} steps/epoch means {expected}: "
                "resume with the batch size and data of the original run")
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
        set_epoch = getattr(self.net_with_loss, "set_epoch", None)   # epoch-scheduled loss terms
        for epoch in range(self.start_epoch + 1, self.epochs + 1):
            self.network.set_train(True)
            if set_epoch is not None:
                set_epoch(epoch)
            state.epoch, state.step_in_epoch, state.epoch_loss_sum = epoch, 0, 0.0
            state.epoch_start = time.time()
            for batch in train_data.epoch(epoch):
                loss = self.step(batch)
                state.step_in_epoch += 1
                state.global_step += 1
                if not math.isfinite(loss):
                    raise TrainingDiverged(self._diverged_message(loss, state, callbacks))
                state.loss = loss
                state.epoch_loss_sum += loss
                for cb in callbacks:
                    cb.on_step_end(self, state)
            state.lr = float(self.lr[min(state.global_step, len(self.lr)) - 1])
            for cb in callbacks:
                cb.on_epoch_end(self, state)
            if state.stop:
                break
        for cb in callbacks:
            cb.on_train_end(self, state)
        return state

    def _diverged_message(self, loss, state, callbacks):
        last = [cb.last_path for cb in callbacks if getattr(cb, "last_path", None)]
        kept = f"the last good checkpoint is {last[-1]}" if last else "no checkpoint was written yet"
        return (f"loss became {loss} at epoch {state.epoch}, step {state.step_in_epoch} "
                f"(global step {state.global_step}); training stopped and {kept}. "
                "Lower learning_rate, enable clip_norm or check the input data.")

    def evaluate(self, dataset):
        """Per-task metrics of the network on a split."""
        return evaluate(self.spec, self.feature_map, self.network, dataset, self.predictor)
