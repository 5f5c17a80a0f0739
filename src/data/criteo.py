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

Malformed lines (more than 40 fields, an empty line, a label other than 0/1, a
dense value that is not an integer, a categorical value that is not 8 hex
digits) stop the conversion with a :class:`CriteoFormatError` naming the file
and the 1-based line number; with ``skip_malformed`` they are skipped, and
their count and the first few (file, line, reason) are printed and recorded in
the feature map. Nothing is dropped silently.

Conversion streams the files twice in chunks of whole lines, so memory holds
the vocabularies, never the rows:

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
``block_rows`` rows), written through :class:`BlockWriter` (atomic per file),
then ``vocabulary.npz`` and, last, ``feature_map.json``: its presence marks a
complete conversion. The old feature map, vocabulary and split files of
``out_dir`` are deleted when pass 2 starts. Memory: the vocabularies (with
their hash tables), never the rows; pass 1 of the time split of one file is
preceded by a line count (the last day must be known before counting train
values).

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
in cache: over 2x faster than 16 MB chunks.

    python -m src.data.criteo --raw_data_path data/criteo/train.txt --data_path data/criteo/mindrecord
"""
import argparse
import math
import os
import re
import sys
import time

import numpy as np
import pandas as pd

from src.data.criteo_parse import (CAT_FIELDS, DEFAULT_CHUNK_BYTES, DENSE_FIELDS, MAX_REPORTED,
                                   NUM_CAT, NUM_DENSE, OK, CriteoFormatError, iter_chunks,
                                   parse_lines)
from src.data.mindrecord_io import BlockWriter, shard_file
from src.fileio import FEATURE_MAP_FILE, read_feature_map, write_json_atomic

SPLITS = ("train", "val", "test")
TRAIN, VAL, TEST = 0, 1, 2
VOCABULARY_FILE = "vocabulary.npz"
FORMAT_VERSION = 1
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


class _FieldCounter:
    """Frequency of every value of one field, in memory proportional to the
    number of distinct values: counts of known values are added in place
    (hash lookup), new values wait in a list merged in when it grows as
    large as the table (amortised linear time)."""

    def __init__(self):
        self.keys = np.zeros(0, np.int64)
        self.counts = np.zeros(0, np.int64)
        self._index = pd.Index(self.keys)
        self._pending = []
        self._pending_size = 0

    def add(self, values):
        values = values[values >= 0]
        if not len(values):
            return
        codes, uniques = pd.factorize(values)
        counts = np.bincount(codes)
        pos = self._index.get_indexer(uniques)
        known = pos >= 0
        self.counts[pos[known]] += counts[known]
        if not known.all():
            self._pending.append((uniques[~known], counts[~known]))
            self._pending_size += int((~known).sum())
            if self._pending_size >= max(1 << 16, len(self.keys)):
                self._merge()

    def _merge(self):
        if not self._pending:
            return
        keys = np.concatenate([k for k, _ in self._pending])
        counts = np.concatenate([c for _, c in self._pending])
        codes, uniques = pd.factorize(keys)
        summed = np.bincount(codes, weights=counts).astype(np.int64)
        self.keys = np.concatenate([self.keys, np.asarray(uniques, dtype=np.int64)])
        self.counts = np.concatenate([self.counts, summed])
        self._index = pd.Index(self.keys)
        self._pending, self._pending_size = [], 0

    def result(self):
        """``(values, counts)`` of every value seen."""
        self._merge()
        return self.keys, self.counts


class Vocabulary:
    """Per-field vocabularies: local id 0 = missing / unknown / rare, 1..V the
    kept values by descending train count, then value."""

    def __init__(self, values, counts=None):
        self.values = [np.asarray(v, dtype=np.int64) for v in values]
        self.counts = counts
        self._index = [pd.Index(v) for v in self.values]     # hash tables

    @classmethod
    def fit(cls, counters, min_count):
        values, counts = [], []
        for counter in counters:
            keys, cnt = counter.result()
            keep = cnt >= min_count
            keys, cnt = keys[keep], cnt[keep]
            order = np.lexsort((keys, -cnt))
            values.append(keys[order])
            counts.append(cnt[order])
        return cls(values, counts)

    @property
    def cardinalities(self):
        return [len(v) + 1 for v in self.values]

    def encode(self, cat):
        """Local ids int32 (n, 26) of hex values (n, 26) (-1 missing)."""
        columns = np.ascontiguousarray(cat.T)
        out = np.empty(columns.shape, np.int32)
        for f, index in enumerate(self._index):
            out[f] = index.get_indexer(columns[f])
        out += 1
        return out.T

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

    def __init__(self, out_dir, split, shard_rows, block_rows):
        self.out_dir, self.split = out_dir, split
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
                                           description=f"criteo {self.split}")
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


def _clear_outputs(out_dir):
    """Delete a previous conversion's feature map, vocabulary and split files."""
    for name in (FEATURE_MAP_FILE, VOCABULARY_FILE):
        if os.path.isfile(os.path.join(out_dir, name)):
            os.remove(os.path.join(out_dir, name))
    pattern = re.compile(r"^(train|val|test)(_\d{3,})?\.mindrecord(\.db)?$")
    for name in os.listdir(out_dir):
        if pattern.match(name):
            os.remove(os.path.join(out_dir, name))


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


def _first_malformed_error(path, line_before, parsed):
    i, text = parsed.problems[0]
    return CriteoFormatError(f"{path}: line {line_before + i + 1}: {text} (use skip_malformed / "
                             f"--skip_malformed to skip malformed lines)")


class MalformedLines:
    """Malformed lines met in a pass: raise at the first, or (``skip``) count
    them and keep the first few ``{file, line, reason}``."""

    def __init__(self, skip, keep=MAX_REPORTED):
        self.skip, self.keep, self.count, self.first = bool(skip), keep, 0, []

    def check(self, path, line_before, parsed):
        """``line_before``: lines of the file before this chunk."""
        if not parsed.problems:
            return
        if not self.skip:
            raise _first_malformed_error(path, line_before, parsed)
        self.count += int((parsed.reason != OK).sum())
        for i, text in parsed.problems:
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
            progress_seconds=5.0, log=_default_log):
    """Convert raw Criteo files to MindRecord splits in ``out_dir``.

    ``raw``: ``train.txt`` (plain or gzip), a list of files (Terabyte days in
    time order) or a folder (see :func:`find_sources`). Writes the splits,
    ``vocabulary.npz`` (unless hashing) and ``feature_map.json`` (last) and
    returns the feature map. Options as in the module docstring;
    ``chunk_bytes`` is the text parsed at a time, ``log`` receives the
    progress lines.
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
    run = _Run(files, chunk_bytes, skip_malformed, progress_seconds, log)
    log(f"criteo: {len(files)} file(s), {run.total_bytes / 1e6:,.1f} MB: " + ", ".join(files))

    if max_ind_range or plan.needs_line_counts_for_train:
        plan.set_line_counts(run.count_lines("pass 1/2 (counting lines)" if max_ind_range
                                             else "pass 0 (counting lines for the time split)"))
    if max_ind_range:
        encoder = Hasher(max_ind_range)
    else:
        counters, file_lines = run.count_categories(plan)
        if plan.file_lines is not None and plan.file_lines != file_lines:
            raise RuntimeError(f"line counts changed between passes: {plan.file_lines}, then {file_lines}")
        plan.set_line_counts(file_lines)
        encoder = Vocabulary.fit(counters, min_count)
        del counters

    os.makedirs(out_dir, exist_ok=True)
    _clear_outputs(out_dir)
    writers, malformed = run.write_splits(plan, encoder, dense_transform, out_dir, shard_rows, block_rows)
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
        encoder.save(os.path.join(out_dir, VOCABULARY_FILE))
    write_json_atomic(os.path.join(out_dir, FEATURE_MAP_FILE), fmap)
    log(f"criteo: wrote {out_dir}: " + ", ".join(f"{n} {w.rows:,} rows in {len(w.files)} file(s)"
                                                 for n, w in writers.items())
        + f"; table size {fmap['table_size']:,}")
    return fmap


class _Run:
    """The passes of one conversion over its input files."""

    def __init__(self, files, chunk_bytes, skip_malformed, progress_seconds, log):
        self.files, self.chunk_bytes, self.skip = files, int(chunk_bytes), bool(skip_malformed)
        self.progress_seconds, self.log = progress_seconds, log
        self.sizes = [os.path.getsize(p) for p in files]
        self.total_bytes = sum(self.sizes)

    def _progress(self, what, total_lines=None):
        return Progress(what, total_lines=total_lines, total_bytes=self.total_bytes,
                        every=self.progress_seconds, log=self.log)

    def _chunks(self, progress):
        """``(file index, path, lines of the file before, lines of all files
        before, parsed chunk)`` for every chunk of every file, with progress."""
        global_line, done = 0, 0
        for k, path in enumerate(self.files):
            line = 0
            for data, position in iter_chunks(path, self.chunk_bytes):
                parsed = parse_lines(data)
                yield k, path, line, global_line, parsed
                line += len(parsed)
                global_line += len(parsed)
                progress.update(global_line, done + position)
            done += self.sizes[k]
        progress.done(global_line)

    def count_lines(self, what):
        """Lines per file, without parsing."""
        progress = self._progress(what)
        counts, before, done = [], 0, 0
        for k, path in enumerate(self.files):
            lines = 0
            for data, position in iter_chunks(path, self.chunk_bytes):
                lines += data.count(b"\n")
                progress.update(before + lines, done + position)
            counts.append(lines)
            before += lines
            done += self.sizes[k]
        progress.done(before)
        return counts

    def count_categories(self, plan):
        """Pass 1: per-field value counters over the train lines, and lines per file."""
        counters = [_FieldCounter() for _ in range(NUM_CAT)]
        file_lines = [0] * len(self.files)
        malformed = MalformedLines(self.skip)
        progress = self._progress("pass 1/2 (counting categories)")
        for k, path, line, global_line, parsed in self._chunks(progress):
            malformed.check(path, line, parsed)
            rows = (parsed.reason == OK) & plan.is_train(k, line, global_line, len(parsed))
            cat = parsed.cat[rows]
            for f, counter in enumerate(counters):
                counter.add(cat[:, f])
            file_lines[k] += len(parsed)
        return counters, file_lines

    def write_splits(self, plan, encoder, dense_transform, out_dir, shard_rows, block_rows):
        """Pass 2: encode every line and append it to its split's shard files."""
        writers = {name: ShardedSplitWriter(out_dir, name, shard_rows, block_rows) for name in SPLITS}
        malformed = MalformedLines(self.skip)
        file_lines = [0] * len(self.files)
        progress = self._progress("pass 2/2 (encoding and writing)", total_lines=sum(plan.file_lines))
        try:
            for k, path, line, global_line, parsed in self._chunks(progress):
                malformed.check(path, line, parsed)
                codes = plan.codes(k, line, global_line, len(parsed))
                codes[parsed.reason != OK] = -1
                arrays = {"label": parsed.label.astype(np.float32)[:, None],
                          "dense": dense_features(parsed.dense, dense_transform),
                          "cat": encoder.encode(parsed.cat)}
                for s, name in enumerate(SPLITS):
                    rows = codes == s
                    if rows.all():
                        writers[name].write(arrays)
                    elif rows.any():
                        writers[name].write({c: a[rows] for c, a in arrays.items()})
                file_lines[k] += len(parsed)
            if file_lines != plan.file_lines:
                raise RuntimeError(f"line counts changed between passes: {plan.file_lines}, "
                                   f"then {file_lines}")
            for w in writers.values():
                w.close()
        except BaseException:
            for w in writers.values():
                w.abort()
            raise
        return writers, malformed


def load_feature_map(data_dir):
    """Read ``data_dir/feature_map.json`` written by :func:`convert`."""
    return read_feature_map(data_dir, "criteo", FORMAT_VERSION,
                            "python -m src.data.criteo --raw_data_path <train.txt or folder of day "
                            f"files> --data_path {data_dir}")


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
    args = parser.parse_args(argv)
    raw = args.raw_data_path[0] if len(args.raw_data_path) == 1 else args.raw_data_path
    try:
        convert(raw, args.data_path, min_count=args.min_count, max_ind_range=args.max_ind_range,
                dense_transform=args.dense_transform, split=args.split,
                val_fraction=args.val_fraction, test_fraction=args.test_fraction, days=args.days,
                seed=args.seed, shard_rows=args.shard_rows, block_rows=args.block_rows,
                skip_malformed=args.skip_malformed, chunk_bytes=max(1, int(args.chunk_mb * (1 << 20))),
                progress_seconds=args.progress_seconds)
    except (CriteoFormatError, FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
