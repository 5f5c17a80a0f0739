"""What a benchmark worker runs, for this project ("ours") and the PyTorch peer.

Every workload is set up once (network, reader, compiled graph) and then
``run(n)`` does ``n`` units of work and returns ``(seconds, items)``:

* ``train``: ``n`` training steps, each reading its batch from MindRecord
  through the project's reader (:class:`~src.data.reader.BlockDataset`, the
  same for both sides), running forward, backward and the optimizer update
  and fetching the loss (ours as ``Trainer.fit`` runs them, with the CPU
  config's ``steps_per_call``, in whole graph calls); items = samples
  trained in the timed interval. ``warmup_units`` is the
  steps of the first epoch and the next one's first call: with several steps
  a graph call, an epoch's last steps that do not fill a call go through a
  one-step graph, compiled when first used, which must not fall in a turn.
* ``predict``: ``n`` predictions of one fixed batch, from numpy input to
  numpy probabilities; items = samples.
* ``pipeline``: ``n`` batches from the reader alone, with the transform
  training applies (ours only); items = rows.
"""
import os
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CPU_CONFIG = os.path.join(ROOT, "default_config_cpu.yaml")
# generated data, exports and worker logs of the benchmark tools
WORK_DIR = os.path.join(ROOT, ".cache", "bench")
# Long enough that the learning-rate table outlasts any benchmark run.
EPOCHS = "100"


def load_cfg(model, batch_size, data_path, extra=()):
    from src.config import parse_config
    argv = ["--model", model, "--batch_size", str(batch_size), "--eval_batch_size",
            str(batch_size), "--data_path", data_path, "--epoch_size", EPOCHS] + list(extra)
    return parse_config(argv, config_path=CPU_CONFIG)


def setting_args(settings):
    """``["key=value", ...]`` (config values, bench.ab's ``--set``) as
    command-line options of the config."""
    args = []
    for setting in settings:
        key, sep, value = setting.partition("=")
        if not sep or not key or key.startswith("-"):
            raise ValueError(f"a setting is KEY=VALUE, got {setting!r}")
        args += [f"--{key}", value]
    return args


def _epochs(reader, each=lambda batches: batches):
    """``each`` of the reader's epochs (its batches), epoch after epoch from
    epoch 1, as one stream."""
    epoch = 1
    while True:
        yield from each(reader.epoch(epoch))
        epoch += 1


def _forever(reader):
    """The reader's batches, epoch after epoch."""
    return _epochs(reader)


def fixed_batch(spec, fmap, cfg, batch_size):
    """The first ``batch_size`` rows of the test split, as network inputs."""
    from src.engine.setup import split_reader
    reader = split_reader(spec, fmap, cfg, "test")
    inputs = next(iter(reader.epoch(1)))[:-1]
    reps = -(-batch_size // len(inputs[0]))
    return [np.ascontiguousarray(np.concatenate([a] * reps)[:batch_size]) for a in inputs]


def _trained(trainer, reader):
    """The graph calls of training on the reader, epoch after epoch, the way
    ``Trainer.fit`` runs an epoch (``steps_per_call`` steps per call): each
    item is the list of one call's losses, yielded once the call has run."""
    return _epochs(reader, trainer.run_calls)


class Ours:
    """This project: the CPU config, GRAPH_MODE, the trainer's own train step."""

    def __init__(self, kind, model, batch_size, data_path, threads=0, settings=()):
        from src.engine.runtime import setup_runtime
        from src.engine.setup import build_network
        from src.pipeline import model_and_data
        # setup_runtime gives MindSpore's CPU kernels cpu_threads threads (0: all cores)
        extra = (["--cpu_threads", str(threads)] if threads else []) + setting_args(settings)
        self.cfg = cfg = load_cfg(model, batch_size, data_path, extra)
        setup_runtime(cfg)
        self.spec, self.fmap = model_and_data(cfg)
        self.network = build_network(self.spec, cfg, self.fmap)
        self.batch_size = int(batch_size)
        getattr(self, "_setup_" + kind)()
        self.run = getattr(self, "_run_" + kind)

    def _train_reader(self):
        from src.engine.setup import split_reader
        transform = self.spec.train_transform(self.fmap, self.network, self.cfg)
        return split_reader(self.spec, self.fmap, self.cfg, "train", training=True,
                            transform=transform)

    def _setup_train(self):
        from src.engine.trainer import Trainer
        reader = self._train_reader()
        self.trainer = trainer = Trainer(self.spec, self.cfg, self.fmap, self.network, len(reader),
                                         printer=lambda *a, **k: None)
        self.network.set_train(True)
        self.warmup_units = len(reader) + trainer.steps_per_call
        set_progress = getattr(trainer.net_with_loss, "set_progress", None)
        if set_progress is not None:                  # the first step's regulariser weight
            set_progress(1 / len(reader))
        self.calls = _trained(trainer, reader)

    def _run_train(self, n):
        # whole graph calls until n steps are done: items counts the steps run
        # in this interval (with k steps a call, up to k - 1 more than n)
        start, steps = time.perf_counter(), 0
        while steps < n:
            steps += len(next(self.calls))
        return time.perf_counter() - start, steps * self.batch_size

    def _setup_predict(self):
        self.network.set_train(False)
        from src.engine.graph_call import GraphCall, threaded
        # as evaluation runs it
        self.predictor = GraphCall(threaded(self.spec.predictor(self.network), self.cfg, "predict"))
        self.inputs = fixed_batch(self.spec, self.fmap, self.cfg, self.batch_size)

    def _run_predict(self, n):
        from src.engine.runtime import as_tensors
        start = time.perf_counter()
        for _ in range(n):
            self.predictor(*as_tensors(self.inputs)).asnumpy()
        return time.perf_counter() - start, n * self.batch_size

    def _setup_pipeline(self):
        self.batches = _forever(self._train_reader())

    def _run_pipeline(self, n):
        start = time.perf_counter()
        rows = sum(len(next(self.batches)[-1]) for _ in range(n))
        return time.perf_counter() - start, rows


class Peer:
    """The PyTorch peer (bench/peer/): the same network, initialisation,
    optimizer and batches, read by the same reader (``variant``: one of the
    peer's ``VARIANTS``, None: its default). ``flops_per_sample``: the
    matrix-product FLOPs of one step or prediction (:mod:`bench.flops`)."""

    def __init__(self, kind, model, batch_size, data_path, threads=0, variant=None):
        from bench.peer import build_peer, torch_threads
        from src.pipeline import model_and_data
        if kind == "pipeline":
            raise ValueError("the pipeline case measures this project's reader only")
        from src.data.reader import quick_thread_handoff
        torch_threads(int(threads) or os.cpu_count())
        quick_thread_handoff()           # what setup_runtime does for ours: the same reader
        self.cfg = cfg = load_cfg(model, batch_size, data_path)
        self.spec, self.fmap = model_and_data(cfg)
        self.peer = build_peer(cfg, self.fmap, seed=int(cfg.seed), variant=variant)
        self.batch_size = int(batch_size)
        from bench.flops import counted
        if kind == "train":
            from src.engine.setup import split_reader
            reader = split_reader(self.spec, self.fmap, cfg, "train", training=True)
            self.batches = _forever(reader)
            self.warmup_units = len(reader) + 1          # as ours': into the second epoch
            self.run = self._run_train
            first = next(self.batches)                 # counted while it trains (a warm-up step)
            self.flops_per_sample = counted(lambda: self.peer.train_step(*first), len(first[-1]))
        else:
            self.inputs = fixed_batch(self.spec, self.fmap, cfg, self.batch_size)
            self.run = self._run_predict
            self.flops_per_sample = counted(lambda: self.peer.predict(*self.inputs),
                                            self.batch_size)

    def _run_train(self, n):
        start = time.perf_counter()
        for _ in range(n):
            self.peer.train_step(*next(self.batches))
        return time.perf_counter() - start, n * self.batch_size

    def _run_predict(self, n):
        start = time.perf_counter()
        for _ in range(n):
            self.peer.predict(*self.inputs)
        return time.perf_counter() - start, n * self.batch_size


SIDES = {"ours": Ours, "peer": Peer}
