"""The MMoE network: shared experts, one softmax gate and one tower per task."""
import numpy as np
from mindspore import Parameter, Tensor, nn, ops

from src.layers.fields import NEVER, fold_batch
from src.layers.initializers import init_stack, make_initializer
from src.layers.towers import TaskTowers

MIXTURES = ("matmul", "batch_matmul", "broadcast")
# the smallest batch of the matmul mixture: on CPU it was the faster form at
# 256 rows and up, the batched product at 32 (bench/notes.md)
MATMUL_FROM = 256


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
      computed as ``mixture`` says: ``matmul`` (2-D products with constant 0/1
      matrices: the gates repeated U times and the experts T times, both
      ``(B, T*E*U)``, multiplied and summed over E; the CPU config's form, for
      batches of ``matmul_from`` rows or more, smaller ones take
      ``batch_matmul``), ``batch_matmul`` (one ``(T, E) x (E, U)`` product per sample) or
      ``broadcast`` (the product ``(B, T, E, 1) * (B, 1, E, U)`` summed over
      E; export's form, for MindSpore Lite). All give the same outputs and
      take the same checkpoints (the 0/1 matrices are not parameters);
    - towers: per task an MLP ``U -> tower_units... -> 1``
      (:class:`src.layers.TaskTowers`; ``tower_output_init`` is its
      ``output_init``).

    With an ``input_layer`` that can be folded (``matrix()`` and
    ``fold_from``, as :class:`src.layers.fields.FieldEmbedding` has), batches
    of ``fold_batch`` rows or more compute the experts and gates from the
    raw input through the products of the layer's matrix with their kernels
    (fewer multiply-adds from that size on; the same function and
    parameters). Shapes are static, so the choice is made when the graph is
    compiled.

    ``input_product``: a cell computing ``x @ w + bias`` that replaces the
    input's products and biases in eval mode (prediction), e.g.
    :class:`src.layers.sparse_input.SparseInputProduct`, which skips the
    one-hot input's zeros. It is applied once, to the experts' and gates'
    kernels side by side (one pass over the input), folded through the input
    layer's matrix from ``fold_batch`` rows, or directly without an input
    layer; smaller batches with an input layer, and training, keep the
    matrix products.

    ``predict_mixture``: a cell computing the experts' ReLU, the gates'
    softmax and the mixture in eval mode, from ``(experts, gates)`` (or one
    tensor holding both, the experts' columns first, and None) to
    ``(B, T*U)``, e.g. :class:`src.layers.gated_mixture.GatedMixture`;
    ``train_mixture``: such a cell with a gradient, for training. Without
    one, that mode computes the form ``mixture`` names.
    """

    def __init__(self, input_dim, num_tasks=2, num_experts=8, expert_units=4, tower_units=(8,),
                 init="truncated_normal", init_scale=0.01, tower_dropout=0.0,
                 mixture="batch_matmul", input_layer=None, matmul_from=MATMUL_FROM,
                 input_product=None, predict_mixture=None, train_mixture=None,
                 tower_output_init="init"):
        super().__init__()
        self.input_layer = input_layer if input_layer is not None else nn.Identity()
        self.input_product = input_product
        self.predict_mixture, self.train_mixture = predict_mixture, train_mixture
        self.direct_input = input_layer is None
        for name, value in (("input_dim", input_dim), ("num_tasks", num_tasks),
                            ("num_experts", num_experts), ("expert_units", expert_units)):
            if int(value) < 1:
                raise ValueError(f"MMoE: {name} must be a positive integer, got {value}")
        if mixture not in MIXTURES:
            raise ValueError(f"MMoE: mixture must be one of {MIXTURES}, got {mixture!r}")
        self.num_tasks, self.num_experts, self.expert_units = num_tasks, num_experts, expert_units
        self.mixture = mixture
        self.matmul_from = int(matmul_from) if mixture == "matmul" else NEVER
        if mixture == "matmul":
            repeat, tile, over_experts = mixture_matrices(num_tasks, num_experts, expert_units)
            self.repeat_gates, self.tile_experts = Tensor(repeat), Tensor(tile)
            self.sum_experts = Tensor(over_experts)
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
                                 dropout=tower_dropout, output_init=tower_output_init)
        self.matmul = ops.MatMul()
        self.batch_matmul = ops.BatchMatMul()
        self.relu = nn.ReLU()
        self.softmax = nn.Softmax(axis=-1)
        self.fold_batch = fold_batch(self.input_layer,
                                     num_experts * expert_units + num_tasks * num_experts)

    def construct(self, x):
        experts, gates = self._experts_and_gates(x)
        kernel = self.train_mixture if self.training else self.predict_mixture
        if kernel is not None:
            mixed = kernel(experts, gates)                                            # (B, T*U)
        else:
            if gates is None:          # one tensor: the experts' columns, then the gates'
                width = self.num_experts * self.expert_units
                experts, gates = experts[:, :width], experts[:, width:]
            mixed = self._mix(self.relu(experts), gates)
        mixed = mixed.reshape((-1, self.num_tasks, self.expert_units))
        return self.towers(mixed).reshape((-1, self.num_tasks))                      # (B, T)

    def _mix(self, experts, gates):
        """The gate-weighted sum of the expert outputs ``(B, E*U)`` by the
        gate logits ``(B, T*E)``, in the form ``mixture`` names."""
        gates = self.softmax(gates.reshape(
            (-1, self.num_tasks, self.num_experts))).reshape(
            (-1, self.num_tasks * self.num_experts))                                   # (B, T*E)
        if experts.shape[0] >= self.matmul_from:
            dtype = gates.dtype                                              # float16 under amp
            product = (self.matmul(gates, ops.cast(self.repeat_gates, dtype))
                       * self.matmul(experts, ops.cast(self.tile_experts, dtype)))  # (B, T*E*U)
            return self.matmul(product, ops.cast(self.sum_experts, dtype))           # (B, T*U)
        gates = gates.reshape((-1, self.num_tasks, self.num_experts))                  # (B, T, E)
        experts = experts.reshape((-1, self.num_experts, self.expert_units))           # (B, E, U)
        if self.mixture == "broadcast":
            return (gates.reshape((-1, self.num_tasks, self.num_experts, 1))
                    * experts.reshape((-1, 1, self.num_experts, self.expert_units))).sum(2)
        return self.batch_matmul(gates, experts)                                       # (B, T, U)

    def _experts_and_gates(self, x):
        """The experts' and gates' products plus biases, ``(B, E*U)`` and
        ``(B, T*E)``; through ``input_product``, one tensor holding both (the
        experts' columns first) and None."""
        folded = x.shape[0] >= self.fold_batch
        if self.input_product is not None and not self.training and (folded or self.direct_input):
            kernel = ops.concat((self.expert_kernel, self.gate_kernel), 1)
            if folded:
                kernel = self.matmul(self.input_layer.matrix(), kernel)
            bias = ops.concat((self.expert_bias, self.gate_bias))
            return self.input_product(x, kernel, bias), None
        if folded:
            matrix = self.input_layer.matrix()
            return (self.matmul(x, self.matmul(matrix, self.expert_kernel)) + self.expert_bias,
                    self.matmul(x, self.matmul(matrix, self.gate_kernel)) + self.gate_bias)
        x = self.input_layer(x)
        return (self.matmul(x, self.expert_kernel) + self.expert_bias,
                self.matmul(x, self.gate_kernel) + self.gate_bias)


def mixture_matrices(num_tasks, num_experts, expert_units):
    """The 0/1 matrices of the ``matmul`` mixture, over the index ``(t, e, u)``
    of ``T*E*U`` (row-major): ``repeat (T*E, T*E*U)`` copies gate ``(t, e)``
    to every ``u``, ``tile (E*U, T*E*U)`` copies expert output ``(e, u)`` to
    every ``t``, ``over_experts (T*E*U, T*U)`` sums ``(t, e, u)`` over ``e``."""
    t, e, u = num_tasks, num_experts, expert_units
    index = np.arange(t * e * u).reshape(t, e, u)
    repeat = np.zeros((t * e, t * e * u), np.float32)
    repeat[(index // u).ravel(), index.ravel()] = 1
    tile = np.zeros((e * u, t * e * u), np.float32)
    tile[(index % (e * u)).ravel(), index.ravel()] = 1
    over_experts = np.zeros((t * e * u, t * u), np.float32)
    over_experts[index.ravel(), (index // (e * u) * u + index % u).ravel()] = 1
    return repeat, tile, over_experts
