"""Criteo click logs to sharded MindRecord splits, for DeepFM and DLRM.

Raw format (Kaggle Display Advertising ``train.txt``; the Terabyte logs'
``day_0 .. day_23`` use the same lines): no header, one impression per line,
tab separated::

    label  I1 .. I13  C1 .. C26

``label`` is ``0``/``1``; ``I1..I13`` are integers, possibly negative, possibly
empty; ``C1..C26`` are 8-hex-digit strings, possibly empty. Trailing empty
fields are often stripped (the real file has lines of 37, 38 and 40 fields):
a line with fewer than 40 fields is padded with empty fields. Files may be
plain or gzip'd (told by the magic bytes, not the name); ``\\r\\n`` ends are
accepted.

Malformed lines (more than 40 fields, fewer than 14 (the line ends inside
the dense block), an empty line, a label other than 0/1, a dense value that
is not an integer, a categorical value that is not 8 hex digits) stop the
conversion with a :class:`CriteoFormatError` naming the file and the 1-based
line number; with ``skip_malformed`` they are skipped, and
their count and the first few (file, line, reason) are printed and recorded in
the feature map. Nothing is dropped silently.

Conversion streams the files twice in chunks of whole lines (see
"Processes" below), so memory holds the vocabularies, never the rows:

* pass 1 counts the lines of every file and, unless hashing, the frequency of
  every categorical value per field over the TRAINING rows only;
* pass 2 encodes every line and appends it to its split's shard files.

Encoding (stored per row: ``label`` float32 (1), ``dense`` float32 (13),
``cat`` int32 (26)):

* dense: missing and negative values -> 0, then ``log(1 + x)``
  (``dense_transform="log1p"``, the reference DLRM's) or the value as is
  (``"none"``). No statistic is computed, so nothing leaks from val/test.
* categorical, per field LOCAL ids: 0 = missing, unseen in train or rarer than
  ``min_count``; 1..V = the values seen at least ``min_count`` times in train,
  ordered by descending count, then by value. ``min_count=1`` keeps every
  train value (the reference DLRM); the MindSpore DeepFM kept values seen
  more than 100 times, i.e. ``min_count=101``. The kept values are saved in
  ``vocabulary.npz`` (field name -> uint32 values in id order, and
  ``counts_<field>``). With ``max_ind_range=R > 0`` (the reference DLRM's
  ``--max-ind-range``) there is no vocabulary: id = 1 + splitmix64(value,
  field) mod (R - 1), 0 for missing, a deterministic hash (not Python's
  salted ``hash()``), and pass 1 only counts lines.
* ``feature_map.json`` gives each field's cardinality (V + 1, or R) and the
  ``offsets`` (cumulative sums) of a shared embedding table of
  ``table_size`` rows: global id = local id + ``offsets[field]``.

Splits:

* ``split="random"``: a line goes to test when ``u < test_fraction``, to val
  when ``u < test_fraction + val_fraction``, else to train, where ``u`` in
  [0, 1) is a splitmix64 hash of ``(seed, global line number)`` counted over
  all input files in order (malformed lines included). It depends on nothing
  else, so both passes, any chunk size and any run agree.
* ``split="time"`` (the reference DLRM's): one file is cut by line count into
  ``days`` consecutive parts (``divmod``: the first ``lines % days`` parts one
  line longer); several files (Terabyte) are one day each. All days but the
  last are train; the last day is halved, its first half (one line longer
  when odd) test, its second half val. Line counts include malformed lines,
  so day boundaries are positions in the file.

Output in ``out_dir``: per split the shard files ``<split>_000.mindrecord``,
``<split>_001.mindrecord``, ... (:func:`src.data.mindrecord_io.shard_file`)
of at most ``shard_rows`` rows each (rounded down to whole blocks of
``block_rows`` rows), then ``vocabulary.npz`` and ``feature_map.json``, all in a
staging folder that replaces ``out_dir`` in one step when everything is written
(:class:`~src.data.publish.StagedConversion`): a killed conversion leaves the
previous data set untouched. Workers die with this process, whatever kills
it (``PR_SET_PDEATHSIG``). Memory: the vocabularies (with
their hash tables), never the rows; pass 1 of the time split of one file is
preceded by a line count (the last day must be known before counting train
values).

Processes: this process reads the files (only to find the chunks of whole
lines and count them: a chunk of a plain file is handed out as its offset
and length, the first reading records where the chunks are, so a later pass
does not read here at all) and writes the splits; ``workers`` forked
processes (default: the usable CPUs, at most 4) parse, count and encode the
chunks. Chunk ``i`` goes to worker ``i mod workers`` and its result comes
back in order, so the output is byte for byte the one of a single process
(``workers=0``). A pass-1 worker counts the values of the chunks it was
given; the counts are summed at the end of the pass (so pass 1 holds about
one set of counts per worker). Pass-2 results come back through shared
memory, not pickled. At most three chunks per worker are in flight: memory
does not grow with the input. The vocabulary (its hash table built before
the workers fork) is shared with them copy-on-write. The MindRecord writer
(about 1 s of CPU per million rows, holding the GIL) runs here, beside them.

Parsing does not use ``pandas.read_csv``. Measured on generated data, its C
engine alone (categoricals as ``str``: 26 Python objects per line) ran at
about the speed of this whole parser, and turning the 26 string columns into
ids then cost as much again; it also pads short rows silently, and bad values
found after tokenising (a label of 2, a dense ``1.5``) would have to be traced
back to line numbers. :func:`~src.data.criteo_parse.parse_lines` works on the raw bytes with numpy:
it locates tabs and newlines, pads short lines, then reads the 8 bytes at
each field's start as one unaligned little-endian ``uint64`` and decodes them
with SIMD-within-a-register arithmetic (8 hex digits -> 32-bit value, up to 8
decimal digits -> integer; longer integers, rare, go through ``int()``),
validating every field on the way. Chunks of about 1 MB keep the temporaries
in cache: over 2x faster than 16 MB chunks. Pass 1 checks the label and
dense fields without decoding them. The categorical values of all 26 fields
share one int64 key space (``field << 32 | value``): one ``pd.factorize`` per
chunk counts them and one hash lookup per chunk encodes them.

    python -m src.data.criteo --raw_data_path data/criteo/train.txt --data_path data/criteo/mindrecord
"""
import argparse
import collections
import ctypes
import hashlib
import math
import mmap
import multiprocessing
import os
import queue
import re
import signal
import sys
import time
import traceback

import numpy as np
import pandas as pd

from src.data.criteo_parse import (CAT_FIELDS, DEFAULT_CHUNK_BYTES, DENSE_FIELDS, MAX_REPORTED,
                                   NUM_CAT, NUM_DENSE, OK, CriteoFormatError, is_gzip, iter_chunks,
                                   parse_lines, read_span)
from src import faults
from src.data.mindrecord_io import BlockWriter, shard_file
from src.data.publish import StagedConversion
from src.fileio import FEATURE_MAP_FILE, read_feature_map  # noqa: F401 (part of this module's interface)

SPLITS = ("train", "val", "test")
TRAIN, VAL, TEST = 0, 1, 2
VOCABULARY_FILE = "vocabulary.npz"
FORMAT_VERSION = 2        # 2: integrity record and fingerprints (src/data/publish.py)
DEFAULT_SHARD_ROWS = 2048 * 1024
DAY_FILE = re.compile(r"^day_(\d+)(\.gz)?$")
TRAIN_FILES = ("train.txt", "train.txt.gz")
COLUMNS = {"label": ("float32", 1), "dense": ("float32", NUM_DENSE), "cat": ("int32", NUM_CAT)}
def find_sources(raw):
    """The input files, in order, from a file, a list of files or a folder.

    A folder gives its Terabyte day files ``day_<N>`` / ``day_<N>.gz`` sorted
    by N when it has any, else its ``train.txt`` or ``train.txt.gz``.
    """
    if isinstance(raw, (list, tuple)):
        paths = [os.fspath(p) for p in raw]
        if not paths:
            raise FileNotFoundError("no raw Criteo file given")
        for p in paths:
            if not os.path.isfile(p):
                raise FileNotFoundError(f"raw Criteo file {p} not found")
        return paths
    raw = os.fspath(raw)
    if os.path.isfile(raw):
        return [raw]
    if not os.path.isdir(raw):
        raise FileNotFoundError(f"raw Criteo data {raw} not found (give train.txt, a day file or "
                                f"a folder holding them)")
    present = sorted(os.listdir(raw))
    days = sorted((int(m.group(1)), name) for name in present if (m := DAY_FILE.match(name)))
    if days:
        numbers = [d for d, _ in days]
        if len(set(numbers)) != len(numbers):
            raise FileNotFoundError(f"{raw}: a day is present both plain and gzip'd: "
                                    f"{[n for _, n in days]}")
        return [os.path.join(raw, name) for _, name in days]
    hits = [name for name in TRAIN_FILES if name in present]
    if len(hits) > 1:
        raise FileNotFoundError(f"{raw}: both {hits[0]} and {hits[1]} present; give the file to use")
    if hits:
        return [os.path.join(raw, hits[0])]
    raise FileNotFoundError(f"no raw Criteo file in {raw}: looked for day_<N>[.gz] and "
                            f"{' or '.join(TRAIN_FILES)}; the folder holds {present or 'nothing'}")


# --------------------------------------------------------------------------------------------
# splits, hashing


_U = np.uint64


def splitmix64(x):
    """The splitmix64 finaliser of a uint64 array (wrapping arithmetic)."""
    z = np.asarray(x, dtype=np.uint64) + _U(0x9E3779B97F4A7C15)
    z = (z ^ (z >> _U(30))) * _U(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> _U(27))) * _U(0x94D049BB133111EB)
    return z ^ (z >> _U(31))


def random_split_codes(seed, first_index, n, val_fraction, test_fraction):
    """Split code (:data:`TRAIN`, :data:`VAL`, :data:`TEST`) of global lines
    ``first_index .. first_index + n - 1``: a function of the seed and the
    line number only."""
    key = splitmix64(np.array([int(seed) & (2 ** 64 - 1)], dtype=np.uint64))[0]
    h = splitmix64(np.arange(first_index, first_index + n, dtype=np.uint64) ^ key)
    u = (h >> _U(11)).astype(np.float64) * (1.0 / (1 << 53))
    codes = np.full(n, TRAIN, np.int8)
    codes[u < test_fraction + val_fraction] = VAL
    codes[u < test_fraction] = TEST
    return codes


def day_sizes(lines, days):
    """Lines per day when ``lines`` are cut into ``days`` consecutive parts:
    ``divmod``, the first ``lines % days`` days one line longer (the reference DLRM)."""
    base, extra = divmod(int(lines), int(days))
    return [base + (1 if d < extra else 0) for d in range(int(days))]


class SplitPlan:
    """Which split each line goes to (see the module docstring)."""

    def __init__(self, mode, num_files, seed=2020, val_fraction=0.1, test_fraction=0.1, days=7):
        if mode not in ("random", "time"):
            raise ValueError(f"split must be 'random' or 'time', got {mode!r}")
        self.mode, self.num_files, self.seed = mode, int(num_files), int(seed)
        self.val_fraction, self.test_fraction = float(val_fraction), float(test_fraction)
        self.days = int(days)
        if mode == "random":
            if not (0.0 <= self.val_fraction and 0.0 <= self.test_fraction
                    and self.val_fraction + self.test_fraction < 1.0):
                raise ValueError(f"val_fraction {val_fraction} and test_fraction {test_fraction} must be "
                                 f">= 0 with a sum below 1")
        elif self.num_files == 1 and self.days < 2:
            raise ValueError(f"a time split of one file needs days >= 2, got {days}")
        self.file_lines = None

    @property
    def needs_line_counts_for_train(self):
        """Whether train membership needs the line count first (time split of one file)."""
        return self.mode == "time" and self.num_files == 1

    def set_line_counts(self, file_lines):
        self.file_lines = [int(n) for n in file_lines]

    def _time_bounds(self, file_index):
        """``(train_end, test_end)`` as line numbers within the file."""
        if self.num_files == 1:
            last = day_sizes(self.file_lines[0], self.days)[-1]
            train_end = self.file_lines[0] - last
        else:
            if file_index < self.num_files - 1:
                return math.inf, math.inf
            last, train_end = self.file_lines[file_index], 0
        return train_end, train_end + (last + 1) // 2

    def codes(self, file_index, first_line, global_first, n):
        """Split codes of lines ``first_line ..`` of a file (``global_first``: the
        number of the first of them over all files)."""
        if self.mode == "random":
            return random_split_codes(self.seed, global_first, n, self.val_fraction, self.test_fraction)
        if self.mode == "time" and self.num_files > 1 and file_index < self.num_files - 1:
            return np.full(n, TRAIN, np.int8)
        train_end, test_end = self._time_bounds(file_index)
        i = np.arange(first_line, first_line + n)
        return np.where(i < train_end, TRAIN, np.where(i < test_end, TEST, VAL)).astype(np.int8)

    def is_train(self, file_index, first_line, global_first, n):
        """Train membership, known in pass 1 (for the last file of a multi-file
        time split without its line count: none of it is train)."""
        if self.mode == "time" and self.num_files > 1:
            return np.full(n, file_index < self.num_files - 1)
        return self.codes(file_index, first_line, global_first, n) == TRAIN

    def describe(self):
        out = {"mode": self.mode, "seed": self.seed}
        if self.mode == "random":
            out.update(val_fraction=self.val_fraction, test_fraction=self.test_fraction)
        elif self.num_files == 1:
            out.update(days=self.days, day_lines=day_sizes(self.file_lines[0], self.days),
                       rule="days 1..N-1 train; last day: first half test, second half val")
        else:
            out.update(days=self.num_files, day_lines=self.file_lines,
                       rule="one file per day; all but the last train; last: first half test, "
                            "second half val")
        return out


# --------------------------------------------------------------------------------------------
# vocabulary and encoding


# Categorical values of all 26 fields share one int64 key space: field << 32 | value
# (a missing value, -1, stays -1 whatever the field: -1 | x == -1), so one hash
# table serves every field and a chunk is counted or encoded in one call.
_FIELD_KEY = np.arange(NUM_CAT, dtype=np.int64) << 32


def field_keys(cat):
    """int64 keys ``field << 32 | value`` (same shape) of hex values ``(n, 26)``; -1 stays -1."""
    return np.bitwise_or(cat, _FIELD_KEY)


class ValueCounter:
    """Frequency of every (field, value) key, in memory proportional to the
    number of distinct keys: a chunk's keys are tallied (``pd.factorize``),
    counts of known keys are added in place (one hash lookup per distinct key
    of the chunk), new keys wait in a list merged in when it grows as large
    as the table (amortised linear time)."""

    def __init__(self):
        self.keys = np.zeros(0, np.int64)
        self.counts = np.zeros(0, np.int64)
        self._index = pd.Index(self.keys)
        self._pending = []
        self._pending_size = 0

    def add(self, keys, counts=None):
        """Count ``keys`` (int64, any shape; -1 = missing, counted and dropped
        by :meth:`result`), each ``counts`` times (default once)."""
        keys = np.asarray(keys, dtype=np.int64).ravel()
        if not len(keys):
            return
        codes, uniques = pd.factorize(keys)
        counts = (np.bincount(codes, minlength=len(uniques)) if counts is None
                  else np.bincount(codes, weights=counts, minlength=len(uniques)).astype(np.int64))
        pos = self._index.get_indexer(uniques)
        known = pos >= 0
        if known.all():
            self.counts[pos] += counts
            return
        self.counts[pos[known]] += counts[known]
        self._pending.append((uniques[~known], counts[~known]))
        self._pending_size += len(self._pending[-1][0])
        if self._pending_size >= max(1 << 16, len(self.keys)):
            self._merge()

    def _merge(self):
        if not self._pending:
            return
        keys = np.concatenate([k for k, _ in self._pending])
        counts = np.concatenate([c for _, c in self._pending])
        self._pending, self._pending_size = [], 0
        codes, uniques = pd.factorize(keys)
        summed = np.bincount(codes, weights=counts).astype(np.int64)
        self.keys = np.concatenate([self.keys, np.asarray(uniques, dtype=np.int64)])
        self.counts = np.concatenate([self.counts, summed])
        self._index = pd.Index(self.keys)

    def result(self):
        """``(keys, counts)`` of every non-missing key seen, in no set order."""
        self._merge()
        seen = self.keys >= 0
        return self.keys[seen], self.counts[seen]


def merge_counts(parts):
    """``(keys, counts)`` summed over ``(keys, counts)`` pairs (each without
    duplicate keys), consumed from the list ``parts`` to free them early."""
    total = ValueCounter()
    while parts:
        keys, counts = parts.pop(0)
        total.add(keys, counts)
    return total.result()


class Vocabulary:
    """Per-field vocabularies: local id 0 = missing / unknown / rare, 1..V the
    kept values by descending train count, then value."""

    def __init__(self, values, counts=None):
        self.values = [np.asarray(v, dtype=np.int64) for v in values]
        self.counts = counts
        sizes = np.array([len(v) for v in self.values], np.int64)
        # one hash table over every field's keys in id order; field f's ids
        # start at self._first[f] in it
        self._first = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
        self._index = pd.Index(np.concatenate([np.zeros(0, np.int64)] + [
            v | _FIELD_KEY[f] for f, v in enumerate(self.values)]))
        self._index.get_indexer(np.zeros(1, np.int64))     # build the table now (shared by workers)

    @classmethod
    def fit(cls, keys, counts, min_count):
        """From the train counts of ``(field << 32 | value)`` keys (see
        :class:`ValueCounter`): values seen at least ``min_count`` times."""
        keep = counts >= min_count
        keys, counts = keys[keep], counts[keep]
        field, value = keys >> 32, keys & 0xFFFFFFFF
        order = np.lexsort((value, -counts, field))
        field, value, counts = field[order], value[order], counts[order]
        cut = np.searchsorted(field, np.arange(NUM_CAT + 1))
        return cls([value[cut[f]:cut[f + 1]] for f in range(NUM_CAT)],
                   [counts[cut[f]:cut[f + 1]] for f in range(NUM_CAT)])

    @property
    def cardinalities(self):
        return [len(v) + 1 for v in self.values]

    def digest(self):
        """sha256 of the kept values in id order (what the ids mean)."""
        digest = hashlib.sha256()
        for values in self.values:
            digest.update(np.int64(len(values)).tobytes())
            digest.update(np.ascontiguousarray(values, np.int64).tobytes())
        return digest.hexdigest()

    def encode(self, cat):
        """Local ids int32 (n, 26) of hex values (n, 26) (-1 missing)."""
        pos = self._index.get_indexer(field_keys(cat).ravel()).reshape(cat.shape)
        ids = pos - (self._first - 1)
        ids[pos < 0] = 0
        return ids.astype(np.int32)

    def save(self, path):
        tmp = path + ".tmp.npz"
        arrays = {name: v.astype(np.uint32) for name, v in zip(CAT_FIELDS, self.values)}
        if self.counts is not None:
            arrays.update({f"counts_{name}": c for name, c in zip(CAT_FIELDS, self.counts)})
        np.savez(tmp, **arrays)
        os.replace(tmp, path)


class Hasher:
    """Hashed local ids: 0 for missing, else 1 + splitmix64(value, field) mod (R - 1)."""

    def __init__(self, max_ind_range):
        if max_ind_range < 2:
            raise ValueError(f"max_ind_range must be 0 (vocabulary) or at least 2, got {max_ind_range}")
        self.range = int(max_ind_range)
        self._salt = splitmix64(np.arange(NUM_CAT, dtype=np.uint64) + _U(0xC71E0)) << _U(32)

    @property
    def cardinalities(self):
        return [self.range] * NUM_CAT

    def encode(self, cat):
        h = splitmix64(cat.astype(np.uint64) ^ self._salt)
        ids = (h % _U(self.range - 1)).astype(np.int32) + 1
        ids[cat < 0] = 0
        return ids


def dense_features(dense, transform="log1p"):
    """float32 dense features of raw integers: negative (and missing, read
    as 0) -> 0, then ``log1p`` or nothing."""
    x = np.maximum(dense, 0).astype(np.float64)
    if transform == "log1p":
        np.log1p(x, out=x)
    elif transform != "none":
        raise ValueError(f"dense_transform must be 'log1p' or 'none', got {transform!r}")
    return x.astype(np.float32)


# --------------------------------------------------------------------------------------------
# output


class ShardedSplitWriter:
    """Rows of one split into ``<split>_000.mindrecord``, ``_001``, ... of
    ``shard_rows`` rows each (the last shorter), through :class:`BlockWriter`."""

    def __init__(self, out_dir, split, shard_rows, block_rows, on_close=None):
        self.out_dir, self.split, self.on_close = out_dir, split, on_close
        self.shard_rows, self.block_rows = int(shard_rows), int(block_rows)
        self.columns = {name: (np.dtype(dt), w) for name, (dt, w) in COLUMNS.items()}
        self.files, self.rows = [], 0
        self._writer, self._in_shard = None, 0

    def write(self, arrays):
        n = len(arrays["label"])
        pos = 0
        while pos < n:
            if self._writer is None:
                path = shard_file(self.out_dir, self.split, len(self.files))
                self._writer = BlockWriter(path, self.columns, block_rows=self.block_rows,
                                           description=f"criteo {self.split}", on_close=self.on_close)
                self.files.append(os.path.basename(path))
                self._in_shard = 0
            take = min(n - pos, self.shard_rows - self._in_shard)
            self._writer.write({k: v[pos:pos + take] for k, v in arrays.items()})
            pos += take
            self._in_shard += take
            self.rows += take
            if self._in_shard == self.shard_rows:
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


# --------------------------------------------------------------------------------------------
# progress and malformed lines


class Progress:
    """Prints lines done, lines/s and the ETA every ``every`` seconds."""

    def __init__(self, what, total_lines=None, total_bytes=None, every=5.0, log=print):
        self.what, self.total_lines, self.total_bytes = what, total_lines, total_bytes
        self.every, self.log = float(every), log
        self.start = self.last = time.monotonic()

    def update(self, lines, position=None):
        now = time.monotonic()
        if now - self.last < self.every:
            return
        self.last = now
        elapsed = now - self.start
        rate = lines / max(elapsed, 1e-9)
        if self.total_lines:
            frac = lines / self.total_lines
        elif self.total_bytes and position:
            frac = min(position / self.total_bytes, 1.0)
        else:
            frac = None
        text = f"criteo {self.what}: {lines:,} lines"
        if frac:
            eta = elapsed * (1.0 - frac) / frac
            text += f" ({100 * frac:.1f} %), {rate:,.0f} lines/s, ETA {_hms(eta)}"
        else:
            text += f", {rate:,.0f} lines/s"
        self.log(text)

    def done(self, lines):
        elapsed = time.monotonic() - self.start
        rate = lines / max(elapsed, 1e-9)
        self.log(f"criteo {self.what}: done, {lines:,} lines in {elapsed:.1f} s ({rate:,.0f} lines/s)")
        return rate


def _hms(seconds):
    seconds = int(round(seconds))
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m{seconds % 60:02d}s"


def _first_malformed_error(path, line_before, problems):
    i, text = problems[0]
    return CriteoFormatError(f"{path}: line {line_before + i + 1}: {text} (use skip_malformed / "
                             f"--skip_malformed to skip malformed lines)")


class MalformedLines:
    """Malformed lines met in a pass: raise at the first, or (``skip``) count
    them and keep the first few ``{file, line, reason}``."""

    def __init__(self, skip, keep=MAX_REPORTED):
        self.skip, self.keep, self.count, self.first = bool(skip), keep, 0, []

    def check(self, path, line_before, problems, bad):
        """A chunk's ``problems`` (``(line index, text)`` of its first
        malformed lines) and ``bad`` (its number of malformed lines);
        ``line_before``: lines of the file before the chunk."""
        if not problems:
            return
        if not self.skip:
            raise _first_malformed_error(path, line_before, problems)
        self.count += int(bad)
        for i, text in problems:
            if len(self.first) < self.keep:
                self.first.append({"file": path, "line": line_before + i + 1, "reason": text})

    def report(self):
        return {"count": self.count, "skip_malformed": self.skip, "first": self.first}


# --------------------------------------------------------------------------------------------
# conversion


def _default_log(text):
    print(text, flush=True)


def convert(raw, out_dir, min_count=1, max_ind_range=0, dense_transform="log1p", split="random",
            val_fraction=0.1, test_fraction=0.1, days=7, seed=2020, shard_rows=DEFAULT_SHARD_ROWS,
            block_rows=1024, skip_malformed=False, chunk_bytes=DEFAULT_CHUNK_BYTES,
            progress_seconds=5.0, log=_default_log, workers=None):
    """Convert raw Criteo files to MindRecord splits in ``out_dir``.

    ``raw``: ``train.txt`` (plain or gzip), a list of files (Terabyte days in
    time order) or a folder (see :func:`find_sources`). Writes the splits,
    ``vocabulary.npz`` (unless hashing) and ``feature_map.json`` (last) and
    returns the feature map plus, not written to the file, ``timing``: wall
    seconds of each step (``pass0_s``, ``pass1_s``, ``fit_s``, ``pass2_s``,
    ``finish_s``) and ``counted_values``: the distinct (field, value) pairs
    of the train lines (what pass 1 held in memory). Options as in the module docstring;
    ``chunk_bytes`` is the text parsed at a time, ``log`` receives the
    progress lines; ``workers``: processes that parse, count and encode the
    chunks while this one reads and writes (None: :func:`default_workers`;
    0: all in this process; the output is the same whatever the number).
    """
    min_count, max_ind_range = int(min_count), int(max_ind_range)
    if min_count < 1:
        raise ValueError(f"min_count must be at least 1, got {min_count}")
    if max_ind_range < 0 or max_ind_range == 1:
        raise ValueError(f"max_ind_range must be 0 (vocabulary) or at least 2, got {max_ind_range}")
    if dense_transform not in ("log1p", "none"):
        raise ValueError(f"dense_transform must be 'log1p' or 'none', got {dense_transform!r}")
    if block_rows < 1 or shard_rows < block_rows:
        raise ValueError(f"need 1 <= block_rows <= shard_rows, got {block_rows} and {shard_rows}")
    shard_rows = int(shard_rows) // int(block_rows) * int(block_rows)   # whole blocks per file
    files = find_sources(raw)
    plan = SplitPlan(split, len(files), seed, val_fraction, test_fraction, days)
    workers = default_workers() if workers is None else int(workers)
    if workers < 0:
        raise ValueError(f"workers must be >= 0, got {workers}")
    if "fork" not in multiprocessing.get_all_start_methods():
        workers = 0                     # the workers share this process's data by forking
    run = _Run(files, chunk_bytes, skip_malformed, progress_seconds, log, workers)
    clock = _Clock()
    log(f"criteo: {len(files)} file(s), {run.total_bytes / 1e6:,.1f} MB, {run.workers} worker "
        f"process(es): " + ", ".join(files))

    if max_ind_range or plan.needs_line_counts_for_train:
        plan.set_line_counts(run.count_lines("pass 1/2 (counting lines)" if max_ind_range
                                             else "pass 0 (counting lines for the time split)"))
        clock.lap("pass1_s" if max_ind_range else "pass0_s")
    if max_ind_range:
        encoder = Hasher(max_ind_range)
    else:
        keys, counts, file_lines = run.count_categories(plan)
        clock.lap("pass1_s")
        clock.counted_values = len(keys)
        if plan.file_lines is not None and plan.file_lines != file_lines:
            raise RuntimeError(f"line counts changed between passes: {plan.file_lines}, then {file_lines}")
        plan.set_line_counts(file_lines)
        encoder = Vocabulary.fit(keys, counts, min_count)
        del keys, counts
        clock.lap("fit_s")

    with StagedConversion(out_dir, printer=log) as stage:
        fmap, timing = _write_and_describe(run, clock, stage, files, plan, encoder, min_count,
                                           max_ind_range, dense_transform, seed, shard_rows,
                                           block_rows)
    log(f"criteo: published {stage.target}: " + ", ".join(
        f"{n} {s['rows']:,} rows in {len(s['files'])} file(s)" for n, s in fmap["splits"].items())
        + f"; table size {fmap['table_size']:,} (fingerprint {fmap['fingerprint']})")
    return dict(fmap, timing=timing, counted_values=clock.counted_values)


# what decides the model inputs (with vocabulary.npz; a checkpoint must agree with these)
ENCODING_KEYS = ("cat_fields", "dense_fields", "cardinalities", "offsets", "table_size", "encoding",
                 "min_count", "max_ind_range", "dense_transform", "columns")


def _write_and_describe(run, clock, stage, files, plan, encoder, min_count, max_ind_range,
                        dense_transform, seed, shard_rows, block_rows):
    """Pass 2 into ``stage``, then the feature map; publishes the stage."""
    log = run.log
    writers, malformed = run.write_splits(plan, encoder, dense_transform, stage, shard_rows,
                                          block_rows)
    clock.lap("pass2_s")
    if malformed.count:
        log(f"criteo: skipped {malformed.count} malformed line(s); first: "
            + "; ".join(f"{m['file']}:{m['line']}: {m['reason']}" for m in malformed.first[:3]))
    if writers["train"].rows == 0:
        raise CriteoFormatError(f"no training rows in {files}")

    cards = encoder.cardinalities
    fmap = {
        "format_version": FORMAT_VERSION,
        "dataset": "criteo",
        "dense_fields": list(DENSE_FIELDS),
        "cat_fields": list(CAT_FIELDS),
        "num_dense": NUM_DENSE,
        "num_cat": NUM_CAT,
        "cardinalities": [int(c) for c in cards],
        "offsets": [int(sum(cards[:j])) for j in range(NUM_CAT)],
        "table_size": int(sum(cards)),
        "cat_ids": "per-field local ids: 0 = missing, unseen in train or rarer than min_count "
                   "(hashing: 0 = missing only); global id = local id + offsets[field]",
        "encoding": "hash" if max_ind_range else "vocabulary",
        "min_count": min_count,
        "max_ind_range": max_ind_range,
        "vocabulary_file": None if max_ind_range else VOCABULARY_FILE,
        "dense_transform": dense_transform,
        "split": plan.describe(),
        "seed": int(seed),
        "splits": {name: {"rows": int(w.rows), "files": w.files} for name, w in writers.items()},
        "source_files": [{"path": os.path.abspath(p), "lines": n} for p, n in zip(files, plan.file_lines)],
        "total_lines": int(sum(plan.file_lines)),
        "malformed_lines": malformed.report(),
        "columns": {name: {"dtype": dt, "width": w} for name, (dt, w) in COLUMNS.items()},
        "block_rows": int(block_rows),
        "shard_rows": int(shard_rows),
    }
    if not max_ind_range:
        encoder.save(os.path.join(stage.path, VOCABULARY_FILE))
    faults.point("convert.before_publish")
    stage.publish(fmap, ENCODING_KEYS,
                  encoding_extra=None if max_ind_range else {"vocabulary": encoder.digest()})
    clock.lap("finish_s")
    return fmap, clock.laps


class _Clock:
    """Wall seconds of the steps of a conversion (``laps``: name -> seconds)."""

    def __init__(self):
        self.laps, self._last = {}, time.perf_counter()
        self.counted_values = 0         # distinct (field, value) pairs counted in pass 1

    def lap(self, name):
        now = time.perf_counter()
        self.laps[name] = now - self._last
        self._last = now


class _ChunkTask:
    """A pass's work on one chunk ``(file index, lines of the file before,
    lines of all files before, text)``; the text is the chunk's bytes or,
    for a plain file read before, its ``(offset, length)`` in the file, read
    here (so the process that hands out the chunks does not copy them)."""

    def __init__(self, files):
        self.files, self._fds = files, {}

    def text(self, k, data):
        if isinstance(data, bytes):
            return data
        if k not in self._fds:
            self._fds[k] = os.open(self.files[k], os.O_RDONLY)
        return read_span(self._fds[k], *data)

    def close(self):
        for fd in self._fds.values():
            os.close(fd)
        self._fds = {}

    def finish(self):
        self.close()


class _CountTask(_ChunkTask):
    """Pass 1 on one chunk: parse it and count the values of its train lines
    (state: the counts of every chunk given to this worker)."""

    def __init__(self, files, plan):
        super().__init__(files)
        self.plan = plan
        self.counter = ValueCounter()

    def __call__(self, task):
        k, line, global_line, data = task
        parsed = parse_lines(self.text(k, data), dense=False)
        n = len(parsed)
        ok = parsed.reason == OK
        rows = ok & self.plan.is_train(k, line, global_line, n)
        self.counter.add(field_keys(parsed.cat if rows.all() else parsed.cat[rows]))
        return n, parsed.problems, n - int(np.count_nonzero(ok))

    def finish(self):
        self.close()
        return self.counter.result()


class _EncodeTask(_ChunkTask):
    """Pass 2 on one chunk: parse, split and encode it; the rows of each split."""

    def __init__(self, files, plan, encoder, dense_transform):
        super().__init__(files)
        self.plan, self.encoder, self.dense_transform = plan, encoder, dense_transform

    def __call__(self, task):
        k, line, global_line, data = task
        parsed = parse_lines(self.text(k, data))
        n = len(parsed)
        ok = parsed.reason == OK
        codes = self.plan.codes(k, line, global_line, n)
        codes[~ok] = -1
        arrays = {"label": parsed.label.astype(np.float32)[:, None],
                  "dense": dense_features(parsed.dense, self.dense_transform),
                  "cat": self.encoder.encode(parsed.cat)}
        parts = []
        for s in range(len(SPLITS)):
            rows = codes == s
            if rows.all():
                parts.append((s, arrays))
            elif rows.any():
                parts.append((s, {c: a[rows] for c, a in arrays.items()}))
        return n, parsed.problems, n - int(np.count_nonzero(ok)), parts


def default_workers():
    """Worker processes used by default: the CPUs this process may run on, at
    most 4 (the one process writing the splits keeps up with about that
    many); 0 where processes cannot be forked."""
    if "fork" not in multiprocessing.get_all_start_methods():
        return 0
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, 4))


def _tune_malloc():
    """Let glibc keep freed memory for reuse instead of unmapping it: the
    parser's temporaries (about 1 MB each, per chunk) otherwise cost fresh
    zeroed pages every time, over half the time of parsing. Only in worker
    processes (and the command line), never in a caller's process."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return
    mallopt(-3, 32 << 20)          # M_MMAP_THRESHOLD: below this, from the heap
    mallopt(-1, 64 << 20)          # M_TRIM_THRESHOLD: free heap kept before trimming


class _Shared:
    """Where :func:`_pack` put an array in a slot of shared memory."""
    __slots__ = ("offset", "dtype", "shape")

    def __init__(self, offset, dtype, shape):
        self.offset, self.dtype, self.shape = offset, dtype, shape

    def __getstate__(self):
        return self.offset, self.dtype, self.shape

    def __setstate__(self, state):
        self.offset, self.dtype, self.shape = state


def _pack(obj, slot, pos=0):
    """``(obj, end)``: ``obj`` (arrays in tuples, lists and dicts) with its
    arrays copied into the uint8 array ``slot`` from ``pos`` while they fit,
    each replaced by its :class:`_Shared` place; the others stay (pickled)."""
    if isinstance(obj, np.ndarray):
        end = pos + obj.nbytes
        if obj.dtype.hasobject or end > len(slot):
            return obj, pos
        slot[pos:end].view(obj.dtype).reshape(obj.shape)[...] = obj
        return _Shared(pos, obj.dtype.str, obj.shape), (end + 63) // 64 * 64
    if isinstance(obj, (tuple, list)):
        out = []
        for x in obj:
            x, pos = _pack(x, slot, pos)
            out.append(x)
        return type(obj)(out), pos
    if isinstance(obj, dict):
        out = {}
        for key, x in obj.items():
            out[key], pos = _pack(x, slot, pos)
        return out, pos
    return obj, pos


def _unpack(obj, slot):
    """The inverse of :func:`_pack`: the arrays copied out of ``slot``."""
    if isinstance(obj, _Shared):
        size = int(np.prod(obj.shape, dtype=np.int64)) * np.dtype(obj.dtype).itemsize
        return slot[obj.offset:obj.offset + size].view(obj.dtype).reshape(obj.shape).copy()
    if isinstance(obj, (tuple, list)):
        return type(obj)(_unpack(x, slot) for x in obj)
    if isinstance(obj, dict):
        return {key: _unpack(x, slot) for key, x in obj.items()}
    return obj


class _Slots:
    """``depth`` slots of ``size`` bytes of memory shared by a worker and the
    parent (anonymous, inherited by the fork). The n-th result of a worker
    goes to slot ``n mod depth``: with at most ``depth`` chunks in flight per
    worker, the parent has copied a slot's arrays out before it is reused.
    Results so travel without pickling and pipe copies; what does not fit
    is pickled."""

    def __init__(self, depth, size):
        self.depth, self.size = depth, size
        self.memory = np.frombuffer(mmap.mmap(-1, depth * size), np.uint8)
        self.count = 0

    def next(self):
        k = self.count % self.depth
        self.count += 1
        return self.memory[k * self.size:(k + 1) * self.size]


def _die_with_parent(parent):
    """Ask the kernel to SIGKILL this process when its parent dies, whatever
    kills the parent (Linux prctl PR_SET_PDEATHSIG); if the parent is
    already gone, end now."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)         # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass                                            # not Linux: _get's liveness polling
    if os.getppid() != parent:
        os._exit(1)


def _worker_main(task, inbox, outbox, slots, parent):
    _die_with_parent(parent)
    _tune_malloc()
    signal.signal(signal.SIGINT, signal.SIG_IGN)     # the parent stops the workers
    try:
        while True:
            item = inbox.get()
            if item is None:
                outbox.put(("done", task.finish()))
                return
            result, _ = _pack(task(item), slots.next())
            outbox.put(("ok", result))
    except BaseException:                             # reported by the parent
        outbox.put(("error", traceback.format_exc()))


class _Workers:
    """Runs ``task`` (a callable with ``finish()``) over chunks in
    ``workers`` forked processes, each with its own copy of ``task`` and its
    state; ``workers=0`` runs it here. Chunk ``i`` goes to worker ``i mod
    workers`` and results are taken back in submission order, so what is
    done with them (writing, error reports) is the same as in one process.
    At most ``depth`` chunks per worker are in flight: memory does not grow
    with the input. Result arrays come back through shared memory
    (:class:`_Slots` of ``slot_bytes``)."""

    def __init__(self, task, workers, depth=3, slot_bytes=4 << 20):
        self.task, self.workers = task, int(workers)
        self.limit = depth * max(self.workers, 1)
        self.procs, self.inbox, self.outbox, self.slots = [], [], [], []
        if self.workers:
            ctx = multiprocessing.get_context("fork")   # the task and its data, shared as is
            try:
                for w in range(self.workers):
                    self.inbox.append(ctx.Queue())
                    self.outbox.append(ctx.Queue())
                    self.slots.append(_Slots(depth, slot_bytes))
                    proc = ctx.Process(target=_worker_main, name=f"criteo-worker-{w}", daemon=True,
                                       args=(task, self.inbox[w], self.outbox[w], self.slots[w],
                                             os.getpid()))
                    proc.start()
                    self.procs.append(proc)
            except BaseException:
                self.close(abort=True)
                raise

    def map(self, items):
        """``(meta, result)`` for every ``(meta, task input)`` of ``items``, in order."""
        if not self.workers:
            for meta, item in items:
                yield meta, self.task(item)
            return
        flight = collections.deque()
        for i, (meta, item) in enumerate(items):
            if len(flight) >= self.limit:
                old, w = flight.popleft()
                yield old, _unpack(self._get(w), self.slots[w].next())
            w = i % self.workers
            self.inbox[w].put(item)
            flight.append((meta, w))
        while flight:
            old, w = flight.popleft()
            yield old, _unpack(self._get(w), self.slots[w].next())

    def _get(self, w):
        while True:
            try:
                kind, value = self.outbox[w].get(timeout=1.0)
                break
            except queue.Empty:
                if self.procs[w].is_alive():
                    continue
                try:
                    kind, value = self.outbox[w].get(timeout=1.0)
                    break
                except queue.Empty:
                    raise RuntimeError(f"criteo converter worker {w} died (exit code "
                                       f"{self.procs[w].exitcode})") from None
        if kind == "error":
            last = value.strip().splitlines()[-1]
            raise RuntimeError(f"criteo converter worker {w} failed: {last}\n{value}")
        return value

    def finish(self):
        """The ``finish()`` of every worker's task, then the workers end."""
        if not self.workers:
            return [self.task.finish()]
        for q in self.inbox:
            q.put(None)
        out = [self._get(w) for w in range(self.workers)]
        self.close()
        return out

    def close(self, abort=False):
        if not self.workers:
            self.task.close()
        for proc in self.procs:
            if abort and proc.is_alive():
                proc.terminate()
            proc.join()
        for q in self.inbox + self.outbox:
            if abort:
                q.cancel_join_thread()
            q.close()
        self.procs, self.inbox, self.outbox, self.slots = [], [], [], []


class _Run:
    """The passes of one conversion over its input files."""

    def __init__(self, files, chunk_bytes, skip_malformed, progress_seconds, log, workers):
        self.files, self.chunk_bytes, self.skip = files, int(chunk_bytes), bool(skip_malformed)
        self.sizes = [os.path.getsize(p) for p in files]
        self.total_bytes = sum(self.sizes)
        # no more workers than chunks (of a plain file; gzip'd text is longer)
        self.progress_seconds, self.log = progress_seconds, log
        self.workers = min(int(workers), -(-self.total_bytes // self.chunk_bytes))
        self.spans = [None] * len(files)

    def _progress(self, what, total_lines=None):
        return Progress(what, total_lines=total_lines, total_bytes=self.total_bytes,
                        every=self.progress_seconds, log=self.log)

    def _chunks(self):
        """``((file index, lines of the file before, its line count, byte
        position reached), (file index, lines of the file before, lines of
        all files before, text))`` for every chunk of whole lines of every
        file. The text of a chunk of a plain file is handed out as its
        ``(offset, length)``, read again where it is parsed (cheaper than
        sending it through a pipe), and the first reading of the file
        records where its chunks are (``self.spans``: three numbers per
        chunk), so later passes need not read it here at all."""
        global_line, done = 0, 0
        for k, path in enumerate(self.files):
            line = 0
            if self.spans[k] is not None:
                for offset, length, n in self.spans[k]:
                    yield (k, line, n, done + offset + length), (k, line, global_line, (offset, length))
                    line += n
                    global_line += n
            else:
                spans = None if is_gzip(path) else []
                offset = 0
                for data, position in iter_chunks(path, self.chunk_bytes):
                    n = data.count(b"\n")
                    if spans is None:
                        yield (k, line, n, done + position), (k, line, global_line, data)
                    else:                               # read again where it is processed
                        yield (k, line, n, done + position), (k, line, global_line, (offset, len(data)))
                        spans.append((offset, len(data), n))
                    offset += len(data)
                    line += n
                    global_line += n
                self.spans[k] = spans
            done += self.sizes[k]

    def _passes(self, task, what, total_lines=None):
        """``(file index, lines of the file before, task result)`` of every
        chunk, in order, with progress; then ``(None, None, the finish() of
        every worker's task)``."""
        progress = self._progress(what, total_lines)
        pool = _Workers(task, self.workers, slot_bytes=max(1 << 20, 2 * self.chunk_bytes))
        try:
            lines = 0
            for (k, line, n, position), result in pool.map(self._chunks()):
                if result[0] != n:
                    raise RuntimeError(f"{self.files[k]} changed during the conversion: {result[0]} "
                                       f"lines after line {line}, {n} before")
                yield k, line, result
                lines += n
                progress.update(lines, position)
            finals = pool.finish()
        except BaseException:
            pool.close(abort=True)
            raise
        progress.done(lines)
        yield None, None, finals

    def count_lines(self, what):
        """Lines per file, without parsing (and where the chunks are)."""
        progress = self._progress(what)
        counts = [0] * len(self.files)
        lines = 0
        for (k, _, n, position), _ in self._chunks():
            counts[k] += n
            lines += n
            progress.update(lines, position)
        progress.done(lines)
        return counts

    def count_categories(self, plan):
        """Pass 1: ``(keys, counts)`` of the values of the train lines (see
        :class:`ValueCounter`), and lines per file."""
        file_lines = [0] * len(self.files)
        malformed = MalformedLines(self.skip)
        passes = self._passes(_CountTask(self.files, plan), "pass 1/2 (counting categories)")
        try:
            for k, line, result in passes:
                if k is None:
                    parts = result
                    break
                n, problems, bad = result
                malformed.check(self.files[k], line, problems, bad)
                file_lines[k] += n
        except BaseException:
            passes.close()
            raise
        keys, counts = parts[0] if len(parts) == 1 else merge_counts(parts)
        return keys, counts, file_lines

    def write_splits(self, plan, encoder, dense_transform, stage, shard_rows, block_rows):
        """Pass 2: encode every line and append it to its split's shard files
        in ``stage`` (a :class:`~src.data.publish.StagedConversion`)."""
        task = _EncodeTask(self.files, plan, encoder, dense_transform)
        passes = self._passes(task, "pass 2/2 (encoding and writing)", total_lines=sum(plan.file_lines))
        writers = {name: ShardedSplitWriter(stage.path, name, shard_rows, block_rows,
                                            on_close=stage.record) for name in SPLITS}
        malformed = MalformedLines(self.skip)
        file_lines = [0] * len(self.files)
        try:
            for k, line, result in passes:
                if k is None:
                    break
                n, problems, bad, parts = result
                malformed.check(self.files[k], line, problems, bad)
                for s, arrays in parts:
                    writers[SPLITS[s]].write(arrays)
                file_lines[k] += n
                faults.point("criteo.chunk_written")
            if file_lines != plan.file_lines:
                raise RuntimeError(f"line counts changed between passes: {plan.file_lines}, "
                                   f"then {file_lines}")
            for w in writers.values():
                w.close()
        except BaseException:
            passes.close()
            for w in writers.values():
                w.abort()
            raise
        return writers, malformed


def load_feature_map(data_dir):
    """Read ``data_dir/feature_map.json`` written by :func:`convert`."""
    return read_feature_map(data_dir, "criteo", FORMAT_VERSION,
                            "python -m src.data.criteo --raw_data_path <train.txt or folder of day "
                            f"files> --data_path {data_dir}",
                            required=ENCODING_KEYS + ("num_cat", "num_dense", "splits"))


def load_vocabulary(data_dir):
    """``{field: uint32 values in id order}`` (id = position + 1) of a vocabulary conversion."""
    fmap = load_feature_map(data_dir)
    if not fmap.get("vocabulary_file"):
        raise ValueError(f"{data_dir} was converted with hashing (max_ind_range "
                         f"{fmap.get('max_ind_range')}): it has no vocabulary")
    with np.load(os.path.join(data_dir, fmap["vocabulary_file"])) as z:
        return {name: z[name] for name in CAT_FIELDS}


def cat_values(vocabulary, cat_ids):
    """The hex values (int64 (n, 26), -1 for id 0) of local ids, given the
    ``{field: values}`` of :func:`load_vocabulary`."""
    cat_ids = np.asarray(cat_ids)
    out = np.full(cat_ids.shape, -1, np.int64)
    for f, name in enumerate(CAT_FIELDS):
        known = cat_ids[:, f] > 0
        out[known, f] = vocabulary[name][cat_ids[known, f] - 1]
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(
        description="Convert Criteo click logs (Kaggle train.txt or Terabyte day_N files, plain or "
                    "gzip) to sharded MindRecord splits plus feature_map.json for DeepFM and DLRM.")
    parser.add_argument("--raw_data_path", required=True, nargs="+",
                        help="train.txt, a folder holding train.txt / day_<N> files, or several "
                             "files (Terabyte days, in time order)")
    parser.add_argument("--data_path", required=True,
                        help="output folder for the splits and feature_map.json")
    parser.add_argument("--min_count", type=int, default=1,
                        help="keep a categorical value seen at least this often in train; rarer values "
                             "share id 0 (default 1: keep all, as the reference DLRM; the MindSpore "
                             "DeepFM used 101)")
    parser.add_argument("--max_ind_range", type=int, default=0,
                        help="hash categorical values into this many ids per field instead of a "
                             "vocabulary (0 = vocabulary, default; like DLRM's --max-ind-range)")
    parser.add_argument("--dense_transform", choices=("log1p", "none"), default="log1p",
                        help="dense features after negative/missing -> 0: log(1 + x) or as is "
                             "(default log1p)")
    parser.add_argument("--split", choices=("random", "time"), default="random",
                        help="random: seeded per-line split by val/test fractions; time: the reference "
                             "DLRM's, last day halved into test then val (default random)")
    parser.add_argument("--val_fraction", type=float, default=0.1,
                        help="random split: share of val lines (default 0.1)")
    parser.add_argument("--test_fraction", type=float, default=0.1,
                        help="random split: share of test lines (default 0.1)")
    parser.add_argument("--days", type=int, default=7,
                        help="time split of one file: number of equal consecutive days (default 7, "
                             "as Kaggle); several files are one day each")
    parser.add_argument("--seed", type=int, default=2020, help="seed of the random split (default 2020)")
    parser.add_argument("--shard_rows", type=int, default=DEFAULT_SHARD_ROWS,
                        help=f"rows per MindRecord file at most (default {DEFAULT_SHARD_ROWS})")
    parser.add_argument("--block_rows", type=int, default=1024,
                        help="rows per MindRecord record (default 1024)")
    parser.add_argument("--skip_malformed", action="store_true",
                        help="skip and count malformed lines instead of stopping at the first")
    parser.add_argument("--chunk_mb", type=float, default=1.0,
                        help="text read per chunk in MB (default 1; larger is slower: cache)")
    parser.add_argument("--progress_seconds", type=float, default=10.0,
                        help="seconds between progress lines (default 10)")
    parser.add_argument("--workers", type=int, default=None,
                        help="processes parsing and encoding beside the one reading and writing "
                             f"(default: the usable CPUs, at most 4, here {default_workers()}; "
                             "0: one process); the output does not depend on it")
    args = parser.parse_args(argv)
    raw = args.raw_data_path[0] if len(args.raw_data_path) == 1 else args.raw_data_path
    convert(raw, args.data_path, min_count=args.min_count, max_ind_range=args.max_ind_range,
            dense_transform=args.dense_transform, split=args.split,
            val_fraction=args.val_fraction, test_fraction=args.test_fraction, days=args.days,
            seed=args.seed, shard_rows=args.shard_rows, block_rows=args.block_rows,
            skip_malformed=args.skip_malformed, chunk_bytes=max(1, int(args.chunk_mb * (1 << 20))),
            progress_seconds=args.progress_seconds, workers=args.workers)
    return 0


if __name__ == "__main__":
    from src.engine.cli import run_main     # one-line errors: exit 2 for bad input, 1 for the machine
    _tune_malloc()                      # this process only runs the conversion
    sys.exit(run_main(main))
