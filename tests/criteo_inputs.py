"""Criteo-shaped network inputs for the tests of the Criteo models' networks."""
import numpy as np

CARD = [30, 5, 70, 11]
OFFSETS = np.cumsum([0] + CARD[:-1])


def criteo_inputs(n=6, seed=0, num_dense=13):
    """``(cat, dense)``: global table ids of CARD's fields and dense features."""
    rng = np.random.default_rng(seed)
    cat = (np.stack([rng.integers(0, c, n) for c in CARD], 1) + OFFSETS).astype(np.int32)
    return cat, rng.random((n, num_dense)).astype(np.float32)
