"""Forked worker processes that run a task over a stream of items; results
come back in submission order through shared memory (see :class:`Workers`)."""
import collections
import ctypes
import mmap
import multiprocessing
import os
import queue
import signal
import traceback

import numpy as np


def default_workers():
    """Worker processes used by default: the CPUs this process may run on, at
    most 4 (the one process writing the splits keeps up with about that
    many); 0 where processes cannot be forked."""
    if "fork" not in multiprocessing.get_all_start_methods():
        return 0
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, 4))


def tune_malloc():
    """Let glibc keep freed memory for reuse instead of unmapping it: the
    parser's temporaries (about 1 MB each, per chunk) otherwise cost fresh
    zeroed pages every time, over half the time of parsing. Only in worker
    processes (and the command line), never in a caller's process."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return
    mallopt(-3, 32 << 20)          # M_MMAP_THRESHOLD: below this, from the heap
    mallopt(-1, 64 << 20)          # M_TRIM_THRESHOLD: free heap kept before trimming


class _Shared:
    """Where :func:`_pack` put an array in a slot of shared memory."""
    __slots__ = ("offset", "dtype", "shape")

    def __init__(self, offset, dtype, shape):
        self.offset, self.dtype, self.shape = offset, dtype, shape

    def __getstate__(self):
        return self.offset, self.dtype, self.shape

    def __setstate__(self, state):
        self.offset, self.dtype, self.shape = state


def _pack(obj, slot, pos=0):
    """``(obj, end)``: ``obj`` (arrays in tuples, lists and dicts) with its
    arrays copied into the uint8 array ``slot`` from ``pos`` while they fit,
    each replaced by its :class:`_Shared` place; the others stay (pickled)."""
    if isinstance(obj, np.ndarray):
        end = pos + obj.nbytes
        if obj.dtype.hasobject or end > len(slot):
            return obj, pos
        slot[pos:end].view(obj.dtype).reshape(obj.shape)[...] = obj
        return _Shared(pos, obj.dtype.str, obj.shape), (end + 63) // 64 * 64
    if isinstance(obj, (tuple, list)):
        out = []
        for x in obj:
            x, pos = _pack(x, slot, pos)
            out.append(x)
        return type(obj)(out), pos
    if isinstance(obj, dict):
        out = {}
        for key, x in obj.items():
            out[key], pos = _pack(x, slot, pos)
        return out, pos
    return obj, pos


def _unpack(obj, slot):
    """The inverse of :func:`_pack`: the arrays copied out of ``slot``."""
    if isinstance(obj, _Shared):
        size = int(np.prod(obj.shape, dtype=np.int64)) * np.dtype(obj.dtype).itemsize
        return slot[obj.offset:obj.offset + size].view(obj.dtype).reshape(obj.shape).copy()
    if isinstance(obj, (tuple, list)):
        return type(obj)(_unpack(x, slot) for x in obj)
    if isinstance(obj, dict):
        return {key: _unpack(x, slot) for key, x in obj.items()}
    return obj


class _Slots:
    """``depth`` slots of ``size`` bytes of memory shared by a worker and the
    parent (anonymous, inherited by the fork). The n-th result of a worker
    goes to slot ``n mod depth``: with at most ``depth`` chunks in flight per
    worker, the parent has copied a slot's arrays out before it is reused.
    Results so travel without pickling and pipe copies; what does not fit
    is pickled."""

    def __init__(self, depth, size):
        self.depth, self.size = depth, size
        self.memory = np.frombuffer(mmap.mmap(-1, depth * size), np.uint8)
        self.count = 0

    def next(self):
        k = self.count % self.depth
        self.count += 1
        return self.memory[k * self.size:(k + 1) * self.size]


def _die_with_parent(parent):
    """Ask the kernel to SIGKILL this process when its parent dies, whatever
    kills the parent (Linux prctl PR_SET_PDEATHSIG); if the parent is
    already gone, end now."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)         # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass                                            # not Linux: _get's liveness polling
    if os.getppid() != parent:
        os._exit(1)


def _worker_main(task, inbox, outbox, slots, parent):
    _die_with_parent(parent)
    tune_malloc()
    signal.signal(signal.SIGINT, signal.SIG_IGN)     # the parent stops the workers
    try:
        while True:
            item = inbox.get()
            if item is None:
                outbox.put(("done", task.finish()))
                return
            result, _ = _pack(task(item), slots.next())
            outbox.put(("ok", result))
    except BaseException:                             # reported by the parent
        outbox.put(("error", traceback.format_exc()))


class Workers:
    """Runs ``task`` (a callable with ``finish()``) over chunks in
    ``workers`` forked processes, each with its own copy of ``task`` and its
    state; ``workers=0`` runs it here. Chunk ``i`` goes to worker ``i mod
    workers`` and results are taken back in submission order, so what is
    done with them (writing, error reports) is the same as in one process.
    At most ``depth`` chunks per worker are in flight: memory does not grow
    with the input. Result arrays come back through shared memory
    (:class:`_Slots` of ``slot_bytes``)."""

    def __init__(self, task, workers, depth=3, slot_bytes=4 << 20, name="converter"):
        self.task, self.workers, self.name = task, int(workers), name
        self.limit = depth * max(self.workers, 1)
        self.procs, self.inbox, self.outbox, self.slots = [], [], [], []
        if self.workers:
            ctx = multiprocessing.get_context("fork")   # the task and its data, shared as is
            try:
                for w in range(self.workers):
                    self.inbox.append(ctx.Queue())
                    self.outbox.append(ctx.Queue())
                    self.slots.append(_Slots(depth, slot_bytes))
                    proc = ctx.Process(target=_worker_main, name=f"{name}-worker-{w}", daemon=True,
                                       args=(task, self.inbox[w], self.outbox[w], self.slots[w],
                                             os.getpid()))
                    proc.start()
                    self.procs.append(proc)
            except BaseException:
                self.close(abort=True)
                raise

    def map(self, items):
        """``(meta, result)`` for every ``(meta, task input)`` of ``items``, in order."""
        if not self.workers:
            for meta, item in items:
                yield meta, self.task(item)
            return
        flight = collections.deque()
        for i, (meta, item) in enumerate(items):
            if len(flight) >= self.limit:
                old, w = flight.popleft()
                yield old, _unpack(self._get(w), self.slots[w].next())
            w = i % self.workers
            self.inbox[w].put(item)
            flight.append((meta, w))
        while flight:
            old, w = flight.popleft()
            yield old, _unpack(self._get(w), self.slots[w].next())

    def _get(self, w):
        while True:
            try:
                kind, value = self.outbox[w].get(timeout=1.0)
                break
            except queue.Empty:
                if self.procs[w].is_alive():
                    continue
                try:
                    kind, value = self.outbox[w].get(timeout=1.0)
                    break
                except queue.Empty:
                    raise RuntimeError(f"{self.name} worker {w} died (exit code "
                                       f"{self.procs[w].exitcode})") from None
        if kind == "error":
            last = value.strip().splitlines()[-1]
            raise RuntimeError(f"{self.name} worker {w} failed: {last}\n{value}")
        return value

    def finish(self):
        """The ``finish()`` of every worker's task, then the workers end."""
        if not self.workers:
            return [self.task.finish()]
        for q in self.inbox:
            q.put(None)
        out = [self._get(w) for w in range(self.workers)]
        self.close()
        return out

    def close(self, abort=False):
        if not self.workers:
            self.task.close()
        for proc in self.procs:
            if abort and proc.is_alive():
                proc.terminate()
            proc.join()
        for q in self.inbox + self.outbox:
            if abort:
                q.cancel_join_thread()
            q.close()
        self.procs, self.inbox, self.outbox, self.slots = [], [], [], []
