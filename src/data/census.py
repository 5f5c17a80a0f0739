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
statistics (optionally log-transformed and also bucketed:
:mod:`src.data.census_numeric`). ``instance_weight`` (the survey's sampling
weight) is left out unless ``keep_instance_weight`` is set.

Stored form (one block MindRecord file per split, see
:mod:`src.data.mindrecord_io`): ``cat`` int32 ``(n, 29 + b)`` global one-hot
column index per field, ``-1`` for a category unseen in train (an all-zero
field), then the bucket column of each of the ``b`` bucketed numerics;
``num`` float32 ``(n, n_num)`` standardised numerics; ``label`` float32
``(n, 2)`` = ``[income, marital]``. :func:`to_dense` expands a batch to the
dense ``(n, input_dim)`` model input: the one-hot block followed by the
numerics. ``feature_map.json`` beside the splits records vocabularies, offsets,
scaling statistics, the column layout and the split sizes.

Splits (``val_source``): ``test`` (upstream) keeps the whole training file
as ``train`` and splits the test file by a seeded permutation into ``val``
(``val_fraction`` of it) and ``test``; ``train`` holds ``val_fraction`` of
the training file out as ``val`` and keeps the whole test file as ``test``.
The vocabularies and statistics come from the ``train`` split only.

Blank lines: a line holding only whitespace is skipped and counted
(``CensusTable.blank_lines``, reported by :func:`convert` and in the feature
map); any other malformed line stops the conversion with a
:class:`CensusFormatError` naming the file and line.
"""
import os

import numpy as np

from src.data import census_numeric
from src.data.census_raw import (  # noqa: F401  (the raw format's names, used here and by callers)
    CATEGORICAL_COLUMNS, COLUMNS, INCOME_VALUES, INSTANCE_WEIGHT, LABEL_COLUMNS,
    MARITAL_POSITIVE, NUMERIC_COLUMNS, TASKS, CensusFormatError, CensusTable, read_raw)
from src.data.convert.shards import SplitWriter
from src import faults
from src.data.convert.publish import StagedConversion
from src.fileio import folder_listing, read_feature_map

FORMAT_VERSION = 2        # 2: integrity record and fingerprints (src/data/convert/publish.py)
TRAIN_FILE_NAMES = ("census-income.data.gz", "census-income.data")
TEST_FILE_NAMES = ("census-income.test.gz", "census-income.test")


def numeric_features(keep_instance_weight=False):
    """Names of the numeric feature columns, in stored order."""
    return [c for c in NUMERIC_COLUMNS if keep_instance_weight or c != INSTANCE_WEIGHT]


def fit_feature_map(train_rows, keep_instance_weight=False, numeric_transform="standard",
                    numeric_buckets=0):
    """Vocabularies, scaling statistics and bucket edges fitted on the training
    table only (:mod:`src.data.census_numeric` for the numeric options).

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
    try:
        numeric, offset = census_numeric.fit_numeric(
            {c: train_rows.numbers[c] for c in numeric_features(keep_instance_weight)},
            numeric_transform, numeric_buckets, offset)
    except census_numeric.NumericScaleError as exc:
        raise CensusFormatError(f"{train_rows.path}: line "
                                f"{int(train_rows.line_numbers[exc.row])}: {exc}") from None
    bucketed = sum("buckets" in spec for spec in numeric)
    return {
        "dataset": "census-income",
        "format_version": FORMAT_VERSION,
        "tasks": list(TASKS),
        "categorical": categorical,
        "numeric": numeric,
        "input_dim": offset + len(numeric),
        "columns": {"cat": {"dtype": "int32", "width": len(categorical) + bucketed},
                    "num": {"dtype": "float32", "width": len(numeric)},
                    "label": {"dtype": "float32", "width": len(TASKS)}},
        "splits": {},
        "options": {"keep_instance_weight": bool(keep_instance_weight),
                    "numeric_transform": numeric_transform,
                    "numeric_buckets": int(numeric_buckets)},
    }


def encode(rows, feature_map):
    """Encode a table with a fitted feature map.

    Returns ``{"cat": int32 (n, fields), "num": float32 (n, n_num),
    "label": float32 (n, 2)}``; ``cat`` holds the global one-hot column
    (field offset + position in the train vocabulary, -1 when the value was
    not seen in train) of the 29 categorical fields, then the bucket of each
    bucketed numeric column.
    """
    n = len(rows)
    cat = np.empty((n, len(feature_map["categorical"])), dtype=np.int32)
    for j, spec in enumerate(feature_map["categorical"]):
        position = {v: spec["offset"] + i for i, v in enumerate(spec["vocab"])}
        values, codes = rows.strings[spec["name"]]
        lookup = np.array([position.get(v, -1) for v in values], dtype=np.int32)
        cat[:, j] = lookup[codes] if len(values) else -1
    specs = feature_map["numeric"]
    num = np.empty((n, len(specs)), dtype=np.float32)
    try:
        for j, spec in enumerate(specs):
            num[:, j] = census_numeric.scaled(rows.numbers[spec["name"]], spec)
    except census_numeric.NumericScaleError as exc:
        raise CensusFormatError(f"{rows.path}: line {int(rows.line_numbers[exc.row])}: "
                                f"{exc}") from None
    buckets = census_numeric.bucket_columns(rows.numbers, specs)
    return {"cat": np.concatenate([cat, buckets], axis=1), "num": num, "label": rows.labels()}


def field_values(fmap, arrays, field):
    """The value of categorical ``field`` in each row (``"(unseen)"`` for a
    value the training split did not have), from the stored ``cat`` codes."""
    fields = [f["name"] for f in fmap.get("categorical", [])]
    if field not in fields:
        raise ValueError(f"no categorical field {field!r} to break down by; the data set has "
                         f"{', '.join(fields) or 'none'}")
    spec = fmap["categorical"][fields.index(field)]
    names = np.array(list(spec["vocab"]) + ["(unseen)"], dtype=object)
    codes = np.asarray(arrays["cat"])[:, fields.index(field)] - spec["offset"]
    return names[np.where(codes < 0, len(spec["vocab"]), codes)]


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
        f"(any letter case); the folder holds {folder_listing(present)}")


VAL_SOURCES = ("test", "train")


def _hold_out(table, fraction, seed):
    """``(held, rest)``: a seeded ``fraction`` of the table's rows and the
    others, each in file order."""
    n = len(table)
    n_val = int(round(n * float(fraction)))
    if n_val == 0 or n_val == n:
        raise ValueError(f"{table.path}: {n} rows cannot be split into non-empty val and "
                         f"other parts with val_fraction {fraction}")
    perm = np.random.RandomState(seed).permutation(n)
    return table.take(np.sort(perm[:n_val])), table.take(np.sort(perm[n_val:]))


def convert(raw_dir, output_dir, keep_instance_weight=False, val_fraction=0.5, seed=1,
            block_rows=1024, train_name=None, test_name=None, numeric_transform="standard",
            numeric_buckets=0, val_source="test"):
    """Convert the raw train and test files in ``raw_dir`` to
    ``output_dir/{train,val,test}.mindrecord`` plus ``feature_map.json``,
    published all at once (:class:`~src.data.convert.publish.StagedConversion`): a
    killed conversion leaves the previous data set as it was.

    Returns the feature map.
    """
    if not 0.0 < float(val_fraction) < 1.0:
        raise ValueError(f"val_fraction must lie strictly between 0 and 1, got {val_fraction}")
    if val_source not in VAL_SOURCES:
        raise ValueError(f"val_source must be one of {VAL_SOURCES}, got {val_source!r}")
    train_path = _find_file(raw_dir, TRAIN_FILE_NAMES, train_name, "train")
    test_path = _find_file(raw_dir, TEST_FILE_NAMES, test_name, "test")
    train = read_raw(train_path)
    print(f"census: read {len(train)} rows from {train_path}", flush=True)
    test_all = read_raw(test_path)
    print(f"census: read {len(test_all)} rows from {test_path}", flush=True)
    for table in (train, test_all):
        if table.blank_lines:
            print(f"census: skipped {table.blank_lines} blank line(s) in {table.path}", flush=True)

    if val_source == "test":               # upstream: validation rows from the test file
        val, test = _hold_out(test_all, val_fraction, seed)
        parts = {"train": train, "val": val, "test": test}
    else:                                  # the test file stays whole
        val, rest = _hold_out(train, val_fraction, seed)
        parts = {"train": rest, "val": val, "test": test_all}
    raw_rows = {"train": len(train), "test": len(test_all)}
    train = parts["train"]

    fmap = fit_feature_map(train, keep_instance_weight=keep_instance_weight,
                           numeric_transform=numeric_transform, numeric_buckets=numeric_buckets)
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
            "val_source": val_source,
            "raw_rows": raw_rows,
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

