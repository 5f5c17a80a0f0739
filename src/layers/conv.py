"""Convolutions of several experts at once, with a CPU-fast implementation.

:class:`ExpertConv2d` computes ``num_experts`` independent 'valid',
stride-1 convolutions in one layer. Its weight has exactly the layout of an
``nn.Conv2d`` with ``group=num_experts``, ``(E*out, in, k, k)``, so
checkpoints do not depend on how the convolution is computed:

- ``impl="native"``: MindSpore's Conv2D (with ``group`` for per-expert
  inputs). The right choice on Ascend and GPU, and the one to export.
- ``impl="matmul"``: the same arithmetic as matrix products. MindSpore 2.10's
  CPU Conv2D ran at about 0.5 GMAC/s on the 2-core development machine; as
  matrix products the expert layers of DSelect-k trained about 40x faster there.
  A shared input (every expert reads the same image) is unfolded into
  patches (Im2Col) and multiplied by the ``(E*out, in*k*k)`` kernel matrix.
  Per-expert inputs use a banded (Toeplitz) kernel: for each of the ``k``
  kernel rows the input rows are sliced, and one batched product per expert
  with a ``(k*in*W, out*W_out)`` matrix gathered from the kernel computes all
  output columns; its gradient flows back to the kernel through the gather.

``predict_impl`` computes the layer outside training (``set_train(False)``:
evaluation, prediction) another way. With ``matmul`` in training, ``native``
there pays on CPU: the banded kernel is gathered afresh on every call, a
cost that does not shrink with the batch, while the CPU Conv2D's forward
pass is no slower than the products (its gradients are what is slow; the
measurements are in bench/notes.md).
"""
import numpy as np
import mindspore as ms
from mindspore import Parameter, Tensor, nn, ops

IMPLS = ("native", "matmul")


class ExpertConv2d(nn.Cell):
    """``num_experts`` convolutions without bias (a batch norm follows).

    Args:
        num_experts: E.
        in_channels: channels each expert reads.
        out_channels: channels each expert writes.
        kernel_size: k (square kernel, 'valid' padding, stride 1).
        in_size: ``(H, W)`` of the input (the matmul form needs it).
        shared_input: every expert reads the same ``(B, in, H, W)`` input
            (the first layer); otherwise the input is ``(B, E*in, H, W)``,
            expert ``e`` owning channels ``e*in .. (e+1)*in - 1``.
        impl: ``native`` or ``matmul`` (see the module docstring).
        weight: initial ``(E*out, in, k, k)`` array.
        predict_impl: ``impl`` outside training (None: ``impl``).

    Output: ``(B, E*out, H-k+1, W-k+1)``.
    """

    def __init__(self, num_experts, in_channels, out_channels, kernel_size, in_size,
                 shared_input, impl, weight, predict_impl=None):
        super().__init__()
        predict_impl = impl if predict_impl is None else predict_impl
        for value in (impl, predict_impl):
            if value not in IMPLS:
                raise ValueError(f"conv impl must be one of {IMPLS}, got {value!r}")
        h, w = (int(v) for v in in_size)
        k = int(kernel_size)
        if k > h or k > w:
            raise ValueError(f"kernel {k}x{k} is larger than the {h}x{w} input")
        expected = (num_experts * out_channels, in_channels, k, k)
        if tuple(weight.shape) != expected:
            raise ValueError(f"conv weight has shape {tuple(weight.shape)}, expected {expected}")
        self.e, self.cin, self.cout, self.k = num_experts, in_channels, out_channels, k
        self.h, self.w, self.ho, self.wo = h, w, h - k + 1, w - k + 1
        self.shared_input, self.impl, self.predict_impl = shared_input, impl, predict_impl
        self.weight = Parameter(Tensor(np.asarray(weight, np.float32)), name="weight")
        if "native" in (impl, predict_impl):
            self.conv = ops.Conv2D(out_channel=expected[0], kernel_size=(k, k), pad_mode="valid",
                                   group=1 if shared_input else num_experts)
        if "matmul" in (impl, predict_impl) and not shared_input:
            self.band_index = Tensor(self._band_index())

    def _band_index(self):
        """``(E, k*in*W, out*W_out)`` positions in the flat kernel (plus one zero slot
        at the end) of the banded matrix that maps kernel row ``dy``'s input rows
        ``(dy, c, x)`` to outputs ``(o, x_out)``: entry ``kernel[e, o, c, dy, x - x_out]``."""
        e, cin, cout, k, w, wo = self.e, self.cin, self.cout, self.k, self.w, self.wo
        zero_slot = e * cout * cin * k * k
        index = np.full((e, k, cin, w, cout, wo), zero_slot, np.int32)
        ee, dy, c, o, xo, dx = np.meshgrid(np.arange(e), np.arange(k), np.arange(cin),
                                           np.arange(cout), np.arange(wo), np.arange(k),
                                           indexing="ij")
        flat = ((((ee * cout + o) * cin + c) * k + dy) * k + dx)
        index[ee, dy, c, xo + dx, o, xo] = flat
        return index.reshape(e, k * cin * w, cout * wo)

    def construct(self, x):
        if (self.impl if self.training else self.predict_impl) == "native":
            return self.conv(x, self.weight)
        batch = x.shape[0]
        if self.shared_input:
            patches = ops.unfold(x, self.k)                                    # (B, in*k*k, L)
            kernel = self.weight.reshape((self.e * self.cout, self.cin * self.k * self.k))
            out = ops.matmul(kernel, patches)                                  # (B, E*out, L)
            return out.reshape((batch, self.e * self.cout, self.ho, self.wo))
        flat = ops.concat((self.weight.reshape((-1,)), ops.zeros((1,), ms.float32)))
        band = ops.gather(flat, self.band_index, 0)                            # (E, k*in*W, out*Wo)
        x = x.reshape((batch, self.e, self.cin, self.h, self.w)).transpose((1, 0, 3, 2, 4))
        # one concatenation of the k row windows: growing the result one window
        # at a time copied it k - 1 times, and its gradient split it as often
        # (DSelect-k step at batch 256 on CPU: 485 -> 442 ms)
        rows = ops.concat([x[:, :, dy:dy + self.ho].expand_dims(3) for dy in range(self.k)],
                          axis=3)                                              # (E, B, Ho, k, in, W)
        rows = rows.reshape((self.e, batch * self.ho, self.k * self.cin * self.w))
        out = ops.bmm(rows, band)                                              # (E, B*Ho, out*Wo)
        out = out.reshape((self.e, batch, self.ho, self.cout, self.wo)).transpose((1, 0, 3, 2, 4))
        return out.reshape((batch, self.e * self.cout, self.ho, self.wo))
