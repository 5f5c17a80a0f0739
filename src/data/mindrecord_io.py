"""MindRecord storage shared by every data set: records hold blocks of rows.

One MindRecord record per row reads at about 60k rows/s on CPU, far below what
training consumes, so every converter writes *blocks*: each record carries
``rows`` consecutive samples, every column flattened to one 1-D array of
``rows * width`` values. Readers (:mod:`src.data.reader`) reshape blocks back
to ``(rows, width)`` and shuffle individual rows across blocks.

A split ``name`` lives at ``<dir>/<name>.mindrecord`` (plus MindSpore's
``.db`` index file), or, for splits too large for one file, in shard files
``<dir>/<name>_000.mindrecord``, ``<name>_001.mindrecord``, ... read in that
order (:func:`split_files`). Its column layout is recorded in the feature map
JSON written beside it by the converter.
"""
import hashlib
import os
import re
import shutil

import numpy as np
from mindspore.mindrecord import FileWriter

_MS_TYPES = {np.dtype(np.int32): "int32", np.dtype(np.int64): "int64",
             np.dtype(np.float32): "float32", np.dtype(np.float64): "float64",
             np.dtype(np.uint8): "bytes"}  # MindRecord has no uint8 array: stored as raw bytes


def split_file(directory, split):
    """Path of the MindRecord file that holds ``split`` (train/val/test)."""
    return os.path.join(directory, f"{split}.mindrecord")


def shard_file(directory, split, index):
    """Path of shard ``index`` of a multi-file split: ``<split>_<index:03d>.mindrecord``."""
    return os.path.join(directory, f"{split}_{int(index):03d}.mindrecord")


def split_files(directory, split):
    """The MindRecord files of ``split``, in reading order.

    The single file ``<split>.mindrecord`` when it exists, else the shard files
    ``<split>_NNN.mindrecord`` sorted by their number. Raises FileNotFoundError
    naming the split when there is none.
    """
    single = split_file(directory, split)
    if os.path.isfile(single):
        return [single]
    pattern = re.compile(re.escape(split) + r"_(\d{3,})\.mindrecord$")
    shards = []
    if os.path.isdir(directory):
        for name in os.listdir(directory):
            match = pattern.match(name)
            if match and os.path.isfile(os.path.join(directory, name)):
                shards.append((int(match.group(1)), os.path.join(directory, name)))
    if not shards:
        raise FileNotFoundError(
            f"no MindRecord file of split {split!r} in {directory} (looked for {split}.mindrecord "
            f"and {split}_NNN.mindrecord): convert the data first")
    return [path for _, path in sorted(shards)]


def _encode(values):
    return values.tobytes() if values.dtype == np.uint8 else values


def decode_column(values):
    """A column of one record as a flat array (uint8 columns come back as bytes).

    MindDataset returns a bytes column as a one-element ``S`` array; its
    ``tobytes()`` keeps trailing zero bytes, which ``item()`` would strip.
    """
    if values.dtype.kind == "S":
        return np.frombuffer(values.tobytes(), np.uint8)
    return values


class BlockWriter:
    """Append rows to a MindRecord file in blocks of ``block_rows`` rows.

    ``columns`` maps a column name to ``(numpy dtype, width)``. Rows are passed
    to :meth:`write` as a dict of 2-D arrays ``(n, width)``; they are buffered
    until a whole block is ready, so callers may feed any chunk size. The file
    is written in a scratch folder and moved into place on :meth:`close`, so a crash
    never leaves a half-written split behind that looks complete.
    ``on_close(path, rows, digest)`` is called once the file is in place, with
    a sha256 of the rows' content as written (column by column, block by
    block); converters record both in the feature map (src/data/convert/publish.py).
    """

    def __init__(self, path, columns, block_rows=1024, description="rows", header_size=1 << 20,
                 on_close=None):
        if block_rows <= 0:
            raise ValueError(f"block_rows must be positive, got {block_rows}")
        self.path = path
        self.columns = {name: (np.dtype(dt), int(width)) for name, (dt, width) in columns.items()}
        self.block_rows = int(block_rows)
        self.rows_written = 0
        self.on_close = on_close
        self._hash = hashlib.sha256()
        self._pending = {name: [] for name in self.columns}
        self._pending_rows = 0
        # MindRecord's index remembers the file name, so the file is written
        # under its final name in a scratch folder and moved on close.
        self._tmpdir = os.path.join(os.path.dirname(os.path.abspath(path)),
                                    "." + os.path.basename(path) + ".partial")
        shutil.rmtree(self._tmpdir, ignore_errors=True)
        os.makedirs(self._tmpdir)
        self._tmp = os.path.join(self._tmpdir, os.path.basename(path))
        schema = {"rows": {"type": "int32"}}
        for name, (dtype, _) in self.columns.items():
            if dtype not in _MS_TYPES:
                raise ValueError(f"column {name}: unsupported dtype {dtype}")
            schema[name] = {"type": _MS_TYPES[dtype]}
            if _MS_TYPES[dtype] != "bytes":
                schema[name]["shape"] = [-1]
        self._writer = FileWriter(self._tmp, shard_num=1, overwrite=True)
        # The default 16 MB header and 32 MB page make even a tiny split weigh
        # 50 MB; a page only has to hold one block.
        self._writer.set_header_size(header_size)
        row_bytes = sum(dtype.itemsize * width for dtype, width in self.columns.values())
        self._writer.set_page_size(min(max(1 << 20, 2 * row_bytes * self.block_rows), 1 << 30))
        self._writer.add_schema(schema, description)

    def write(self, arrays):
        """Buffer a chunk of rows: ``arrays`` maps every column to ``(n, width)``."""
        n = None
        for name, (dtype, width) in self.columns.items():
            if name not in arrays:
                raise KeyError(f"missing column {name!r}")
            arr = np.asarray(arrays[name], dtype=dtype).reshape(-1, width)
            if n is None:
                n = len(arr)
            elif len(arr) != n:
                raise ValueError(f"column {name!r} has {len(arr)} rows, expected {n}")
            self._pending[name].append(arr)
        self._pending_rows += n or 0
        if self._pending_rows >= self.block_rows:
            self._flush(final=False)

    def _flush(self, final):
        if not self._pending_rows:
            return
        merged = {name: np.concatenate(parts) for name, parts in self._pending.items()}
        total = self._pending_rows
        cut = total if final else total - total % self.block_rows
        records = []
        for start in range(0, cut, self.block_rows):
            stop = min(start + self.block_rows, cut)
            rec = {name: _encode(np.ascontiguousarray(arr[start:stop]).ravel())
                   for name, arr in merged.items()}
            rec["rows"] = stop - start
            for name in self.columns:
                self._hash.update(rec[name] if isinstance(rec[name], bytes) else rec[name].data)
            records.append(rec)
        if records:
            self._writer.write_raw_data(records)
        self.rows_written += cut
        self._pending = {name: ([arr[cut:]] if cut < total else []) for name, arr in merged.items()}
        self._pending_rows = total - cut

    def close(self):
        """Write the last partial block, commit and move the file into place."""
        self._flush(final=True)
        self._writer.commit()
        os.replace(self._tmp, self.path)
        os.replace(self._tmp + ".db", self.path + ".db")
        shutil.rmtree(self._tmpdir, ignore_errors=True)
        if self.on_close is not None:
            self.on_close(self.path, self.rows_written, self._hash.hexdigest())
        return self.rows_written

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.close()
        else:  # leave nothing that looks like a finished split
            shutil.rmtree(self._tmpdir, ignore_errors=True)
        return False
