"""Census-Income (KDD) raw files to MindRecord splits for MMoE.

Raw format (UCI ``census-income.data.gz`` / ``census-income.test.gz``): no
header, one person per line, 42 comma-separated fields in the order of
:data:`COLUMNS`. Fields carry stray whitespace (usually one space after the
comma before a text value, none before a number, sometimes a trailing space);
every field is stripped. ``income_50k`` holds ``- 50000.`` or ``50000+.``.

Two binary tasks are derived from label columns that are never features:

* ``income``:  1 when ``income_50k`` is ``50000+.``;
* ``marital``: 1 when ``marital_stat`` is ``Never married``.

Features: the 29 categorical columns, one-hot encoded with vocabularies fitted
on the training file only, and the numeric columns standardised with training
statistics. ``instance_weight`` (the survey's sampling weight) is left out
unless ``keep_instance_weight`` is set.

Stored form (one block MindRecord file per split, see
:mod:`src.data.mindrecord_io`): ``cat`` int32 ``(n, 29)`` global one-hot
column index per field, ``-1`` for a category unseen in train (an all-zero
field); ``num`` float32 ``(n, n_num)`` standardised numerics; ``label``
float32 ``(n, 2)`` = ``[income, marital]``. :func:`to_dense` expands a batch to
the dense ``(n, input_dim)`` model input: the one-hot block followed by the
numerics. ``feature_map.json`` beside the splits records vocabularies, offsets,
scaling statistics, the column layout and the split sizes.

Splits: ``train`` is the whole training file; the test file is split by a
seeded permutation into ``val`` (``val_fraction`` of it) and ``test``.

Blank lines: a line holding only whitespace is skipped and counted
(``CensusTable.blank_lines``, reported by :func:`convert` and in the feature
map); any other malformed line stops the conversion with a
:class:`CensusFormatError` naming the file and line.
"""
import gzip
import os
import zlib
from dataclasses import dataclass

import numpy as np

from src.data.convert.shards import SplitWriter
from src import faults
from src.data.convert.publish import StagedConversion
from src.fileio import read_feature_map

COLUMNS = (
    "age", "class_worker", "det_ind_code", "det_occ_code", "education", "wage_per_hour",
    "hs_college", "marital_stat", "major_ind_code", "major_occ_code", "race", "hisp_origin",
    "sex", "union_member", "unemp_reason", "full_or_part_emp", "capital_gains",
    "capital_losses", "stock_dividends", "tax_filer_stat", "region_prev_res", "state_prev_res",
    "det_hh_fam_stat", "det_hh_summ", "instance_weight", "mig_chg_msa", "mig_chg_reg",
    "mig_move_reg", "mig_same", "mig_prev_sunbelt", "num_emp", "fam_under_18",
    "country_father", "country_mother", "country_self", "citizenship", "own_or_self",
    "vet_question", "vet_benefits", "weeks_worked", "year", "income_50k",
)
CATEGORICAL_COLUMNS = (
    "class_worker", "det_ind_code", "det_occ_code", "education", "hs_college",
    "major_ind_code", "major_occ_code", "race", "hisp_origin", "sex", "union_member",
    "unemp_reason", "full_or_part_emp", "tax_filer_stat", "region_prev_res", "state_prev_res",
    "det_hh_fam_stat", "det_hh_summ", "mig_chg_msa", "mig_chg_reg", "mig_move_reg", "mig_same",
    "mig_prev_sunbelt", "fam_under_18", "country_father", "country_mother", "country_self",
    "citizenship", "vet_question",
)
NUMERIC_COLUMNS = (
    "age", "wage_per_hour", "capital_gains", "capital_losses", "stock_dividends",
    "instance_weight", "num_emp", "own_or_self", "vet_benefits", "weeks_worked", "year",
)
LABEL_COLUMNS = ("income_50k", "marital_stat")
TASKS = ("income", "marital")
INSTANCE_WEIGHT = "instance_weight"
INCOME_VALUES = {"- 50000.": 0, "50000+.": 1}
MARITAL_POSITIVE = "Never married"

FORMAT_VERSION = 2        # 2: integrity record and fingerprints (src/data/convert/publish.py)
TRAIN_FILE_NAMES = ("census-income.data.gz", "census-income.data")
TEST_FILE_NAMES = ("census-income.test.gz", "census-income.test")

_INDEX = {name: i for i, name in enumerate(COLUMNS)}
_STRING_COLUMNS = CATEGORICAL_COLUMNS + ("marital_stat",)
assert len(COLUMNS) == 42 and len(CATEGORICAL_COLUMNS) == 29 and len(NUMERIC_COLUMNS) == 11
assert set(COLUMNS) == set(CATEGORICAL_COLUMNS) | set(NUMERIC_COLUMNS) | set(LABEL_COLUMNS)


class CensusFormatError(ValueError):
    """A raw Census-Income file is malformed; the message names file and line."""


@dataclass
class CensusTable:
    """Rows of one raw file in compact column form.

    ``strings[name] = (values, codes)``: the distinct stripped values of a text
    column (first-seen order) and an int32 code per row indexing them.
    ``numbers[name]``: float64 per row. ``income``: int8 0/1 per row.
    ``line_numbers``: 1-based line of each row in the file.
    """
    path: str
    strings: dict
    numbers: dict
    income: np.ndarray
    line_numbers: np.ndarray
    blank_lines: int = 0

    def __len__(self):
        return len(self.income)

    def column(self, name):
        """A column as a list of strings (text) or a float64 array (numeric)."""
        if name in self.strings:
            values, codes = self.strings[name]
            return [values[c] for c in codes]
        if name in self.numbers:
            return self.numbers[name]
        if name == "income_50k":
            inverse = {v: k for k, v in INCOME_VALUES.items()}
            return [inverse[int(v)] for v in self.income]
        raise KeyError(name)

    def labels(self):
        """float32 ``(n, 2)``: ``[income, marital]``."""
        values, codes = self.strings["marital_stat"]
        never = np.array([v == MARITAL_POSITIVE for v in values], dtype=bool)
        marital = never[codes] if len(values) else np.zeros(len(self), bool)
        return np.stack([self.income, marital], axis=1).astype(np.float32)

    def take(self, index):
        """The rows at ``index`` (an integer array), as a new table."""
        index = np.asarray(index, dtype=np.int64)
        return CensusTable(
            path=self.path,
            strings={k: (vals, codes[index]) for k, (vals, codes) in self.strings.items()},
            numbers={k: v[index] for k, v in self.numbers.items()},
            income=self.income[index], line_numbers=self.line_numbers[index],
            blank_lines=self.blank_lines)


def _open_lines(path):
    """Binary line iterator over a plain or gzip file (gzip told by its magic bytes)."""
    with open(path, "rb") as fh:
        magic = fh.read(2)
    if magic == b"\x1f\x8b":
        return gzip.open(path, "rb")
    return open(path, "rb")


def read_raw(path):
    """Parse a raw Census-Income file (plain or gzip) into a :class:`CensusTable`.

    Raises :class:`CensusFormatError` for a wrong field count, an unparsable
    or non-finite number, an unknown income label, a file without rows, or a
    truncated / corrupt gzip stream.
    """
    caches = {c: {} for c in _STRING_COLUMNS}
    codes = {c: [] for c in _STRING_COLUMNS}
    numbers = {c: [] for c in NUMERIC_COLUMNS}
    str_idx = [(c, _INDEX[c]) for c in _STRING_COLUMNS]
    num_idx = [(c, _INDEX[c]) for c in NUMERIC_COLUMNS]
    inc_idx = _INDEX["income_50k"]
    income, line_numbers = [], []
    blank = 0
    lineno = 0
    try:
        with _open_lines(path) as fh:
            for lineno, raw in enumerate(fh, start=1):
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as exc:
                    raise CensusFormatError(f"{path}: line {lineno}: not UTF-8 text ({exc.reason})") from None
                if not line.strip():
                    blank += 1
                    continue
                fields = line.split(",")
                if len(fields) != len(COLUMNS):
                    raise CensusFormatError(
                        f"{path}: line {lineno}: expected {len(COLUMNS)} comma-separated fields, "
                        f"found {len(fields)}")
                for col, i in str_idx:
                    value = fields[i].strip()
                    cache = caches[col]
                    code = cache.get(value)
                    if code is None:
                        code = cache[value] = len(cache)
                    codes[col].append(code)
                for col, i in num_idx:
                    text = fields[i].strip()
                    try:
                        value = float(text)
                    except ValueError:
                        value = float("nan")
                    if not np.isfinite(value):
                        raise CensusFormatError(
                            f"{path}: line {lineno}: column {col!r} holds {text!r}, not a number")
                    numbers[col].append(value)
                label = fields[inc_idx].strip()
                if label not in INCOME_VALUES:
                    raise CensusFormatError(
                        f"{path}: line {lineno}: column 'income_50k' holds {label!r}; "
                        f"expected one of {sorted(INCOME_VALUES)}")
                income.append(INCOME_VALUES[label])
                line_numbers.append(lineno)
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise CensusFormatError(
            f"{path}: truncated or corrupt gzip data after line {lineno} ({exc})") from None
    if not income:
        raise CensusFormatError(f"{path}: no rows (the file is empty"
                                + (f" apart from {blank} blank line(s))" if blank else ")"))
    strings = {}
    for col in _STRING_COLUMNS:
        values = [None] * len(caches[col])
        for value, code in caches[col].items():
            values[code] = value
        strings[col] = (values, np.asarray(codes[col], dtype=np.int32))
    return CensusTable(
        path=path, strings=strings,
        numbers={c: np.asarray(v, dtype=np.float64) for c, v in numbers.items()},
        income=np.asarray(income, dtype=np.int8),
        line_numbers=np.asarray(line_numbers, dtype=np.int64), blank_lines=blank)


def numeric_features(keep_instance_weight=False):
    """Names of the numeric feature columns, in stored order."""
    return [c for c in NUMERIC_COLUMNS if keep_instance_weight or c != INSTANCE_WEIGHT]


def fit_feature_map(train_rows, keep_instance_weight=False):
    """Vocabularies and scaling statistics fitted on the training table only.

    Returns the JSON-serialisable feature map (``splits`` and ``options`` are
    completed by :func:`convert`).
    """
    categorical, offset = [], 0
    for col in CATEGORICAL_COLUMNS:
        values, codes = train_rows.strings[col]
        used = np.unique(codes)
        vocab = sorted(values[c] for c in used)
        categorical.append({"name": col, "vocab": vocab, "offset": offset})
        offset += len(vocab)
    numeric = []
    for col in numeric_features(keep_instance_weight):
        x = train_rows.numbers[col]
        with np.errstate(over="ignore", invalid="ignore"):
            mean, std = float(x.mean()), float(x.std())
        if not (np.isfinite(mean) and np.isfinite(std)):
            worst = int(np.argmax(np.abs(x)))
            raise CensusFormatError(
                f"{train_rows.path}: line {int(train_rows.line_numbers[worst])}: column {col!r} "
                f"holds {x[worst]:g}, too large to scale (the column's mean or spread overflows)")
        numeric.append({"name": col, "mean": mean,
                        "std": std if std > 0 and np.isfinite(std) else 1.0})
    return {
        "dataset": "census-income",
        "format_version": FORMAT_VERSION,
        "tasks": list(TASKS),
        "categorical": categorical,
        "numeric": numeric,
        "input_dim": offset + len(numeric),
        "columns": {"cat": {"dtype": "int32", "width": len(categorical)},
                    "num": {"dtype": "float32", "width": len(numeric)},
                    "label": {"dtype": "float32", "width": len(TASKS)}},
        "splits": {},
        "options": {"keep_instance_weight": bool(keep_instance_weight)},
    }


def encode(rows, feature_map):
    """Encode a table with a fitted feature map.

    Returns ``{"cat": int32 (n, 29), "num": float32 (n, n_num),
    "label": float32 (n, 2)}``; ``cat`` holds the global one-hot column
    (field offset + position in the train vocabulary) or -1 when the value
    was not seen in train.
    """
    n = len(rows)
    cat = np.empty((n, len(feature_map["categorical"])), dtype=np.int32)
    for j, spec in enumerate(feature_map["categorical"]):
        position = {v: spec["offset"] + i for i, v in enumerate(spec["vocab"])}
        values, codes = rows.strings[spec["name"]]
        lookup = np.array([position.get(v, -1) for v in values], dtype=np.int32)
        cat[:, j] = lookup[codes] if len(values) else -1
    num = np.empty((n, len(feature_map["numeric"])), dtype=np.float32)
    for j, spec in enumerate(feature_map["numeric"]):
        with np.errstate(over="ignore"):
            num[:, j] = (rows.numbers[spec["name"]] - spec["mean"]) / spec["std"]
        bad = np.flatnonzero(~np.isfinite(num[:, j]))
        if len(bad):
            raw = rows.numbers[spec["name"]][bad[0]]
            raise CensusFormatError(
                f"{rows.path}: line {int(rows.line_numbers[bad[0]])}: column {spec['name']!r} "
                f"holds {raw:g}, which overflows float32 once scaled")
    return {"cat": cat, "num": num, "label": rows.labels()}


def to_dense(cat, num, input_dim):
    """Dense float32 ``(n, input_dim)``: one-hot of ``cat`` (-1 = no column set)
    in columns ``0 .. input_dim - n_num - 1``, then ``num`` in the last columns."""
    cat = np.asarray(cat)
    num = np.asarray(num, dtype=np.float32)
    n, n_num = num.shape
    n_onehot = input_dim - n_num
    if cat.shape[0] != n:
        raise ValueError(f"cat has {cat.shape[0]} rows, num has {n}")
    out = np.zeros((n, input_dim), dtype=np.float32)
    if cat.size:
        if cat.max() >= n_onehot or cat.min() < -1:
            raise ValueError(f"cat index outside [-1, {n_onehot}) for input_dim {input_dim}")
        # positions in the flat output (a third of the time of 2-D fancy indexing)
        flat = cat + (np.arange(n, dtype=np.int64) * input_dim)[:, None]
        out.reshape(-1)[flat[cat >= 0]] = 1.0
    out[:, n_onehot:] = num
    return out


def _find_file(raw_dir, wanted, explicit, kind):
    if explicit:
        path = os.path.join(raw_dir, explicit)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"Census-Income {kind} file {path} not found")
        return path
    if not os.path.isdir(raw_dir):
        raise FileNotFoundError(f"raw data folder {raw_dir} not found")
    present = sorted(os.listdir(raw_dir))
    for name in wanted:  # gzip first, then plain
        hits = [f for f in present if f.lower() == name and os.path.isfile(os.path.join(raw_dir, f))]
        if len(hits) > 1:
            raise FileNotFoundError(f"{raw_dir}: several {kind} files differ only in letter case: {hits}")
        if hits:
            return os.path.join(raw_dir, hits[0])
    raise FileNotFoundError(
        f"no Census-Income {kind} file in {raw_dir}: looked for {' or '.join(wanted)} "
        f"(any letter case); the folder holds {present or 'nothing'}")


def convert(raw_dir, output_dir, keep_instance_weight=False, val_fraction=0.5, seed=1,
            block_rows=1024, train_name=None, test_name=None):
    """Convert the raw train and test files in ``raw_dir`` to
    ``output_dir/{train,val,test}.mindrecord`` plus ``feature_map.json``,
    published all at once (:class:`~src.data.convert.publish.StagedConversion`): a
    killed conversion leaves the previous data set as it was.

    Returns the feature map.
    """
    if not 0.0 < float(val_fraction) < 1.0:
        raise ValueError(f"val_fraction must lie strictly between 0 and 1, got {val_fraction}")
    train_path = _find_file(raw_dir, TRAIN_FILE_NAMES, train_name, "train")
    test_path = _find_file(raw_dir, TEST_FILE_NAMES, test_name, "test")
    train = read_raw(train_path)
    print(f"census: read {len(train)} rows from {train_path}", flush=True)
    test_all = read_raw(test_path)
    print(f"census: read {len(test_all)} rows from {test_path}", flush=True)
    for table in (train, test_all):
        if table.blank_lines:
            print(f"census: skipped {table.blank_lines} blank line(s) in {table.path}", flush=True)

    n_test = len(test_all)
    n_val = int(round(n_test * float(val_fraction)))
    if n_val == 0 or n_val == n_test:
        raise ValueError(f"{test_path}: {n_test} rows cannot be split into non-empty val and "
                         f"test parts with val_fraction {val_fraction}")
    perm = np.random.RandomState(seed).permutation(n_test)
    parts = {"train": train,
             "val": test_all.take(np.sort(perm[:n_val])),
             "test": test_all.take(np.sort(perm[n_val:]))}

    fmap = fit_feature_map(train, keep_instance_weight=keep_instance_weight)
    columns = {name: (np.dtype(spec["dtype"]), spec["width"]) for name, spec in fmap["columns"].items()}
    encoded = {split: encode(table, fmap) for split, table in parts.items()}
    with StagedConversion(output_dir) as stage:
        for split, arrays in encoded.items():
            with SplitWriter(stage.path, split, columns, block_rows, description="rows",
                             on_close=stage.record) as writer:
                writer.write(arrays)
            fmap["splits"][split] = int(writer.rows)
            faults.point("convert.split_written")
            unknown = int((arrays["cat"] < 0).sum())
            print(f"census: wrote {writer.rows} {split} rows"
                  + (f" ({unknown} field values unseen in train -> all-zero)" if unknown else ""),
                  flush=True)
        fmap["options"].update({
            "seed": int(seed), "val_fraction": float(val_fraction), "block_rows": int(block_rows),
            "train_file": os.path.basename(train_path), "test_file": os.path.basename(test_path),
            "raw_rows": {"train": len(train), "test": n_test},
            "blank_lines_skipped": {"train": train.blank_lines, "test": test_all.blank_lines},
        })
        stage.publish(fmap, ENCODING_KEYS)
    print(f"census: published {stage.target} (fingerprint {fmap['fingerprint']})", flush=True)
    return fmap


# what decides the model inputs (a checkpoint must agree with these)
ENCODING_KEYS = ("tasks", "categorical", "numeric", "input_dim", "columns")


def load_feature_map(data_dir):
    """Read ``data_dir/feature_map.json`` written by :func:`convert`."""
    return read_feature_map(data_dir, "census-income", FORMAT_VERSION,
                            "python prepare_data.py --raw_data_path <folder with "
                            f"census-income.data(.gz)> --data_path {data_dir}",
                            required=ENCODING_KEYS + ("splits",))

