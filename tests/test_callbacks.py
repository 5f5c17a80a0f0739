import json
import math
import os
import types

import pytest

from src.engine import checkpoint
from src.engine.callbacks import BestCheckpoint, EarlyStopping, MetricsLog, TrainState
from mindspore import nn


class FakeTrainer:
    def __init__(self, start_epoch=0):
        self.spec = types.SimpleNamespace(name="model")
        self.network = nn.Dense(4, 2)
        self.start_epoch = start_epoch

    def checkpoint_meta(self):
        return {"config": {"model": "model"}, "data_fingerprint": "d", "encoding_fingerprint": "e"}

    def checkpoint_shard(self):
        return None


def _run(callbacks, trainer, history):
    state = TrainState(epochs=len(history), steps_per_epoch=10, batch_size=4)
    for cb in callbacks:
        cb.on_train_begin(trainer)
    for epoch, metrics in enumerate(history, start=1):
        state.epoch, state.global_step, state.val_metrics = epoch, epoch * 10, metrics
        for cb in callbacks:
            cb.on_epoch_end(trainer, state)
        if state.stop:
            break
    return state


HISTORY = [{"income_auc": 0.80, "marital_auc": 0.90, "avg_auc": 0.85},
           {"income_auc": 0.85, "marital_auc": 0.88, "avg_auc": 0.865},
           {"income_auc": 0.84, "marital_auc": 0.95, "avg_auc": 0.895},
           {"income_auc": math.nan, "marital_auc": 0.91, "avg_auc": 0.80}]


def test_best_checkpoint_per_metric(tmp_path):
    best = BestCheckpoint(str(tmp_path), ["income_auc", "marital_auc", "avg_auc"], printer=lambda *a, **k: None)
    _run([best], FakeTrainer(), HISTORY)
    epochs = {m: checkpoint.read_checkpoint(str(tmp_path / f"best_{m}.ckpt"))[1]["epoch"]
              for m in ("income_auc", "marital_auc", "avg_auc")}
    assert epochs == {"income_auc": 2, "marital_auc": 3, "avg_auc": 3}   # NaN never wins
    assert best.best == {"income_auc": 0.85, "marital_auc": 0.95, "avg_auc": 0.895}


def test_best_checkpoint_unknown_metric(tmp_path):
    best = BestCheckpoint(str(tmp_path), ["click_auc"], printer=lambda *a, **k: None)
    with pytest.raises(KeyError, match="click_auc"):
        _run([best], FakeTrainer(), HISTORY)


def test_early_stopping_patience():
    stop = EarlyStopping("avg_auc", patience=1, printer=lambda *a, **k: None)
    state = _run([stop], FakeTrainer(), HISTORY)
    assert state.stop and state.epoch == 4 and "has not improved" in state.stop_reason
    never = EarlyStopping("avg_auc", patience=0)
    assert not _run([never], FakeTrainer(), HISTORY).stop


def test_resume_restores_best_values_from_the_log(tmp_path):
    log = str(tmp_path / "metrics.jsonl")
    with open(log, "w") as fh:
        for epoch, metrics in enumerate(HISTORY[:3], start=1):
            fh.write(json.dumps({"epoch": epoch, "val": metrics}) + "\n")
    trainer = FakeTrainer(start_epoch=2)           # resumed after epoch 2: epoch 3's line is stale
    best = BestCheckpoint(str(tmp_path), ["avg_auc"], log_path=log, printer=lambda *a, **k: None)
    stop = EarlyStopping("avg_auc", patience=2, log_path=log)
    MetricsLog(log).on_train_begin(trainer)
    for cb in (best, stop):
        cb.on_train_begin(trainer)
    assert best.best == {"avg_auc": 0.865} and stop.best == 0.865 and stop.bad == 0
    with open(log) as fh:
        assert [json.loads(line)["epoch"] for line in fh] == [1, 2]


def test_inactive_writers_write_nothing(tmp_path):
    best = BestCheckpoint(str(tmp_path), ["avg_auc"], active=False, printer=lambda *a, **k: None)
    _run([best, MetricsLog(str(tmp_path / "m.jsonl"), active=False)], FakeTrainer(), HISTORY)
    assert os.listdir(tmp_path) == []


def test_eta_leaves_out_compilation_and_counts_validation():
    """Step 1 takes 20 s (the graph compiles), every other step 1 s, each
    validation 5 s: the ETA is the steps left at 1 s plus 5 s per validation left."""
    from src.engine.callbacks import ProgressLogger
    now = [0.0]
    lines = []
    logger = ProgressLogger(every_steps=5, printer=lambda text, flush=True: lines.append(text),
                            clock=lambda: now[0])
    state = TrainState(epochs=3, steps_per_epoch=10, batch_size=4)
    logger.on_train_begin(None)
    for epoch in (1, 2):
        state.epoch, state.step_in_epoch, state.epoch_start = epoch, 0, now[0]
        for step in range(1, 11):
            now[0] += 20.0 if (epoch, step) == (1, 1) else 1.0
            state.step_in_epoch = step
            state.loss = 0.5
            logger.on_step_end(None, state)
        logger.on_epoch_end(None, state)
        now[0] += 5.0                                     # the validation of this epoch
        state.val_seconds = state.val_seconds_now = 5.0
    etas = [line.split("ETA ")[1] for line in lines if "ETA" in line]
    # epoch 1, step 5: 25 steps left at 1 s; no validation timed yet
    assert etas[0] == "0:00:25"
    # epoch 2, step 5: 15 steps at 1 s (the 5 s of validation is not pace) + 2 validations
    assert etas[2] == "0:00:25"
    assert etas[3] == "0:00:20"                           # epoch 2 done: 10 steps + 2 x 5 s
