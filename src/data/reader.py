"""Batches from block MindRecord splits, shuffled row by row.

Each record of a split holds a block of rows (see :mod:`src.data.mindrecord_io`).
A split is one file or several shard files (:func:`~src.data.mindrecord_io.split_files`),
read one after the other in order. :class:`BlockDataset` reads the blocks of its
shard with ``MindDataset``,
and every epoch permutes the *rows* (not only the block order), so shuffling
mixes individual samples across the whole epoch. Batches are dicts of numpy
arrays, passed through a ``transform`` (e.g. one-hot expansion) and prepared
one step ahead on a background thread.
"""
import hashlib
import os
import queue
import sys
import threading

import numpy as np

from src.data.mindrecord_io import decode_column, split_files


# Seconds a thread may hold the GIL while another waits (Python's default: 5 ms).
SWITCH_INTERVAL = 2e-4


def quick_thread_handoff():
    """Let the prefetch thread and the training thread trade the GIL every
    0.2 ms instead of 5 ms: batches reach the step sooner (about 10 % more
    MMoE steps per second on the 2-core development machine; bench/notes.md).
    Process-wide; entry points call it through ``setup_runtime``."""
    sys.setswitchinterval(SWITCH_INTERVAL)


def take_rows(array, index):
    """``array[index]`` for a 1-D integer ``index``: ``np.take`` along axis 0
    gathers whole rows, 3-6x faster than fancy indexing for the narrow
    columns read here (2,048 rows of a (120000, 29) int32 column: 15 against
    47 us)."""
    return np.take(array, index, axis=0)


def _records(data, path):
    """The records of a ``MindDataset`` as numpy dicts; a file MindSpore
    cannot read is a ValueError naming it (one line, not MindSpore's report)."""
    try:
        yield from data.create_dict_iterator(output_numpy=True, num_epochs=1)
    except RuntimeError as exc:
        detail = next((l.strip() for l in str(exc).splitlines() if "[ERROR]" in l),
                      "MindSpore could not parse it")
        raise ValueError(f"{path} cannot be read: the file is damaged ({detail}); "
                         "convert the data again") from None


class BlockDataset:
    """Iterate a split as batches.

    Args:
        data_dir: folder holding ``<split>.mindrecord`` or the shard files
            ``<split>_000.mindrecord``, ``<split>_001.mindrecord``, ...
        split: ``train``, ``val`` or ``test``, or a list of them, read as one
            split (their files one after the other: e.g. train and val for a
            final fit on every non-test row).
        columns: ``{name: width}`` of the columns to read.
        batch_size: rows per batch.
        shuffle: permute rows every epoch (seeded by ``seed`` and the epoch).
        drop_remainder: drop the last partial batch (keeps one graph shape).
        num_shards, shard_id: distributed reading; shard ``k`` takes blocks
            ``k, k + num_shards, ...`` (counted over the blocks of all files of
            the split, in order) so ranks see disjoint rows.
        transform: ``f(batch_dict) -> tuple of arrays`` applied per batch.
        (``num_rows``: the rows of this shard; ``total_rows``: of the whole split.)
        digests: ``{file name: sha256}`` of the rows' content as the converter
            wrote them (src/data/convert/publish.py); a split loaded into memory is
            checked against them (a streamed one by size and sampled bytes only).
        shuffle_buffer_rows: 0 loads the shard into memory and permutes all
            its rows every epoch. A positive value streams instead, for splits
            larger than memory (Criteo): every epoch reads the shard's blocks
            in a seeded random order, fills a window of about this many rows,
            permutes the rows of the window and emits its batches; memory
            holds one window.
        equal_shards: cap the epoch at the batches of the smallest shard, so
            that every rank of a distributed run takes the same number of steps
            (collectives must match); the few rows beyond are skipped that epoch.
    """

    def __init__(self, data_dir, split, columns, batch_size, shuffle=False, seed=0,
                 drop_remainder=False, num_shards=1, shard_id=0, transform=None, prefetch=2,
                 shuffle_buffer_rows=0, equal_shards=False, digests=None):
        splits = [split] if isinstance(split, str) else list(split)
        if not splits or len(set(splits)) < len(splits):
            raise ValueError(f"splits to read must be distinct and at least one, got {splits}")
        files = {name: split_files(data_dir, name) for name in splits}
        self.paths = [path for name in splits for path in files[name]]
        for path in self.paths:
            if not os.path.isfile(path + ".db"):
                raise FileNotFoundError(f"{path}.db (the index of {path}) not found: convert the data first")
        path = " + ".join(files[name][0] if len(files[name]) == 1
                          else os.path.join(data_dir, f"{name}_*.mindrecord") for name in splits)
        split = "+".join(splits)
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        if not 0 <= shard_id < num_shards:
            raise ValueError(f"shard_id {shard_id} outside [0, {num_shards})")
        self.path, self.split = path, split
        self.batch_size, self.shuffle, self.seed = int(batch_size), shuffle, int(seed)
        self.drop_remainder, self.transform, self.prefetch = drop_remainder, transform, prefetch
        self.columns = dict(columns)
        self.digests = digests
        self.buffer_rows = int(shuffle_buffer_rows)
        if self.buffer_rows < 0:
            raise ValueError(f"shuffle_buffer_rows must be 0 (load the split) or positive, "
                             f"got {self.buffer_rows}")
        if self.buffer_rows > 0:
            self.arrays = None
            self.blocks, self.block_rows = self._index(num_shards, shard_id)
            self.num_rows = int(self.block_rows.sum())
            self.total_rows = int(self._block_rows().sum())
        else:
            self.arrays, self.total_rows = self._load(num_shards, shard_id)
            self.num_rows = len(next(iter(self.arrays.values())))
        if self.num_rows == 0:
            raise ValueError(f"{path}: shard {shard_id}/{num_shards} holds no rows")
        self.max_batches = None
        self.guard = None
        if equal_shards and num_shards > 1:
            smallest = min(self._block_rows()[k::num_shards].sum() for k in range(num_shards))
            self.max_batches = (smallest // self.batch_size if drop_remainder
                                else -(-smallest // self.batch_size))
        if drop_remainder and self.num_rows < self.batch_size:
            raise ValueError(f"{path}: {self.num_rows} rows are fewer than one batch of "
                             f"{self.batch_size}; lower batch_size")

    def _load(self, num_shards, shard_id):
        import mindspore.dataset as ds  # deferred: importing it starts MindSpore
        names = list(self.columns)
        parts = {name: [] for name in names}
        number = total = 0                 # block number / rows over all files of the split
        for path in self.paths:
            data = ds.MindDataset(path, columns_list=names + ["rows"], shuffle=False,
                                  num_parallel_workers=1)
            digest = hashlib.sha256() if self.digests else None
            for block, rec in enumerate(_records(data, path)):
                mine = number % num_shards == shard_id
                number += 1
                total += int(rec["rows"])
                if digest is not None:
                    for name in names:
                        digest.update(decode_column(rec[name]).tobytes())
                if not mine:
                    continue
                for name, values in self._decode(rec, path, block).items():
                    parts[name].append(values)
            want = (self.digests or {}).get(os.path.basename(path))
            if digest is not None and want and digest.hexdigest() != want:
                raise ValueError(f"{path}: its rows differ from the ones the conversion wrote (content "
                                 "digest): the file was damaged or changed; convert the data again")
        return {name: (np.concatenate(p) if p else np.zeros((0, self.columns[name])))
                for name, p in parts.items()}, total

    def _decode(self, rec, path, block):
        """``{column: (rows, width) array}`` of one record, sizes checked."""
        rows = int(rec["rows"])
        out = {}
        for name, width in self.columns.items():
            values = decode_column(rec[name])
            if values.size != rows * width:
                raise ValueError(f"{path}: block {block} column {name!r} holds {values.size} "
                                 f"values, expected {rows} rows x {width}")
            out[name] = values.reshape(rows, width)
        return out

    def _block_rows(self):
        """Row count of every block of the split, in order (reads only ``rows``, once)."""
        if getattr(self, "_all_block_rows", None) is None:
            import mindspore.dataset as ds
            data = ds.MindDataset(self.paths, columns_list=["rows"], shuffle=False, num_parallel_workers=1)
            self._all_block_rows = np.array(
                [int(r["rows"]) for r in _records(data, self.path)], np.int64)
        return self._all_block_rows

    def _index(self, num_shards, shard_id):
        """Global numbers and row counts of this shard's blocks."""
        rows = self._block_rows()
        mine = np.arange(len(rows)) % num_shards == shard_id
        return np.flatnonzero(mine), rows[mine]

    def _windows(self, epoch):
        """Dicts of about ``buffer_rows`` rows, blocks in a seeded random order
        (file order when not shuffling)."""
        import mindspore.dataset as ds
        order = self.blocks
        if self.shuffle:
            order = np.random.default_rng([self.seed, int(epoch), 1]).permutation(order)
        names = list(self.columns)
        data = ds.MindDataset(self.paths, columns_list=names + ["rows"],
                              sampler=ds.SubsetSampler([int(i) for i in order]), num_parallel_workers=1)
        parts, held = {name: [] for name in names}, 0
        for number, rec in zip(order, _records(data, self.path)):
            block = self._decode(rec, self.path, number)
            for name, values in block.items():
                parts[name].append(values)
            held += int(rec["rows"])
            if held >= self.buffer_rows:
                yield {name: np.concatenate(p) for name, p in parts.items()}
                parts, held = {name: [] for name in names}, 0
        if held:
            yield {name: np.concatenate(p) for name, p in parts.items()}

    def _streamed(self, epoch):
        """Batch dicts of one epoch read window by window; rows left over from a
        window (less than a batch) start the next one."""
        rng = np.random.default_rng([self.seed, int(epoch), 2])
        carry = None
        for window in self._windows(epoch):
            if self.shuffle:
                perm = rng.permutation(len(next(iter(window.values()))))
                window = {name: take_rows(arr, perm) for name, arr in window.items()}
            if carry is not None:
                window = {name: np.concatenate([carry[name], arr]) for name, arr in window.items()}
            n = len(next(iter(window.values())))
            full = n - n % self.batch_size
            for lo in range(0, full, self.batch_size):
                yield {name: arr[lo:lo + self.batch_size] for name, arr in window.items()}
            carry = {name: arr[full:] for name, arr in window.items()} if full < n else None
        if carry is not None and not self.drop_remainder:
            yield carry

    def __len__(self):
        """Batches per epoch."""
        if self.drop_remainder:
            batches = self.num_rows // self.batch_size
        else:
            batches = -(-self.num_rows // self.batch_size)
        return batches if self.max_batches is None else min(batches, self.max_batches)

    def _order(self, epoch):
        if not self.shuffle:
            return None
        return np.random.default_rng([self.seed, int(epoch)]).permutation(self.num_rows)

    def _batches(self, epoch):
        if self.arrays is None:
            for _, batch in zip(range(len(self)), self._streamed(epoch)):
                yield self.transform(batch) if self.transform else batch
            return
        order = self._order(epoch)
        for b in range(len(self)):
            lo, hi = b * self.batch_size, min((b + 1) * self.batch_size, self.num_rows)
            if order is None:
                batch = {name: arr[lo:hi] for name, arr in self.arrays.items()}
            else:
                idx = order[lo:hi]
                batch = {name: take_rows(arr, idx) for name, arr in self.arrays.items()}
            yield self.transform(batch) if self.transform else batch

    def epoch(self, epoch=0):
        """The batches of one epoch (the epoch number seeds the shuffle).
        A streamed split reopens its files every epoch: ``guard()``, when
        set, first checks they are still the ones indexed (not replaced by
        a conversion since)."""
        if self.arrays is None and self.guard is not None:
            self.guard()
        if self.prefetch <= 0:
            yield from self._batches(epoch)
            return
        q = queue.Queue(maxsize=self.prefetch)
        stop = threading.Event()
        done = object()

        def produce():
            try:
                for item in self._batches(epoch):
                    if stop.is_set():
                        return
                    q.put(item)
            except BaseException as exc:  # surfaced in the consumer
                q.put(exc)
                return
            q.put(done)

        worker = threading.Thread(target=produce, daemon=True)
        worker.start()
        try:
            while True:
                item = q.get()
                if item is done:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            stop.set()
            while worker.is_alive():  # unblock a producer waiting on a full queue
                try:
                    q.get_nowait()
                except queue.Empty:
                    worker.join(timeout=0.01)
