"""src/engine/source_pin.py: a graph compiled after its source file was edited
still compiles the code the process imported."""
import importlib
import linecache
import os
import sys
import time

import numpy as np
import pytest

from src.engine.source_pin import pin_sources

CELL = """from mindspore import nn


class Net(nn.Cell):
    def construct(self, x):
        return x * {factor}
"""


@pytest.fixture
def cell_module(tmp_path, monkeypatch):
    """``(module, path)``: a module of one Cell (``x * 2``) imported from a
    folder of its own, under a name no other test uses."""
    name = f"pinned_cell_{os.getpid()}_{time.monotonic_ns()}"
    path = tmp_path / f"{name}.py"
    path.write_text(CELL.format(factor=2))
    monkeypatch.syspath_prepend(str(tmp_path))
    module = importlib.import_module(name)
    yield module, path
    sys.modules.pop(name, None)
    linecache.cache.pop(str(path), None)


def _edit(path):
    """Change the file under the imported module: ``x * 3`` and a later mtime."""
    path.write_text(CELL.format(factor=3))
    later = time.time() + 5
    os.utime(path, (later, later))


def _run(module):
    from mindspore import Tensor
    out = module.Net()(Tensor(np.array([1.0, 2.0], np.float32)))
    return out.asnumpy().tolist()


def test_an_edit_after_pinning_does_not_reach_the_compile(cell_module, tmp_path):
    module, path = cell_module
    assert pin_sources(root=str(tmp_path), since=time.time() + 1) == [module.__file__]
    _edit(path)
    assert _run(module) == [2.0, 4.0]        # the imported text, not the file's
    assert pin_sources(root=str(tmp_path), since=time.time() + 60) == []   # pinned once


def test_without_pinning_the_compile_reads_the_edited_file(cell_module):
    """The failure the pin prevents: the compile follows the file, not the code."""
    module, path = cell_module
    _edit(path)
    assert _run(module) == [3.0, 6.0]


def test_a_file_changed_since_the_start_is_not_pinned(cell_module, tmp_path):
    module, path = cell_module
    since = os.stat(path).st_mtime - 1          # the file changed after "the start"
    assert pin_sources(root=str(tmp_path), since=since) == []
    assert module.__file__ not in linecache.cache or linecache.cache[module.__file__][1] is not None


def test_only_files_under_the_root_are_pinned(cell_module, tmp_path):
    module, _ = cell_module
    other = tmp_path / "elsewhere"
    other.mkdir()
    assert pin_sources(root=str(other), since=time.time() + 1) == []

