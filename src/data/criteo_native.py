"""The Criteo converter's C++ parser (``criteo_parse.cc``): well-formed
lines to the same arrays as :func:`src.data.criteo_parse.parse_lines`, in
one pass over the bytes (its speed: bench/notes.md). It is compiled with
the system's C++ compiler on first use and cached like the project's other
kernels (:func:`src.engine.native.build_library`), and loaded with ctypes:
no MindSpore. A chunk holding a malformed line is left to the NumPy parser,
which describes it.

``parser`` (config key of the Criteo data set, ``--parser`` of ``python -m
src.data.criteo``): ``native`` or ``numpy``."""
import ctypes
import os

import numpy as np

PARSERS = ("native", "numpy")
SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "criteo_parse.cc")


def make_parser(parser):
    """The ``native`` argument of :func:`parse_lines` that ``parser`` names:
    a :class:`NativeParser` (compiled now, before any worker forks) or None."""
    if parser not in PARSERS:
        raise ValueError(f"parser must be one of {', '.join(PARSERS)}, got {parser!r}")
    return NativeParser() if parser == "native" else None


class NativeParser:
    """Calls the compiled parser; ``parser(data, dense)`` is a
    :class:`~src.data.criteo_parse.ParsedLines` of ``data`` (whole lines,
    ``\\n``-ended, no ``\\r``), or None when a line is malformed."""

    def __init__(self):
        from src.engine.native import build_library
        self.path = build_library(SOURCE, "criteo_parse", fallback="set parser: numpy")
        self._functions = None              # loaded on first use (in each forked worker)

    def _load(self):
        library = ctypes.CDLL(self.path)
        parse, count = library.criteo_parse, library.criteo_count_lines
        pointer = ctypes.c_void_p
        parse.argtypes = [ctypes.c_char_p, ctypes.c_int64, ctypes.c_int64, pointer, pointer,
                          pointer]
        count.argtypes = [ctypes.c_char_p, ctypes.c_int64]
        parse.restype = count.restype = ctypes.c_int64
        self._functions = parse, count
        return self._functions

    def __call__(self, data, dense=True):
        from src.data.criteo_parse import NUM_CAT, NUM_DENSE, ParsedLines
        function, count = self._functions or self._load()
        n = count(data, len(data))
        label = np.empty(n, np.int8) if dense else None
        values = np.empty((n, NUM_DENSE), np.int64) if dense else None
        cat = np.empty((n, NUM_CAT), np.int64)
        if function(data, len(data), n, _address(label), _address(values), _address(cat)) != 0:
            return None
        return ParsedLines(label, values, cat, np.zeros(n, np.int8), [])


def _address(array):
    return None if array is None else array.ctypes.data
