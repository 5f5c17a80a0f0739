"""Synthetic Criteo click logs in exactly the Kaggle ``train.txt`` format.

For tests, demos and throughput measurements without the 11 GB real file.
Each line: ``label \\t I1..I13 \\t C1..C26`` (see :mod:`src.data.criteo`):

* dense ``I1..I13``: non-negative integers from a rounded log-normal per field,
  missing (empty) with a per-field rate close to the real one; ``I2`` also
  holds negative values (-1, -2, -3) as in the real data;
* categorical ``C1..C26``: 8 lowercase hex digits. Per field a value is drawn
  by rank from a Zipf-like law ``P(rank r) ~ (r + 1) ** -s`` over the field's
  cardinality; rank ``r`` of day ``d`` is value id ``r`` for the frequent head
  (the top tenth of the ranks) and ``r + d * drift`` for the tail, so new rare
  values appear every day as in the real logs. A value id is turned into its
  hex string by a per-field bijection of 32-bit integers, so two ids never
  share a string. Some fields are missing at real-like rates; C19, C20, C25
  and C26 go missing together, which leaves rows with trailing empty fields;
  most of those rows have them stripped (37 or 38 fields), as in the real file.

Labels follow a KNOWN logistic model over exactly what the converter stores::

    logit = b0 + sum_j w_j * log1p(max(I_j, 0))          (missing I_j -> 0)
               + sum_f effect_f[value of C_f]             (missing -> 0)
               + u[value of C6] * v[value of C14]          (one interaction)

with per-value effects drawn once from the seed and ``b0`` calibrated to a
click rate of about 25 %. :meth:`CriteoSynth.probability_from_features` gives
the true click probability of any row from its dense values and hex keys (for
converted rows: the stored ``dense`` and ``criteo.cat_values(vocabulary,
cat)``), :func:`expected_auc` the Bayes-optimal AUC of rows from their true
probabilities (no model can beat it in expectation), and :func:`generate`
reports it for the whole file in ``synth_info.json``.

Rows are drawn in fixed chunks from ``numpy.random.default_rng([seed, ...])``
and written as they are drawn (memory does not grow with the row count); gzip
files carry no time stamp or name, so the same arguments give identical bytes.

    python -m src.synth.criteo --output_dir data/criteo/synth --rows 1000000 --seed 1
"""
import gzip as gzip_module
import json
import os
import sys

import numpy as np

from src.fileio import write_json_atomic

NUM_DENSE = 13
NUM_CAT = 26
CHUNK_ROWS = 50_000
TARGET_CTR = 0.25
SYNTH_INFO_FILE = "synth_info.json"

# per dense field: P(missing), log-normal mu and sigma of 1 + value
DENSE_MISSING = (0.45, 0.0, 0.21, 0.22, 0.03, 0.22, 0.04, 0.0, 0.04, 0.45, 0.04, 0.77, 0.22)
DENSE_MU = (1.0, 2.5, 2.3, 1.8, 8.0, 4.0, 1.8, 2.6, 3.8, 0.4, 0.9, 0.5, 1.7)
DENSE_SIGMA = (1.0, 1.6, 1.3, 0.9, 1.8, 1.6, 1.3, 1.0, 1.2, 0.6, 0.7, 1.0, 1.0)
NEGATIVE_FIELD = 1          # I2 also holds -1, -2, -3
NEGATIVE_RATE = 0.1
DENSE_WEIGHTS = {0: 0.30, 2: -0.15, 4: -0.08, 6: 0.20, 10: 0.25, 12: -0.10}

CAT_CARDINALITY = (1000, 500, 20000, 10000, 200, 20, 5000, 500, 3, 10000, 3000, 20000, 2000,
                   25, 5000, 15000, 10, 2000, 1500, 4, 15000, 15, 15, 8000, 80, 6000)
CAT_MISSING = (0, 0, 0.03, 0.03, 0, 0.12, 0, 0, 0, 0, 0, 0.03, 0, 0, 0, 0.03, 0, 0,
               0, 0, 0, 0.76, 0, 0.03, 0, 0)
JOINT_MISSING = (18, 19, 24, 25)   # C19, C20, C25, C26 go missing together
JOINT_MISSING_RATE = 0.44
STRIP_RATE = 0.8                    # share of rows whose trailing empty fields are stripped
ZIPF_EXPONENT = 1.1
CAT_EFFECT_SD = {0: 0.5, 3: 0.3, 4: 0.5, 5: 0.6, 8: 0.6, 13: 0.5, 16: 0.6, 19: 0.5, 22: 0.5}
INTERACTION = (5, 13, 0.7)          # u[C6] * v[C14], both N(0, 0.7)
_M32 = (1 << 32) - 1


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _mix32(x, salt):
    """A bijection of 32-bit integers (salted add, then xorshift-multiply rounds)."""
    x = (x.astype(np.uint64) + np.uint64(salt)) & np.uint64(_M32)
    for mult in (0x7FEB352D, 0x846CA68B):
        x ^= x >> np.uint64(16)
        x = (x * np.uint64(mult)) & np.uint64(_M32)
    x ^= x >> np.uint64(16)
    return x.astype(np.int64)


def day_sizes(rows, days):
    """Rows per day: equal parts, the first ``rows % days`` days one row longer
    (the split the reference DLRM and :mod:`src.data.criteo` use)."""
    base, extra = divmod(int(rows), int(days))
    return [base + (1 if d < extra else 0) for d in range(int(days))]


class CriteoSynth:
    """The generative model: field distributions, per-value effects, intercept.

    Everything is a deterministic function of ``seed`` and ``days``.
    """

    def __init__(self, seed=1, days=7):
        if days < 1:
            raise ValueError(f"days must be positive, got {days}")
        self.seed, self.days = int(seed), int(days)
        rng = np.random.default_rng([self.seed, 7])
        self.head = [max(1, c // 10) for c in CAT_CARDINALITY]
        self.drift = [c // 50 if c >= 5000 else 0 for c in CAT_CARDINALITY]
        self.num_values = [c + (self.days - 1) * d for c, d in zip(CAT_CARDINALITY, self.drift)]
        self.salts = [int(s) for s in rng.integers(0, 1 << 32, NUM_CAT)]
        self.cdf = []
        for c in CAT_CARDINALITY:
            w = (np.arange(c) + 1.0) ** -ZIPF_EXPONENT
            self.cdf.append(np.cumsum(w) / w.sum())
        self.effects = {f: rng.normal(0.0, sd, self.num_values[f]) for f, sd in CAT_EFFECT_SD.items()}
        fu, fv, sd = INTERACTION
        self.inter_u = rng.normal(0.0, sd, self.num_values[fu])
        self.inter_v = rng.normal(0.0, sd, self.num_values[fv])
        self._hex = [None] * NUM_CAT
        self._key_index = {}
        self.intercept = 0.0
        sample = self.sample(20000, np.random.default_rng([self.seed, 99]), day=0)
        z = self._logit_parts(np.log1p(np.maximum(sample["dense"], 0)), sample["cat"])
        lo, hi = -10.0, 10.0
        for _ in range(60):           # bisection: mean click probability = TARGET_CTR
            mid = 0.5 * (lo + hi)
            lo, hi = (mid, hi) if _sigmoid(z + mid).mean() < TARGET_CTR else (lo, mid)
        self.intercept = 0.5 * (lo + hi)

    def keys(self, field, value_ids):
        """32-bit integer keys (the hex value) of value ids of one field; -1 stays -1."""
        value_ids = np.asarray(value_ids, dtype=np.int64)
        out = _mix32(np.maximum(value_ids, 0), self.salts[field])
        return np.where(value_ids >= 0, out, -1)

    def hex_table(self, field):
        """Object array: the 8-hex-digit string of every value id, then ``''``
        (so index -1, a missing value, gives the empty field)."""
        if self._hex[field] is None:
            keys = self.keys(field, np.arange(self.num_values[field]))
            self._hex[field] = np.array([f"{k:08x}" for k in keys] + [""], dtype=object)
        return self._hex[field]

    def sample(self, n, rng, day):
        """Draw ``n`` rows of ``day``: ``dense`` int64 (n, 13) raw values,
        ``dense_missing`` bool (n, 13), ``cat`` int64 (n, 26) value ids (-1 missing),
        ``prob`` float64 true click probability, ``label`` int8."""
        dense = np.empty((n, NUM_DENSE), np.int64)
        for j in range(NUM_DENSE):
            dense[:, j] = np.floor(np.expm1(rng.normal(DENSE_MU[j], DENSE_SIGMA[j], n))).clip(0, 2 ** 40)
        neg = rng.random(n) < NEGATIVE_RATE
        dense[neg, NEGATIVE_FIELD] = -rng.choice(3, size=int(neg.sum()), p=[0.9, 0.07, 0.03]) - 1
        missing = rng.random((n, NUM_DENSE)) < np.asarray(DENSE_MISSING)
        dense[missing] = 0
        cat = np.empty((n, NUM_CAT), np.int64)
        for f in range(NUM_CAT):
            rank = np.searchsorted(self.cdf[f], rng.random(n), side="right").clip(max=CAT_CARDINALITY[f] - 1)
            cat[:, f] = np.where(rank < self.head[f], rank, rank + day * self.drift[f])
        cat_missing = rng.random((n, NUM_CAT)) < np.asarray(CAT_MISSING)
        cat_missing[:, list(JOINT_MISSING)] |= (rng.random(n) < JOINT_MISSING_RATE)[:, None]
        cat[cat_missing] = -1
        prob = _sigmoid(self.intercept + self._logit_parts(np.log1p(np.maximum(dense, 0)), cat))
        label = (rng.random(n) < prob).astype(np.int8)
        return {"dense": dense, "dense_missing": missing, "cat": cat, "prob": prob, "label": label}

    def _logit_parts(self, dense_log1p, cat_ids):
        z = np.zeros(len(cat_ids))
        for j, w in DENSE_WEIGHTS.items():
            z += w * dense_log1p[:, j]
        for f, effect in self.effects.items():
            ids = cat_ids[:, f]
            z += np.where(ids >= 0, effect[np.maximum(ids, 0)], 0.0)
        fu, fv, _ = INTERACTION
        u, v = cat_ids[:, fu], cat_ids[:, fv]
        pair = self.inter_u[np.maximum(u, 0)] * self.inter_v[np.maximum(v, 0)]
        z += np.where((u >= 0) & (v >= 0), pair, 0.0)
        return z

    def _value_ids(self, field, keys):
        """Value ids of 32-bit keys of one field (-1 for missing or unknown keys)."""
        if field not in self._key_index:
            k = self.keys(field, np.arange(self.num_values[field]))
            order = np.argsort(k)
            self._key_index[field] = (k[order], order)
        sorted_keys, ids = self._key_index[field]
        keys = np.asarray(keys, dtype=np.int64)
        pos = np.searchsorted(sorted_keys, keys).clip(max=len(sorted_keys) - 1)
        return np.where(sorted_keys[pos] == keys, ids[pos], -1)

    def probability_from_features(self, dense_log1p, cat_keys):
        """True click probability of rows given their stored features.

        ``dense_log1p``: (n, 13) ``log1p(max(I, 0))`` with missing as 0 (what the
        converter stores with ``dense_transform="log1p"``); ``cat_keys``: (n, 26)
        integer value of the hex strings, -1 when missing.
        """
        cat_keys = np.asarray(cat_keys, dtype=np.int64)
        ids = np.full(cat_keys.shape, -1, np.int64)
        for f in set(CAT_EFFECT_SD) | {INTERACTION[0], INTERACTION[1]}:
            ids[:, f] = self._value_ids(f, cat_keys[:, f])
        z = self._logit_parts(np.asarray(dense_log1p, dtype=np.float64), ids)
        return _sigmoid(self.intercept + z)

    def format_lines(self, rows, rng):
        """The rows as Kaggle ``train.txt`` text (one ``\\n``-terminated line each)."""
        n = len(rows["label"])
        cols = [np.where(rows["label"] == 1, "1", "0").astype(object)]
        for j in range(NUM_DENSE):
            col = rows["dense"][:, j].astype(str).astype(object)
            col[rows["dense_missing"][:, j]] = ""
            cols.append(col)
        for f in range(NUM_CAT):
            cols.append(self.hex_table(f)[rows["cat"][:, f]])
        lines = list(map("\t".join, zip(*cols)))
        strip = rng.random(n) < STRIP_RATE
        if rows["cat"][:, -1].min() < 0:
            for i in np.flatnonzero(strip & (rows["cat"][:, -1] < 0)):
                lines[i] = lines[i].rstrip("\t")
        return "\n".join(lines) + "\n"


class AucHistogram:
    """Streaming AUC from weighted positive / negative histograms of a score in [0, 1].

    Scores within one of ``bins`` equal bins count as ties (half a pair), an
    error far below 1e-4 with the default 2**16 bins.
    """

    def __init__(self, bins=1 << 16):
        self.bins = int(bins)
        self.pos = np.zeros(self.bins)
        self.neg = np.zeros(self.bins)

    def add(self, score, pos_weight, neg_weight):
        idx = np.minimum((np.asarray(score) * self.bins).astype(np.int64), self.bins - 1)
        self.pos += np.bincount(idx, weights=pos_weight, minlength=self.bins)
        self.neg += np.bincount(idx, weights=neg_weight, minlength=self.bins)

    def auc(self):
        below = np.cumsum(self.neg) - self.neg
        pairs = self.pos.sum() * self.neg.sum()
        return float((self.pos * (below + 0.5 * self.neg)).sum() / pairs) if pairs > 0 else float("nan")


def expected_auc(prob):
    """The expected AUC of scoring rows by their true click probabilities
    ``prob`` when their labels are drawn from them: the Bayes-optimal AUC of
    those rows (up to the 2**16-bin resolution of :class:`AucHistogram`)."""
    prob = np.asarray(prob, dtype=np.float64).ravel()
    hist = AucHistogram()
    hist.add(prob, prob, 1.0 - prob)
    return hist.auc()


class _OutputFile:
    """One data file written through a temporary name (gzip without time stamp
    or name, so the bytes are reproducible), with its optional ``.prob.npy``."""

    def __init__(self, path, gzip, rows, save_probabilities):
        self.path = path
        self.raw = open(path + ".tmp", "wb")
        self.out = (gzip_module.GzipFile(filename="", mode="wb", fileobj=self.raw, mtime=0, compresslevel=6)
                    if gzip else self.raw)
        self.probs = (np.lib.format.open_memmap(path + ".prob.npy.tmp", mode="w+", dtype=np.float32,
                                                shape=(rows,)) if save_probabilities else None)
        self.rows = 0

    def write(self, text, prob):
        self.out.write(text.encode("ascii"))
        if self.probs is not None:
            self.probs[self.rows:self.rows + len(prob)] = prob
        self.rows += len(prob)

    def close(self, commit=True):
        if self.out is not self.raw:
            self.out.close()
        self.raw.close()
        if self.probs is not None:
            self.probs.flush()
            self.probs = None
            if commit:
                os.replace(self.path + ".prob.npy.tmp", self.path + ".prob.npy")
            else:
                os.remove(self.path + ".prob.npy.tmp")
        if commit:
            os.replace(self.path + ".tmp", self.path)
        else:
            os.remove(self.path + ".tmp")


def generate(output_dir, rows, seed=1, days=7, gzip=False, day_files=False, save_probabilities=False):
    """Write ``rows`` synthetic lines spanning ``days`` consecutive days.

    One file ``train.txt`` (``train.txt.gz`` with ``gzip``), the rows in day
    order (the Kaggle layout), or with ``day_files`` one file per day
    ``day_0 .. day_<days-1>`` (``.gz``), the Terabyte layout. With
    ``save_probabilities`` each data file ``X`` gets ``X.prob.npy``: the true
    click probability of each of its lines (float32, in line order).
    Also writes ``synth_info.json`` (seed, sizes, click rate and the Bayes AUC)
    and returns its content.
    """
    rows, days = int(rows), int(days)
    if rows < 1:
        raise ValueError(f"rows must be positive, got {rows}")
    model = CriteoSynth(seed, days)
    os.makedirs(output_dir, exist_ok=True)
    suffix = ".gz" if gzip else ""
    sizes = day_sizes(rows, days)
    names = [f"day_{d}{suffix}" for d in range(days)] if day_files else [f"train.txt{suffix}"]
    file_rows = sizes if day_files else [rows]
    expected, realized, last_day = AucHistogram(), AucHistogram(), AucHistogram()
    positives = 0
    out = None
    try:
        for d, size in enumerate(sizes):
            if out is None or day_files:
                if out is not None:
                    out.close()
                k = d if day_files else 0
                out = _OutputFile(os.path.join(output_dir, names[k]), gzip, file_rows[k], save_probabilities)
            for c, lo in enumerate(range(0, size, CHUNK_ROWS)):
                rng = np.random.default_rng([model.seed, 1, d, c])
                sample = model.sample(min(CHUNK_ROWS, size - lo), rng, day=d)
                p, y = sample["prob"], sample["label"].astype(np.float64)
                out.write(model.format_lines(sample, rng), p)
                positives += int(y.sum())
                expected.add(p, p, 1.0 - p)
                realized.add(p, y, 1.0 - y)
                if d == days - 1:
                    last_day.add(p, y, 1.0 - y)
        out.close()
        out = None
    finally:
        if out is not None:                        # failed: leave no half-written file
            out.close(commit=False)
    info = {
        "generator": "src.synth.criteo", "seed": model.seed, "rows": rows, "days": days,
        "rows_per_day": sizes, "files": names, "file_rows": file_rows, "gzip": bool(gzip),
        "probability_files": [n + ".prob.npy" for n in names] if save_probabilities else [],
        "click_rate": positives / rows,
        "bayes_auc": expected.auc(),
        "auc_of_true_probability": realized.auc(),
        "auc_of_true_probability_last_day": last_day.auc(),
        "note": "bayes_auc is the expected AUC of the true click probability over the "
                "generated feature rows (the best any model can do in expectation); the "
                "auc_of_true_probability entries score it on the drawn labels.",
    }
    write_json_atomic(os.path.join(output_dir, SYNTH_INFO_FILE), info)
    return info


def main(argv=None):
    from src.engine.cli import ArgumentParser, plain_stdout
    parser = ArgumentParser(
        description="Write synthetic Criteo click logs in the Kaggle train.txt format (tab "
                    "separated label, I1..I13, C1..C26) whose labels follow a known logistic "
                    "model, plus synth_info.json with the Bayes-optimal AUC.")
    parser.add_argument("--output_dir", required=True, help="folder for the generated files")
    parser.add_argument("--rows", type=int, default=100000, help="number of lines in all (default 100000)")
    parser.add_argument("--seed", type=int, default=1,
                        help="random seed; same arguments, same bytes (default 1)")
    parser.add_argument("--days", type=int, default=7,
                        help="consecutive days the lines span, equal parts by line count; each "
                             "day brings new rare categorical values (default 7, as Kaggle)")
    parser.add_argument("--gzip", action="store_true", help="gzip the data files (.gz)")
    parser.add_argument("--day_files", action="store_true",
                        help="write one file per day (day_0, day_1, ...: the Terabyte layout) "
                             "instead of one train.txt")
    parser.add_argument("--save_probabilities", action="store_true",
                        help="also write <file>.prob.npy: the true click probability of every line")
    args = parser.parse_args(argv)
    info = generate(args.output_dir, args.rows, args.seed, days=args.days, gzip=args.gzip,
                    day_files=args.day_files, save_probabilities=args.save_probabilities)
    summary = json.dumps({k: info[k] for k in ("files", "rows", "click_rate", "bayes_auc",
                                               "auc_of_true_probability")})
    plain_stdout().write(summary + "\n")            # data, not a log line: no time stamp
    return 0


if __name__ == "__main__":
    from src.engine.cli import run_main     # one-line errors: exit 2 for bad input
    sys.exit(run_main(main))
