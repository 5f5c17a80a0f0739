"""FLOPs: what a case computes per sample, and what the machine can compute.

A case's FLOPs per sample are its matrix products (matmul, batched matmul,
convolution; forward, and for training the backward too), counted by
``torch.utils.flop_counter`` while the PyTorch peer, which runs the same
network, does one step or one prediction. Element-wise work, gathers and the
optimizer are not counted: they are memory-bound, and the matrix products
are what a machine's FLOP peak is about.

The machine's peak is the best float32 matrix product NumPy (its BLAS, on
every core) reaches. A case's share of it is ``samples/s x FLOPs per sample
/ peak``.
"""
import time

import numpy as np


def counted(fn, samples):
    """FLOPs per sample of calling ``fn()`` once on a batch of ``samples``."""
    from torch.utils.flop_counter import FlopCounterMode
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops() / float(samples)


def product_seconds(a, b, reps):
    """The best of ``reps`` timings of NumPy's ``a @ b``, after one warm-up."""
    np.matmul(a, b)
    best = float("inf")
    for _ in range(reps):
        start = time.perf_counter()
        np.matmul(a, b)
        best = min(best, time.perf_counter() - start)
    return best


def machine_peak(size=2048, reps=5):
    """``{"flops_per_s", "how"}``: the best of ``reps`` float32 ``size x size``
    matrix products of NumPy, after one warm-up."""
    rng = np.random.default_rng(0)
    a, b = (rng.random((size, size), dtype=np.float32) for _ in range(2))
    best = product_seconds(a, b, reps)
    return {"flops_per_s": 2.0 * size ** 3 / best,
            "how": f"NumPy float32 {size}x{size} matrix product, best of {reps}"}
