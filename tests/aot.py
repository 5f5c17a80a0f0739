"""Calling a MindSpore AOT custom operator's C entry point directly, with
numpy arrays, as MindSpore calls it: ``(nparam, params, ndims, shapes,
dtypes, stream, extra)``, the inputs then the output."""
import ctypes

import numpy as np


def call_aot(function, arrays):
    """``function(...)``'s error code, with ``arrays`` (inputs then outputs,
    C-contiguous) passed as the operator's parameters; outputs are written in
    place."""
    n = len(arrays)
    shapes = [np.array(a.shape, np.int64) for a in arrays]
    i64 = ctypes.POINTER(ctypes.c_int64)
    params = (ctypes.c_void_p * n)(*[a.ctypes.data for a in arrays])
    shape_ptrs = (i64 * n)(*[s.ctypes.data_as(i64) for s in shapes])
    ndims = (ctypes.c_int * n)(*[a.ndim for a in arrays])
    dtypes = (ctypes.c_char_p * n)(*[str(a.dtype).encode() for a in arrays])
    return function(n, params, ndims, shape_ptrs, dtypes, None, None)
