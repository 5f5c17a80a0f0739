"""The Shared-Bottom network: a shared ReLU MLP, then one tower per task."""
from mindspore import nn, ops

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
      (:class:`src.layers.towers.TaskTowers`), all computed at once.
    """

    def __init__(self, input_dim, num_tasks=2, bottom_units=(32,), tower_units=(8,),
                 init="truncated_normal", init_scale=0.01, tower_dropout=0.0, input_layer=None):
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
                                 dropout=tower_dropout)

    def construct(self, x):
        shared = self.bottom(self.input_layer(x)).reshape((-1, 1, self.width))                   # (B, 1, D)
        per_task = ops.tile(shared, (1, self.num_tasks, 1))                     # (B, T, D)
        return self.towers(per_task).reshape((-1, self.num_tasks))              # (B, T)
