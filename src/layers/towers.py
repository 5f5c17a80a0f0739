"""Per-task towers evaluated for all tasks at once."""
from mindspore import Parameter, ParameterTuple, Tensor, nn, ops

import numpy as np

from src.layers.initializers import init_stack

OUTPUT_INITS = ("init", "zero")


class TaskTowers(nn.Cell):
    """One MLP per task, all tasks computed by batched matrix products.

    Shapes: input ``(B, T, D)`` (one D-vector per task, e.g. the per-task
    mixture of experts), output ``(B, T, out_dim)``. Layer ``l`` holds a
    weight ``(T, d_l, d_{l+1})`` and a bias ``(T, 1, d_{l+1})``; hidden layers
    use ReLU and dropout (active only in training), the last layer is linear.
    ``output_init``: ``init`` draws the last layer's weights from
    ``weight_init`` like the others; ``zero`` starts them at zero, so every
    tower starts at a constant output and its hidden units get no gradient
    until the output weights have learnt their signs from the data (with
    drawn weights of one sign, lowering a logit can only switch hidden ReLU
    units off, and a unit switched off for every row never learns again:
    docs/results.md).
    Writing the towers as stacked weights instead of a Python list of Dense
    cells keeps the graph free of lists and Stack ops, so it exports to ONNX
    and MindIR as one BatchMatMul per layer.

    >>> towers = TaskTowers(num_tasks=2, in_dim=4, hidden_units=[8], out_dim=1)
    >>> towers(ops.ones((32, 2, 4), ms.float32)).shape
    (32, 2, 1)
    """

    def __init__(self, num_tasks, in_dim, hidden_units, out_dim, weight_init, dropout=0.0,
                 output_init="init"):
        super().__init__()
        if num_tasks < 1 or in_dim < 1 or out_dim < 1:
            raise ValueError(f"num_tasks, in_dim and out_dim must be positive, got "
                             f"{num_tasks}, {in_dim}, {out_dim}")
        if any(int(u) < 1 for u in hidden_units):
            raise ValueError(f"tower hidden units must be positive, got {list(hidden_units)}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must lie in [0, 1), got {dropout}")
        if output_init not in OUTPUT_INITS:
            raise ValueError(f"tower output_init must be one of {OUTPUT_INITS}, got {output_init!r}")
        dims = [in_dim] + [int(u) for u in hidden_units] + [out_dim]
        self.num_layers = len(dims) - 1
        stacks = [init_stack(weight_init, num_tasks, dims[i], dims[i + 1])
                  for i in range(self.num_layers)]
        if output_init == "zero":      # drawn first all the same: the other layers keep their draws
            stacks[-1] = np.zeros_like(stacks[-1])
        self.weights = ParameterTuple([Parameter(Tensor(stack), name=f"weight{i}")
                                       for i, stack in enumerate(stacks)])
        self.biases = ParameterTuple([
            Parameter(Tensor(np.zeros((num_tasks, 1, dims[i + 1]), np.float32)), name=f"bias{i}")
            for i in range(self.num_layers)])
        self.dropout = nn.Dropout(p=dropout) if dropout > 0 else nn.Identity()
        self.relu = nn.ReLU()
        self.matmul = ops.BatchMatMul()

    def construct(self, x):
        h = ops.transpose(x, (1, 0, 2))                      # (T, B, D)
        for i in range(self.num_layers):
            h = self.matmul(h, self.weights[i]) + self.biases[i]
            if i < self.num_layers - 1:
                h = self.dropout(self.relu(h))
        return ops.transpose(h, (1, 0, 2))                   # (B, T, out)
