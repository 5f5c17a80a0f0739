"""Fault injection for the reliability tests (tests/test_faults.py).

``MS_ZOO_FAULT=<point>[:<n>]`` in the environment makes the process kill
itself with SIGKILL the ``n``-th time (default: the first) it passes
:func:`point` ``<point>``, exactly as ``kill -9`` at that instant would. Unset,
a point costs one dictionary look-up. The points sit where a crash is most
harmful: between a temporary file and its rename, between two renames,
between writing a split and publishing the data set.
"""
import os
import signal

_SPEC = os.environ.get("MS_ZOO_FAULT", "")
_NAME, _, _COUNT = _SPEC.partition(":")
_LEFT = {_NAME: int(_COUNT or 1)} if _NAME else {}


def point(name):
    """Die here (SIGKILL) if this is the armed point's n-th pass."""
    if name in _LEFT:
        _LEFT[name] -= 1
        if _LEFT[name] == 0:
            os.kill(os.getpid(), signal.SIGKILL)
