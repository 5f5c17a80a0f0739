"""MindSpore's own summary records of a run (``summary: true``), for
MindSpore's viewers (MindInsight): the training loss and learning rate every
``every_steps`` steps, the epoch's mean loss and every validation metric per
epoch, in ``<output_path>/summary/``. Off by default: MindSpore writes them
through a pool of extra processes."""
import math

from src.engine.callbacks import Callback


class SummaryLog(Callback):
    def __init__(self, directory, every_steps=1, active=True):
        self.directory, self.every, self.active = directory, max(int(every_steps), 1), active
        self._record = None

    def on_train_begin(self, trainer):
        if self.active:
            from mindspore.train.summary import SummaryRecord
            self._record = SummaryRecord(self.directory)

    def _scalar(self, tag, value):
        from mindspore import Tensor
        if value is not None and math.isfinite(float(value)):
            self._record.add_value("scalar", tag, Tensor(float(value)))

    def on_step_end(self, trainer, state):
        if self._record is None or state.global_step % self.every:
            return
        self._scalar("train/loss", state.loss)
        self._scalar("train/learning_rate",
                     trainer.lr[min(state.global_step, len(trainer.lr)) - 1])
        self._record.record(state.global_step)

    def on_epoch_end(self, trainer, state):
        if self._record is None:
            return
        self._scalar("train/epoch_loss", state.epoch_loss)
        for name, value in (state.val_metrics or {}).items():
            self._scalar(f"val/{name}", value)
        self._record.record(state.global_step)
        self._record.flush()

    def on_train_end(self, trainer, state):
        self.close()

    def close(self):
        """End the writer (also when training stopped with an error)."""
        if self._record is not None:
            self._record.close()
            self._record = None
