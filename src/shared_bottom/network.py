"""The Shared-Bottom network: a shared ReLU MLP, then one tower per task."""
from mindspore import nn, ops

from src.layers.fields import fold_batch
from src.layers.initializers import make_initializer
from src.layers.mlp import MLP
from src.layers.towers import TaskTowers


class SharedBottom(nn.Cell):
    """Hard parameter sharing for multi-task learning.

    Shapes: input ``x`` ``(B, F)`` (F: the output width of ``input_layer``,
    an optional cell applied first); output ``(B, T)``, one logit per task.

    - bottom: an MLP ``F -> bottom_units...`` with ReLU after every layer,
      shared by all tasks;
    - towers: per task an MLP ``bottom_units[-1] -> tower_units... -> 1``
      (:class:`src.layers.towers.TaskTowers`, ``tower_output_init`` its
      ``output_init``), all computed at once.

    With an ``input_layer`` that can be folded (``matrix()`` and
    ``fold_from``, as :class:`src.layers.fields.FieldEmbedding` has), batches
    of ``fold_batch`` rows or more compute the bottom's first product from the
    raw input through the layer's matrix times its weight (fewer multiply-adds
    from that size on; the same function and parameters), as MMoE does.
    ``input_product``: a cell computing ``x @ w + bias`` that replaces that
    first product in prediction where it reads the raw input (folded, or
    with no input layer), e.g.
    :class:`src.layers.sparse_input.SparseInputProduct`, which skips the
    one-hot input's zeros.
    """

    def __init__(self, input_dim, num_tasks=2, bottom_units=(32,), tower_units=(8,),
                 init="truncated_normal", init_scale=0.01, tower_dropout=0.0, input_layer=None,
                 tower_output_init="init", input_product=None):
        super().__init__()
        self.input_layer = input_layer if input_layer is not None else nn.Identity()
        bottom_units = [int(u) for u in bottom_units]
        if int(input_dim) < 1 or int(num_tasks) < 1 or not bottom_units:
            raise ValueError(f"SharedBottom: input_dim and num_tasks must be positive and "
                             f"bottom_units non-empty, got {input_dim}, {num_tasks}, "
                             f"{bottom_units}")
        weight_init = make_initializer(init, init_scale)
        self.num_tasks, self.width = int(num_tasks), bottom_units[-1]
        self.bottom = MLP([int(input_dim)] + bottom_units, weight_init, last_activation=True)
        self.towers = TaskTowers(self.num_tasks, self.width, list(tower_units), 1, weight_init,
                                 dropout=tower_dropout, output_init=tower_output_init)
        self.matmul = ops.MatMul()
        self.fold_batch = fold_batch(self.input_layer, bottom_units[0])
        self.input_product = input_product
        self.direct_input = input_layer is None

    def construct(self, x):
        folded = x.shape[0] >= self.fold_batch
        raw_product = self.input_product is not None and not self.training
        if folded or (raw_product and self.direct_input):
            layers = self.bottom.layers
            first = layers[0]
            weight = first.weight
            if folded:
                weight = self.matmul(self.input_layer.matrix(), weight)
            if raw_product:
                h = self.input_product(x, weight, first.bias)
            else:
                h = first.finish(self.matmul(x, weight))
            for i in range(1, len(layers)):
                h = layers[i](h)
        else:
            h = self.bottom(self.input_layer(x))
        shared = h.reshape((-1, 1, self.width))                                  # (B, 1, D)
        per_task = ops.tile(shared, (1, self.num_tasks, 1))                     # (B, T, D)
        return self.towers(per_task).reshape((-1, self.num_tasks))              # (B, T)
