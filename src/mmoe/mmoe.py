"""The MMoE network: shared experts, one softmax gate and one tower per task."""
import numpy as np
from mindspore import Parameter, Tensor, nn, ops

from src.layers.initializers import init_stack, make_initializer
from src.layers.towers import TaskTowers

MIXTURES = ("batch_matmul", "broadcast")
_NEVER = 2 ** 31 - 1


class MMoE(nn.Cell):
    """Multi-gate Mixture-of-Experts.

    Shapes: input ``x`` is ``(B, F)`` (F = ``input_dim``: the feature map's
    input width, or the output width of ``input_layer``, a cell applied to the
    input first, e.g. :class:`src.layers.fields.FieldEmbedding`); output is
    ``(B, T)``: one logit per task (apply a sigmoid for probabilities, see
    :meth:`predict`).

    - experts: ``E`` single-layer ReLU experts of ``expert_units`` (U) units,
      computed as one ``(F, E*U)`` matrix product;
    - gates: one softmax gate per task over the E experts, computed as one
      ``(F, T*E)`` product;
    - mixture: per task, the gate-weighted sum of expert outputs ``(B, T, U)``,
      computed as ``mixture`` says: ``batch_matmul`` (one ``(T, E) x (E, U)``
      product per sample; the faster form in MindSpore on CPU) or
      ``broadcast`` (the product ``(B, T, E, 1) * (B, 1, E, U)`` summed over
      E; the faster form in MindSpore Lite, hence export's choice). Both give
      the same outputs and take the same checkpoints;
    - towers: per task an MLP ``U -> tower_units... -> 1``
      (:class:`src.layers.TaskTowers`).

    With an ``input_layer`` that can be folded (``matrix()`` and
    ``fold_from``, as :class:`src.layers.fields.FieldEmbedding` has), batches
    of ``fold_batch`` rows or more compute the experts and gates from the
    raw input through the products of the layer's matrix with their kernels
    (fewer multiply-adds from that size on; the same function and
    parameters). Shapes are static, so the choice is made when the graph is
    compiled.
    """

    def __init__(self, input_dim, num_tasks=2, num_experts=8, expert_units=4, tower_units=(8,),
                 init="truncated_normal", init_scale=0.01, tower_dropout=0.0,
                 mixture="batch_matmul", input_layer=None):
        super().__init__()
        self.input_layer = input_layer if input_layer is not None else nn.Identity()
        for name, value in (("input_dim", input_dim), ("num_tasks", num_tasks),
                            ("num_experts", num_experts), ("expert_units", expert_units)):
            if int(value) < 1:
                raise ValueError(f"MMoE: {name} must be a positive integer, got {value}")
        if mixture not in MIXTURES:
            raise ValueError(f"MMoE: mixture must be one of {MIXTURES}, got {mixture!r}")
        self.num_tasks, self.num_experts, self.expert_units = num_tasks, num_experts, expert_units
        self.broadcast_mixture = mixture == "broadcast"
        weight_init = make_initializer(init, init_scale)
        experts = init_stack(weight_init, num_experts, input_dim, expert_units)   # (E, F, U)
        self.expert_kernel = Parameter(Tensor(np.ascontiguousarray(
            experts.transpose(1, 0, 2).reshape(input_dim, num_experts * expert_units))),
            name="expert_kernel")
        self.expert_bias = Parameter(Tensor(np.zeros(num_experts * expert_units, np.float32)),
                                     name="expert_bias")
        gates = init_stack(weight_init, num_tasks, input_dim, num_experts)          # (T, F, E)
        self.gate_kernel = Parameter(Tensor(np.ascontiguousarray(
            gates.transpose(1, 0, 2).reshape(input_dim, num_tasks * num_experts))), name="gate_kernel")
        self.gate_bias = Parameter(Tensor(np.zeros(num_tasks * num_experts, np.float32)), name="gate_bias")
        self.towers = TaskTowers(num_tasks, expert_units, list(tower_units), 1, weight_init,
                                 dropout=tower_dropout)
        self.matmul = ops.MatMul()
        self.batch_matmul = ops.BatchMatMul()
        self.relu = nn.ReLU()
        self.softmax = nn.Softmax(axis=-1)
        fold_from = getattr(self.input_layer, "fold_from", None)
        self.fold_batch = (fold_from(num_experts * expert_units + num_tasks * num_experts)
                           if fold_from is not None else None) or _NEVER

    def construct(self, x):
        if x.shape[0] >= self.fold_batch:
            matrix = self.input_layer.matrix()
            experts = self.matmul(x, self.matmul(matrix, self.expert_kernel))
            gates = self.matmul(x, self.matmul(matrix, self.gate_kernel))
        else:
            x = self.input_layer(x)
            experts = self.matmul(x, self.expert_kernel)
            gates = self.matmul(x, self.gate_kernel)
        experts = self.relu(experts + self.expert_bias)
        experts = experts.reshape((-1, self.num_experts, self.expert_units))          # (B, E, U)
        gates = self.softmax((gates + self.gate_bias).reshape(
            (-1, self.num_tasks, self.num_experts)))                                   # (B, T, E)
        if self.broadcast_mixture:
            mixed = (gates.reshape((-1, self.num_tasks, self.num_experts, 1))
                     * experts.reshape((-1, 1, self.num_experts, self.expert_units))).sum(2)
        else:
            mixed = self.batch_matmul(gates, experts)                                 # (B, T, U)
        return self.towers(mixed).reshape((-1, self.num_tasks))                      # (B, T)
