"""Calling a compiled GRAPH_MODE cell many times, at the cost of running it.

Every ``cell(*args)`` in GRAPH_MODE first re-checks the compile cache in
Python: it inspects the signature of ``construct``, builds the arguments key,
sets a dozen attributes on the cell and the auto-parallel context. On this
CPU that took about 130 us of the 170 us a call to a one-op graph costs, a
tenth of an MMoE training step at batch 32 (bench/notes.md).

:class:`GraphCall` makes the first call with a given input signature the
ordinary way (it compiles, or finds the graph MindSpore already compiled)
and remembers which graph that was; later calls with the same signature run
that graph directly, the way MindSpore's own ``Cell._predict`` does for
compiled inference phases. Anything else - PyNative mode, inputs that are
not all tensors, a graph the executor refuses - goes through ``cell(*args)``.

:class:`Threaded` keeps a graph on MindSpore's runtime threads (config key
``threaded_graphs``; :func:`threaded`). MindSpore 2.10 runs a graph of at
most 100 kernels on the calling Python thread when its pool has a single
actor thread (as on a 2-core CPU). There a kernel split among threads is
handed to the pool's two threads and the caller waits for them by spinning
(``sched_yield``): three busy threads on two cores, and a large matrix
product runs slower (bench/notes.md). A graph of more than 100 kernels runs
on the actor thread, which computes a share itself while the Python thread
sleeps. For graphs of small kernels the calling thread is the faster (no
hand-over between threads), so this is a per-model choice, and a graph whose
batch is small (its first input has fewer than ``from_rows`` rows, e.g. a
prediction of one row) is left as it is: there the padding's fixed cost
outweighs what it saves (bench/notes.md).
"""
import mindspore as ms
from mindspore import Tensor, nn, ops
from mindspore.graph import api as _api
from mindspore.graph.jit_config import _DEFAULT_JIT_CONFIG


class GraphCall:
    """``GraphCall(cell)(*tensors)`` returns what ``cell(*tensors)`` returns.

    The remembered graph is keyed by the cell's phase (``train`` or
    ``predict``, from ``set_train``) and the shapes and dtypes of the inputs,
    which is what selects a compiled graph; a new batch size (the last batch of
    an epoch) or a phase change is one more ordinary call.
    """

    def __init__(self, cell):
        self.cell = cell
        self._graph = ms.get_context("mode") == ms.GRAPH_MODE
        self._phases = {}
        self._checked = set()

    def __call__(self, *args):
        if not self._graph or not all(isinstance(a, Tensor) for a in args):
            return self.cell(*args)
        key = (self.cell.phase, tuple((a.shape, a.dtype) for a in args))
        phase = self._phases.get(key)
        if phase is None:
            out = self.cell(*args)
            self._phases[key] = self.cell.phase_cache.get(self.cell.phase, False)
            return out
        if phase is False:                 # this signature always goes the ordinary way
            return self.cell(*args)
        executor = _api._cell_graph_executor._graph_executor
        executor.set_jit_config(getattr(self.cell, "jit_config_dict", None) or _DEFAULT_JIT_CONFIG)
        if key in self._checked:
            return _api._convert_python_data(executor(args, phase))
        try:
            out = _api._convert_python_data(executor(args, phase))
        except (RuntimeError, TypeError, ValueError):
            # the first direct run of this graph was refused (the executor
            # checks its arguments before running anything): always go the
            # ordinary way for it
            self._phases[key] = False
            return self.cell(*args)
        self._checked.add(key)
        return out


# kernels Threaded adds: more than MindSpore 2.10's limit for running a graph
# on the calling thread (100 kernels), whatever the graph holds
PADDING_KERNELS = 101
# the first input's rows from which Threaded pads a graph: below it the padding's
# fixed cost outweighs its gain (DLRM's and DeepFM's prediction, bench/notes.md)
PADDED_FROM_ROWS = 64


class Threaded(nn.Cell):
    """``Threaded(cell)(*args)`` returns ``cell(*args)``, computed in a graph
    of :data:`PADDING_KERNELS` kernels more: a chain of one-element sines of
    the first input's first element, which the result waits for; when the
    first input has fewer than ``from_rows`` rows, the cell's graph as it is
    (the choice is made when a graph compiles: shapes are fixed then). The
    parameters keep their names; the phase is the
    cell's (``set_train`` on the cell, or on a network inside it, selects
    the graph)."""

    def __init__(self, cell, from_rows=PADDED_FROM_ROWS):
        super().__init__(auto_prefix=False)
        self.cell = cell
        self.from_rows = int(from_rows)

    def pads(self, rows):
        """Whether a graph whose first input has ``rows`` rows is padded."""
        return rows >= self.from_rows

    @property
    def phase(self):
        return self.cell.phase

    @phase.setter
    def phase(self, value):
        self.cell.phase = value

    def construct(self, *inputs):
        first = inputs[0]
        if not self.pads(first.shape[0]):
            return self.cell(*inputs)
        pad = ops.cast(first.reshape((-1,))[0:1], ms.float32)
        for _ in range(PADDING_KERNELS):
            pad = ops.sin(pad)
        return ops.depend(self.cell(*inputs), pad)


def threaded(cell, cfg, kind):
    """``cell`` in :class:`Threaded` on device_target CPU when config key
    ``threaded_graphs`` names ``kind`` (``train`` or ``predict``) or is
    ``all``; else ``cell``."""
    chosen = cfg.get("threaded_graphs", "none") in (kind, "all")
    return Threaded(cell) if chosen and cfg.get("device_target") == "CPU" else cell
