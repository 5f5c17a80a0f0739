"""Column selections whose gradients avoid costly defaults on CPU: distinct
columns (:class:`ColumnSelect`) and a split of the last axis
(:class:`SplitLast`)."""
import numpy as np
from mindspore import Tensor, nn, ops


class ColumnSelect(nn.Cell):
    """``x[:, columns]`` of a ``(B, width)`` input, ``columns`` distinct.

    The gradient of ``ops.gather`` on axis 1 must allow for repeated columns:
    on CPU it transposes, sums segments and transposes back (about 6 ms of a
    DLRM step at batch 2048, bench/notes.md). With distinct columns every
    input column receives at most one output column's gradient, so the
    gradient is itself a gather: the output gradient with a zero column
    appended, read at each input column's position (the zero column for
    columns not selected).
    """

    def __init__(self, columns, width):
        super().__init__()
        columns = np.asarray(columns, np.int64).reshape(-1)
        width = int(width)
        if columns.size and (columns.min() < 0 or columns.max() >= width):
            raise ValueError(f"columns must lie in [0, {width}), got {columns.min()}..{columns.max()}")
        if len(np.unique(columns)) != len(columns):
            raise ValueError("ColumnSelect needs distinct columns")
        back = np.full(width, len(columns), np.int32)        # not selected: the zero column
        back[columns] = np.arange(len(columns), dtype=np.int32)
        self.columns, self.back = Tensor(columns.astype(np.int32)), Tensor(back)

    def construct(self, x):
        return ops.gather(x, self.columns, 1)

    def bprop(self, x, out, dout):
        padded = ops.concat((dout, ops.zeros((dout.shape[0], 1), dout.dtype)), axis=1)
        return (ops.gather(padded, self.back, 1),)


class SplitLast(nn.Cell):
    """``(x[..., :k], x[..., k:])``.

    Each slice's default gradient is a ``StridedSliceGrad`` (zeros of the
    input's shape with the slice written in) and the two are then added:
    about 2.4 ms of a DeepFM step at batch 1024 on CPU. The gradient of the
    whole split is one concatenation of the halves' gradients.
    """

    def __init__(self, k):
        super().__init__()
        if int(k) < 1:
            raise ValueError(f"SplitLast needs k >= 1, got {k}")
        self.k = int(k)

    def construct(self, x):
        return x[..., :self.k], x[..., self.k:]

    def bprop(self, x, out, dout):
        return (ops.concat((dout[0], dout[1]), axis=-1),)
