"""The file layout between preprocess.py, the inference program and
postprocess.py (Ascend310 C++ app or any other runtime).

preprocess.py writes, under ``infer_data_path``:

- ``<input name>/<model>_<i>.bin``: batch ``i`` of each network input, raw
  C-order bytes (``ndarray.tofile``) at the export's batch size; the last batch
  is padded with zero rows;
- ``labels/<model>_<i>.bin``: the matching labels;
- ``manifest.json``: model, batch size, batch count, real rows, the dtype and
  shape of every input, the output shape and the task names.

The inference program writes ``<result_path>/<model>_<i>_<j>.bin`` for output
``j`` of batch ``i``; postprocess.py reads output 0 (the probabilities),
drops the padding rows and scores them with :mod:`src.metrics`.
"""
import json
import os

import numpy as np

from src.fileio import write_json_atomic

MANIFEST = "manifest.json"


def batch_file(directory, name, model, index):
    return os.path.join(directory, name, f"{model}_{index}.bin")


def result_file(result_path, model, index, output=0):
    return os.path.join(result_path, f"{model}_{index}_{output}.bin")


def write_manifest(directory, manifest):
    return write_json_atomic(os.path.join(directory, MANIFEST), manifest)


def read_manifest(directory):
    path = os.path.join(directory, MANIFEST)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path} not found: run preprocess.py first")
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def read_bin(path, dtype, shape):
    """A raw .bin file as an array of ``shape``, with a clear error on a size mismatch."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path} not found")
    data = np.fromfile(path, dtype=dtype)
    expected = int(np.prod(shape))
    if data.size != expected:
        raise ValueError(f"{path} holds {data.size} {np.dtype(dtype).name} values, expected "
                         f"{expected} for shape {tuple(shape)}")
    return data.reshape(shape)
