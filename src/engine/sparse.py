"""Sparse (row-wise) training of a model's embedding table.

A CTR batch touches a few thousand of the table's millions of rows; updating
the whole table every step (what a dense gradient does) makes a step cost
grow with the table. Here a step costs what the batch touches:

1. on the host, with the batch (:func:`unique_rows`): the unique table ids of
   the batch, padded to a fixed length with the scratch row, and for every id
   its position in that list;
2. in the step (:class:`SparseTrainStep`): gather those rows, run the network
   on them (``forward_rows``), differentiate the loss with respect to the
   gathered rows and the dense weights;
3. update the rows with a row-wise optimizer (:class:`RowOptimizer`: SGD,
   Adagrad or lazy Adam, whose moments change only for the rows in the
   batch) and write them back with a scatter; the dense weights go through the
   ordinary optimizer.

The L2 penalty of the embeddings (``l2``) is applied to the rows used in the
batch (upstream DeepFM penalised the whole tables every step).
"""
import mindspore as ms
import numpy as np
import pandas as pd
from mindspore import Parameter, Tensor, nn, ops

from src.engine.native import kernel_ints, require_cpu
from src.engine.train_step import clip_by_global_norm, scale_by

ROW_OPTIMIZERS = ("sgd", "adagrad", "adam")


def unique_rows(ids, scratch_row, buckets=1):
    """``(uniq int32, inverse ids.shape int32)`` with ``uniq[inverse] == ids``:
    the distinct ids in order of first appearance (a hash table, pandas'
    ``factorize``: 15x faster than sorting with ``np.unique`` on a Criteo
    batch), padded with ``scratch_row``.

    ``buckets=1`` pads to ``ids.size`` (every batch one length, one compiled
    step). ``buckets=k`` pads to the next multiple of ``ids.size / k``: a
    Criteo batch of 1024 rows has about 6,000 unique ids of 39,936, and the
    step's gather, row optimizer and scatters then cost the ~7,500 rows of
    its bucket; each length used compiles one more graph."""
    ids = np.asarray(ids)
    inverse, values = pd.factorize(ids.reshape(-1))
    size = ids.size
    if buckets > 1 and size:
        step = -(-size // int(buckets))
        size = min(size, -(-len(values) // step) * step)
    return padded_rows(values, size, scratch_row), inverse.reshape(ids.shape).astype(np.int32)


def padded_rows(ids, size, scratch_row):
    """``ids`` as ``size`` int32 row ids: then ``scratch_row`` repeated (the
    row updates ignore a trailing run of one id)."""
    uniq = np.full(size, scratch_row, np.int32)
    uniq[:len(ids)] = ids
    return uniq


def same_rows(batches, scratch_row):
    """Batches of the sparse step, ``(uniq, inverse, ...)``, with every
    ``uniq`` padded (:func:`padded_rows`) to the longest among them, so that
    one graph of ``len(batches)`` steps takes them all."""
    longest = max(len(batch[0]) for batch in batches)
    return [batch if len(batch[0]) == longest else
            (padded_rows(batch[0], longest, scratch_row), *batch[1:]) for batch in batches]


class NetWithRowsLoss(nn.Cell):
    """``(rows, inverse, other inputs..., labels) -> loss + l2/2 * sum(rows^2)``
    for a network with ``forward_rows(rows, inverse, *others)``."""

    def __init__(self, network, loss_fn, l2=0.0):
        super().__init__(auto_prefix=False)
        self.network, self.loss_fn = network, loss_fn
        self.l2 = float(l2)

    def construct(self, rows, inverse, *args):
        logits = ops.cast(self.network.forward_rows(rows, inverse, *args[:-1]), ms.float32)
        loss = self.loss_fn(logits, args[-1])
        if self.l2 > 0:
            loss = loss + 0.5 * self.l2 * (rows * rows).sum()
        return loss


class RowOptimizer(nn.Cell):
    """Updates the rows ``uniq`` of ``table`` from their gradients.

    ``kind``: ``sgd``; ``adagrad`` (accumulator starts at
    ``initial_accumulator``); ``adam`` (lazy: moments of untouched rows are
    not decayed; bias correction by the global step). ``learning_rates`` is
    the per-step table the dense optimizer uses too. ``in_place``: update
    the rows with the CPU kernel of :mod:`src.engine.row_update` (ids
    distinct apart from the trailing padding) instead of scatters.
    """

    def __init__(self, table, kind, learning_rates, beta1=0.9, beta2=0.999, eps=1e-8,
                 initial_accumulator=0.0, in_place=False):
        super().__init__()
        if kind not in ROW_OPTIMIZERS:
            raise ValueError(f"sparse embedding training supports {', '.join(ROW_OPTIMIZERS)}; "
                             f"got optimizer {kind!r}")
        self.table, self.kind = table, kind
        self.learning_rate = Parameter(Tensor(np.asarray(learning_rates, np.float32)),
                                       name="row_learning_rate", requires_grad=False)
        self.step = Parameter(Tensor(0, ms.int32), name="row_step", requires_grad=False)
        self.last = len(learning_rates) - 1
        self.beta1, self.beta2, self.eps = float(beta1), float(beta2), float(eps)
        shape = table.shape
        if kind == "adagrad":
            self.accum = Parameter(Tensor(np.full(shape, initial_accumulator, np.float32)),
                                   name="row_accum", requires_grad=False)
        if kind == "adam":
            # a row's first and second moments side by side, (rows, 2, D): one
            # gather and one scatter serve both, and a scatter costs per row
            # index far more than per value (bench/notes.md)
            self.moments = Parameter(Tensor(np.zeros((shape[0], 2) + tuple(shape[1:]), np.float32)),
                                     name="row_moments", requires_grad=False)
            self.decay = Tensor(np.array([[self.beta1], [self.beta2]], np.float32))     # (2, 1)
            self.first, self.second = Tensor([0], ms.int32), Tensor([1], ms.int32)
        self.in_place = bool(in_place)
        if self.in_place:
            from src.engine.row_update import row_update_op
            from src.engine.runtime import kernel_threads
            self.update = row_update_op(kind)
            self.threads = kernel_ints("RowOptimizer", kernel_threads())
            self.hyper = Tensor(np.array([self.eps] if kind == "adagrad" else
                                         [self.beta1, self.beta2, self.eps], np.float32))

    def construct(self, uniq, rows, grad):
        lr = self.learning_rate[ops.minimum(self.step, self.last)]
        step = ops.assign_add(self.step, ops.ones_like(self.step))
        if self.in_place:
            return self._update_in_place(uniq, grad, lr, step)
        if self.kind == "sgd":
            new_rows = rows - lr * grad
        elif self.kind == "adagrad":
            acc = ops.gather(self.accum, uniq, 0) + grad * grad
            ops.scatter_update(self.accum, uniq, acc)
            new_rows = rows - lr * grad / (ops.sqrt(acc) + self.eps)
        else:
            t = ops.cast(step, ms.float32)
            fresh = ops.stack((grad, grad * grad), 1)                           # (N, 2, D)
            moments = self.decay * ops.gather(self.moments, uniq, 0) + (1.0 - self.decay) * fresh
            ops.scatter_update(self.moments, uniq, moments)
            # the halves by gathers on axis 1: slicing moments[:, 0] took 3 ms on CPU
            m = ops.gather(moments, self.first, 1).reshape(grad.shape)
            v = ops.gather(moments, self.second, 1).reshape(grad.shape)
            corrected = lr * ops.sqrt(1.0 - ops.pow(self.beta2, t)) / (1.0 - ops.pow(self.beta1, t))
            new_rows = rows - corrected * m / (ops.sqrt(v) + self.eps)
        return ops.scatter_update(self.table, uniq, new_rows)

    def _update_in_place(self, uniq, grad, lr, step):
        """The same update by one kernel writing the table (and state) rows."""
        lr = lr.reshape((1,))
        if self.kind == "sgd":
            return self.update(self.table, uniq, grad, lr, self.threads)
        if self.kind == "adagrad":
            return self.update(self.table, uniq, grad, self.accum, ops.concat((lr, self.hyper)),
                               self.threads)
        t = ops.cast(step, ms.float32)
        corrected = lr * ops.sqrt(1.0 - ops.pow(self.beta2, t)) / (1.0 - ops.pow(self.beta1, t))
        return self.update(self.table, uniq, grad, self.moments, ops.concat((corrected, self.hyper)),
                           self.threads)


def sum_copies(index, grads):
    """``(n,) ids, (n, D) -> (n, D)``: for each entry of ``index``, the sum of
    ``grads`` over every entry naming the same row (in a graph; no buffer the
    size of the table)."""
    _, slot = ops.unique(index)                         # entry -> its distinct id's slot
    return ops.gather(ops.unsorted_segment_sum(grads, slot, index.shape[0]), slot, 0)


def distributed_step():
    """Whether train steps built now exchange gradients between ranks."""
    parallel = ms.get_auto_parallel_context("parallel_mode")
    return parallel in (ms.ParallelMode.DATA_PARALLEL, ms.ParallelMode.HYBRID_PARALLEL)


def rows_between_ranks(table):
    """Whether a sparse step built now sends ``table``'s rows or their
    gradients between ranks every step: a sharded table, or a data-parallel run."""
    return bool(table.sharded) or distributed_step()


def in_place_rows(cfg, distributed):
    """Whether the row optimizer updates rows with the in-place CPU kernel:
    ``row_update: kernel`` in a single-process run (a distributed step may
    name a row once per rank, which only the scatter handles; such runs use
    the graph's scatters whatever the key says)."""
    mode = cfg.get("row_update", "graph")
    if mode not in ("graph", "kernel"):
        raise ValueError(f"row_update must be graph or kernel, got {mode!r}")
    if mode == "kernel":
        require_cpu("row_update: kernel", "set row_update: graph")
    return mode == "kernel" and not distributed


class SparseTrainStep(nn.Cell):
    """``(uniq, inverse, other inputs..., labels) -> loss``: one step with the
    table updated row-wise and the dense weights by ``optimizer``.

    ``loss_scale`` (static) scales the loss before the backward pass and
    unscales the gradients (float16 on Ascend/GPU). ``clip_norm`` clips the
    dense and row gradients together by their global norm.
    """

    def __init__(self, net_with_loss, table, optimizer, row_optimizer, clip_norm=0.0,
                 loss_scale=1.0):
        super().__init__(auto_prefix=False)
        self.network, self.table = net_with_loss, table
        self.optimizer, self.row_optimizer = optimizer, row_optimizer
        self.weights = optimizer.parameters
        self.grad = ops.GradOperation(get_all=True, get_by_list=True, sens_param=True)
        self.clip = clip_norm > 0
        self.clip_norm = Tensor([float(clip_norm) if clip_norm > 0 else 1.0], ms.float32)
        self.scale = float(loss_scale)
        self.inverse_scale = Tensor(1.0 / self.scale, ms.float32)
        self.hyper_map = ops.HyperMap()
        self.distributed = distributed_step()
        if self.distributed:
            from mindspore.communication import get_group_size
            self.ranks = get_group_size()
            self.grad_reducer = nn.DistributedGradReducer(self.weights, mean=True, degree=self.ranks)
            self.all_gather = ops.AllGather()
            # the row optimizer's table-sized state starts equal on every rank
            # (or is the rank's own shard): kept out of the initial broadcast, like the table
            for state in (getattr(row_optimizer, "accum", None), getattr(row_optimizer, "moments", None)):
                if state is not None:
                    state.layerwise_parallel = True

    def _gradients(self, rows, inverse, inputs):
        """``(loss, dense gradients, row gradient)`` of this rank's batch,
        unscaled and clipped."""
        loss = self.network(rows, inverse, *inputs)
        sens = ops.fill(loss.dtype, loss.shape, self.scale)
        input_grads, grads = self.grad(self.network, self.weights)(rows, inverse, *inputs, sens)
        row_grad = input_grads[0] / self.scale
        if self.scale != 1.0:
            grads = self.hyper_map(ops.partial(scale_by, self.inverse_scale), grads)
        if self.clip:
            clipped = clip_by_global_norm(grads + (row_grad,), self.clip_norm)
            grads, row_grad = clipped[:-1], clipped[-1]
        return loss, grads, row_grad

    def construct(self, uniq, inverse, *inputs):
        rows = ops.gather(self.table, uniq, 0)
        loss, grads, row_grad = self._gradients(rows, inverse, inputs)
        if self.distributed:
            grads = self.grad_reducer(grads)
            uniq, rows, row_grad = self._average_rows(uniq, row_grad)
        # Every read of the table comes before the step's first write of any
        # parameter: reads on either side of a write are separate Loads, and
        # MindSpore copies a parameter loaded twice in a graph that updates it
        # whole before each read (TensorMove: the whole table, every step).
        loss = ops.depend(loss, self.optimizer(grads))
        return ops.depend(loss, self.row_optimizer(uniq, rows, row_grad))

    def _average_rows(self, uniq, row_grad):
        """Every rank's rows and their gradient averaged over the ranks. A row
        several ranks touched appears once per rank, each time with the same
        summed gradient, so the row optimizer computes the same new value for
        each copy and every rank applies the same update."""
        ids = self.all_gather(uniq)                                     # (ranks * N,)
        grads = self.all_gather(row_grad) / self.ranks                  # (ranks * N, D)
        return ids, ops.gather(self.table, ids, 0), sum_copies(ids, grads)


def rows_transform(transform, table_ids, scratch_row, buckets=1):
    """Wrap a batch transform ``batch -> (cat, *rest)`` into the sparse step's
    ``batch -> (uniq, inverse, *rest)`` (``table_ids(cat)`` gives the table
    rows the batch looks up; ``buckets``: see :func:`unique_rows`)."""
    if int(buckets) < 1:
        raise ValueError(f"row_buckets must be a positive integer, got {buckets}")

    def apply(batch):
        cat, *rest = transform(batch)
        uniq, inverse = unique_rows(table_ids(cat), scratch_row, buckets)
        return (uniq, inverse, *rest)
    return apply


def build_sparse_train_step(network, net_with_loss, optimizer, learning_rates, cfg):
    """The :class:`SparseTrainStep` of ``network`` (which has an ``embedding``
    table) from the config's optimizer, loss scaling and clipping keys."""
    if cfg.loss_scale_mode == "dynamic":
        raise ValueError("models with a sparse embedding table support loss_scale_mode none or "
                         "static, not dynamic")
    table = network.embedding
    row_optimizer = RowOptimizer(table.weight, cfg.optimizer, learning_rates,
                                 beta1=cfg.adam_beta1, beta2=cfg.adam_beta2, eps=cfg.adam_eps,
                                 in_place=in_place_rows(cfg, rows_between_ranks(table)))
    scale = float(cfg.loss_scale) if cfg.loss_scale_mode == "static" else 1.0
    if table.sharded:
        from src.engine.sharded import ShardedTrainStep, native_alltoall
        step = ShardedTrainStep(net_with_loss, table.weight, optimizer, row_optimizer, table.plan,
                                table.rank, clip_norm=cfg.clip_norm, loss_scale=scale,
                                native_alltoall=native_alltoall(cfg, ms.get_context("device_target")))
    else:
        step = SparseTrainStep(net_with_loss, table.weight, optimizer, row_optimizer,
                               clip_norm=cfg.clip_norm, loss_scale=scale)
    step.set_train(True)
    return step
