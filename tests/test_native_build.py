"""Building the C++ kernels (src/engine/native.py): the cache key covers the
headers a kernel includes, so changing the shared thread split rebuilds every
kernel that uses it."""
import ctypes
import os

from src.engine import native
from src.layers import gated_mixture, sparse_input
from src.engine import dense_update


def _write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


def test_source_files_follow_local_includes_once(tmp_path):
    _write(tmp_path / "k" / "a.cc", '#include <vector>\n#include "sub/h.h"\n  # include "g.h"\n')
    _write(tmp_path / "k" / "sub" / "h.h", '#pragma once\n#include "../g.h"\n')
    _write(tmp_path / "k" / "g.h", '#pragma once\n#include "missing.h"\n')
    found = native.source_files(str(tmp_path / "k" / "a.cc"))
    assert sorted(os.path.relpath(p, tmp_path) for p in found) == [
        "k/a.cc", "k/g.h", "k/sub/h.h"]


def test_a_changed_header_rebuilds_the_library(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    source = tmp_path / "src" / "k.cc"
    _write(source, '#include "v.h"\nextern "C" int Value() { return kValue; }\n')
    _write(tmp_path / "src" / "v.h", "constexpr int kValue = 3;\n")
    first = native.build_library(str(source), "k", "set k: graph")
    assert native.build_library(str(source), "k", "set k: graph") == first      # cached
    _write(tmp_path / "src" / "v.h", "constexpr int kValue = 4;\n")
    second = native.build_library(str(source), "k", "set k: graph")
    assert second != first
    assert ctypes.CDLL(first).Value() == 3 and ctypes.CDLL(second).Value() == 4


def test_the_threaded_kernels_include_the_shared_split():
    header = os.path.join(os.path.dirname(native.__file__), "parallel_parts.h")
    for module in (gated_mixture, sparse_input, dense_update):
        assert header in native.source_files(module.SOURCE), module.__name__
