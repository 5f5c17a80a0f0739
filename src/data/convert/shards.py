"""A split's rows into MindRecord files of whole blocks."""
import os

import numpy as np

from src.data.mindrecord_io import BlockWriter, shard_file, split_file


class SplitWriter:
    """Rows of one split, through :class:`BlockWriter`: into ``<split>.mindrecord``
    (``shard_rows=None``), or into ``<split>_000.mindrecord``, ``_001``, ... of
    ``shard_rows`` rows each (the last shorter). ``columns``: ``{name:
    (dtype, width)}``; ``on_close(path, rows, digest)`` as BlockWriter's."""

    def __init__(self, out_dir, split, columns, block_rows, shard_rows=None, description=None,
                 on_close=None):
        self.out_dir, self.split, self.on_close = out_dir, split, on_close
        self.sharded = shard_rows is not None
        self.shard_rows = int(shard_rows) if self.sharded else None
        self.block_rows = int(block_rows)
        self.description = description or split
        self.columns = {name: (np.dtype(dt), w) for name, (dt, w) in columns.items()}
        self.files, self.rows = [], 0
        self._writer, self._in_shard = None, 0

    def write(self, arrays):
        n = len(next(iter(arrays.values())))
        pos = 0
        while pos < n:
            if self._writer is None:
                path = (shard_file(self.out_dir, self.split, len(self.files)) if self.sharded
                        else split_file(self.out_dir, self.split))
                self._writer = BlockWriter(path, self.columns, block_rows=self.block_rows,
                                           description=self.description, on_close=self.on_close)
                self.files.append(os.path.basename(path))
                self._in_shard = 0
            take = n - pos if not self.sharded else min(n - pos, self.shard_rows - self._in_shard)
            self._writer.write({k: v[pos:pos + take] for k, v in arrays.items()})
            pos += take
            self._in_shard += take
            self.rows += take
            if self.sharded and self._in_shard == self.shard_rows:
                self._writer.close()
                self._writer = None

    def close(self):
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def abort(self):
        if self._writer is not None:
            self._writer.__exit__(RuntimeError, None, None)     # drops the partial file
            self._writer = None

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.close()
        else:
            self.abort()
