"""Criteo's categorical encodings: a vocabulary fitted on the training lines
(values counted in one int64 key space for all 26 fields) or a hash into a
fixed number of ids per field."""
import hashlib
import os

import numpy as np
import pandas as pd

from src.data.convert.splits import splitmix64
from src.data.criteo_parse import CAT_FIELDS, NUM_CAT

_U = np.uint64

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
