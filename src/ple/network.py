"""The PLE network: stacked Customized Gate Control (CGC) levels, then one
tower per task."""
import numpy as np
from mindspore import Parameter, ParameterTuple, Tensor, nn, ops

from src.layers.fields import fold_batch
from src.layers.initializers import init_matrix, init_stack, make_initializer
from src.layers.towers import TaskTowers


def _stack(initializer, count, fan_in, fan_out, name):
    return Parameter(Tensor(init_stack(initializer, count, fan_in, fan_out)), name=name)


def _matrix(initializer, fan_in, fan_out, name):
    return Parameter(Tensor(init_matrix(initializer, fan_in, fan_out)), name=name)


def _zeros(shape, name):
    return Parameter(Tensor(np.zeros(shape, np.float32)), name=name)


class PLE(nn.Cell):
    """Progressive Layered Extraction.

    Shapes: input ``x`` ``(B, F)`` (F: the output width of ``input_layer``,
    an optional cell applied first); output ``(B, T)``, one logit per task.

    Each of the ``num_levels`` levels is a CGC layer with, per task, ``m_t =
    task_experts`` single-layer ReLU experts of ``expert_units`` (U) units
    and ``m_s = shared_experts`` experts shared by all tasks:

    - task ``k``'s gate is a softmax over its own ``m_t`` experts and the
      ``m_s`` shared ones, computed from task ``k``'s input to the level; its
      mixture ``(B, U)`` is task ``k``'s input to the next level (or tower);
    - below the top level a shared gate, computed from the shared input, mixes
      all ``T * m_t + m_s`` experts (task 0's, task 1's, ..., then the shared
      ones) into the shared input of the next level;
    - the first level's task and shared inputs are all ``x``.

    Per level the task experts and gates are stacked weights ``(T, D, .)``,
    the shared ones plain ``(D, .)`` matrices; towers are
    :class:`src.layers.towers.TaskTowers` (``tower_output_init`` is their
    ``output_init``). ``num_levels=1`` is the
    single-level CGC model of the paper.

    With an ``input_layer`` that can be folded (``matrix()`` and
    ``fold_from``, as :class:`src.layers.fields.FieldEmbedding` has), batches
    of ``fold_batch`` rows or more compute the first level from the raw
    input through the products of the layer's matrix with its kernels, as
    MMoE does: 2-D products (the level reads one input for every task, so the
    stacked kernels go side by side, ``(D, T*.)``), fewer multiply-adds from
    that size on, the same function and parameters.
    ``input_product``: a cell computing ``x @ w + bias`` that replaces that
    first level's product in prediction where it reads the raw input
    (folded, or with no input layer), e.g.
    :class:`src.layers.sparse_input.SparseInputProduct`, which skips the
    one-hot input's zeros.
    """

    def __init__(self, input_dim, num_tasks=2, num_levels=2, task_experts=2, shared_experts=2,
                 expert_units=8, tower_units=(8,), init="truncated_normal", init_scale=0.01,
                 tower_dropout=0.0, input_layer=None, tower_output_init="init",
                 input_product=None):
        super().__init__()
        self.input_layer = input_layer if input_layer is not None else nn.Identity()
        for name, value in (("input_dim", input_dim), ("num_tasks", num_tasks),
                            ("num_levels", num_levels), ("task_experts", task_experts),
                            ("shared_experts", shared_experts), ("expert_units", expert_units)):
            if int(value) < 1:
                raise ValueError(f"PLE: {name} must be a positive integer, got {value}")
        t, m_t, m_s, u = int(num_tasks), int(task_experts), int(shared_experts), int(expert_units)
        self.num_tasks, self.num_levels, self.task_experts = t, int(num_levels), m_t
        self.input_dim = int(input_dim)
        self.shared_experts, self.expert_units = m_s, u
        weight_init = make_initializer(init, init_scale)
        task_k, task_b, gate_k, gate_b, shared_k, shared_b, sgate_k, sgate_b = ([] for _ in range(8))
        for level in range(self.num_levels):
            d = int(input_dim) if level == 0 else u
            task_k.append(_stack(weight_init, t, d, m_t * u, f"task_expert_kernel{level}"))
            task_b.append(_zeros((t, 1, m_t * u), f"task_expert_bias{level}"))
            gate_k.append(_stack(weight_init, t, d, m_t + m_s, f"task_gate_kernel{level}"))
            gate_b.append(_zeros((t, 1, m_t + m_s), f"task_gate_bias{level}"))
            shared_k.append(_matrix(weight_init, d, m_s * u, f"shared_expert_kernel{level}"))
            shared_b.append(_zeros((m_s * u,), f"shared_expert_bias{level}"))
            if level < self.num_levels - 1:
                sgate_k.append(_matrix(weight_init, d, t * m_t + m_s, f"shared_gate_kernel{level}"))
                sgate_b.append(_zeros((t * m_t + m_s,), f"shared_gate_bias{level}"))
        self.task_expert_kernels, self.task_expert_biases = ParameterTuple(task_k), ParameterTuple(task_b)
        self.task_gate_kernels, self.task_gate_biases = ParameterTuple(gate_k), ParameterTuple(gate_b)
        self.shared_expert_kernels = ParameterTuple(shared_k)
        self.shared_expert_biases = ParameterTuple(shared_b)
        self.shared_gate_kernels = ParameterTuple(sgate_k)
        self.shared_gate_biases = ParameterTuple(sgate_b)
        self.towers = TaskTowers(t, u, list(tower_units), 1, weight_init, dropout=tower_dropout,
                                 output_init=tower_output_init)
        self.matmul = ops.MatMul()
        self.batch_matmul = ops.BatchMatMul()
        self.relu = nn.ReLU()
        self.softmax = nn.Softmax(axis=-1)
        self.input_product = input_product
        self.direct_input = input_layer is None
        # level 0's product columns: task experts, task gates, shared experts (, shared gate)
        widths = [t * m_t * u, t * (m_t + m_s), m_s * u]
        if self.num_levels > 1:
            widths.append(t * m_t + m_s)
        self.first_level_cuts = tuple(int(c) for c in np.cumsum([0] + widths))
        self.fold_batch = fold_batch(self.input_layer, self.first_level_cuts[-1])

    def construct(self, x):
        t, m_t, m_s, u = self.num_tasks, self.task_experts, self.shared_experts, self.expert_units
        folded = x.shape[0] >= self.fold_batch
        if folded or (self.direct_input and self.input_product is not None and not self.training):
            own, shared, gates, shared_gate = self._first_level_2d(x, folded)
        else:
            x = self.input_layer(x)
            own, shared, gates, shared_gate = self._level(
                0, ops.tile(x.reshape((1, -1, self.input_dim)), (t, 1, 1)), x)
        task_in, shared_in = own, shared          # placeholders: each level sets them for the next
        for level in range(self.num_levels):
            if level > 0:
                own, shared, gates, shared_gate = self._level(level, task_in, shared_in)
            experts = ops.concat((own, ops.tile(shared.reshape((1, -1, m_s, u)), (t, 1, 1, 1))),
                                 axis=2)                                            # (T, B, m_t+m_s, U)
            next_task = (gates.reshape((t, -1, m_t + m_s, 1)) * experts).sum(2)    # (T, B, U)
            if level < self.num_levels - 1:
                every = ops.concat((ops.transpose(own, (1, 0, 2, 3)).reshape((-1, t * m_t, u)),
                                    shared), axis=1)                                # (B, T*m_t+m_s, U)
                shared_in = (shared_gate.reshape((-1, t * m_t + m_s, 1)) * every).sum(1)
            task_in = next_task
        return self.towers(ops.transpose(task_in, (1, 0, 2))).reshape((-1, t))     # (B, T)

    def _level(self, level, task_in, shared_in):
        """A level's experts and gates from the tasks' inputs ``(T, B, D)`` and
        the shared input ``(B, D)``: the task experts ``(T, B, m_t, U)`` and the
        shared experts ``(B, m_s, U)`` after ReLU, the task gates ``(T, B,
        m_t+m_s)`` and the shared gate ``(B, T*m_t+m_s)`` after softmax (None
        at the top level)."""
        t, m_t, m_s, u = self.num_tasks, self.task_experts, self.shared_experts, self.expert_units
        own = self.relu(self.batch_matmul(task_in, self.task_expert_kernels[level])
                        + self.task_expert_biases[level]).reshape((t, -1, m_t, u))
        shared = self.relu(self.matmul(shared_in, self.shared_expert_kernels[level])
                           + self.shared_expert_biases[level]).reshape((-1, m_s, u))
        gates = self.softmax(self.batch_matmul(task_in, self.task_gate_kernels[level])
                             + self.task_gate_biases[level])
        shared_gate = None
        if level < self.num_levels - 1:
            shared_gate = self.softmax(self.matmul(shared_in, self.shared_gate_kernels[level])
                                       + self.shared_gate_biases[level])
        return own, shared, gates, shared_gate

    def _first_level_2d(self, x, folded):
        """Level 0 as :meth:`_level` gives it, from the raw input (``folded``:
        through the input layer's matrix) by 2-D products, the stacked task
        kernels side by side: one product per kernel, or in prediction
        through ``input_product`` one call with every kernel side by side,
        whose columns are then cut apart (as one product in training, the
        cuts' gradients cost more than the products they save:
        bench/notes.md). Used from ``fold_batch`` rows (below, the batched
        products over the input repeated per task are the faster form in
        training)."""
        t, m_t, m_s, u = self.num_tasks, self.task_experts, self.shared_experts, self.expert_units
        d = self.input_dim
        kernels = [ops.transpose(self.task_expert_kernels[0], (1, 0, 2)).reshape((d, -1)),
                   ops.transpose(self.task_gate_kernels[0], (1, 0, 2)).reshape((d, -1)),
                   self.shared_expert_kernels[0]]
        biases = [self.task_expert_biases[0].reshape((-1,)),
                  self.task_gate_biases[0].reshape((-1,)), self.shared_expert_biases[0]]
        if self.num_levels > 1:
            kernels.append(self.shared_gate_kernels[0])
            biases.append(self.shared_gate_biases[0])
        if self.input_product is not None and not self.training:
            kernel = ops.concat(kernels, axis=1)
            if folded:
                kernel = self.matmul(self.input_layer.matrix(), kernel)
            out = self.input_product(x, kernel, ops.concat(biases, axis=0))
            cut = self.first_level_cuts
            products = [out[:, cut[i]:cut[i + 1]] for i in range(len(kernels))]
        else:
            if folded:
                matrix = self.input_layer.matrix()
                kernels = [self.matmul(matrix, k) for k in kernels]
            products = [self.matmul(x, k) + b for k, b in zip(kernels, biases)]
        own = self.relu(products[0])
        own = ops.transpose(own.reshape((-1, t, m_t, u)), (1, 0, 2, 3))              # (T, B, m_t, U)
        gates = self.softmax(ops.transpose(products[1].reshape((-1, t, m_t + m_s)), (1, 0, 2)))
        shared = self.relu(products[2]).reshape((-1, m_s, u))
        shared_gate = None
        if self.num_levels > 1:
            shared_gate = self.softmax(products[3])
        return own, shared, gates, shared_gate
