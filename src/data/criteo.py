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
"Processes" below), so memory holds the vocabularies, never the rows
(the time split of one file first counts its lines: pass 0):

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
(:class:`~src.data.convert.publish.StagedConversion`): a killed conversion leaves the
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
validating every field on the way. With ``parser: native`` (the default) a
C++ function (:mod:`src.data.criteo_native`, compiled with the system's
C++ compiler on first use) parses a chunk first, in one pass over its
bytes, to the same arrays; it stops at the first malformed line and leaves
that chunk to the NumPy parser, which finds and describes the bad lines, so
the output and the messages are the same with either (``parser: numpy``
needs no compiler). Chunks of about 1 MB keep the temporaries
in cache: over 2x faster than 16 MB chunks. Pass 1 checks the label and
dense fields without decoding them. The categorical values of all 26 fields
share one int64 key space (``field << 32 | value``): one ``pd.factorize`` per
chunk counts them and one hash lookup per chunk encodes them.

    python -m src.data.criteo --raw_data_path data/criteo/train.txt --data_path data/criteo/mindrecord
"""
import multiprocessing
import os
import re
import sys

import numpy as np

from src import faults
from src.data.convert.progress import Clock
from src.data.convert.publish import StagedConversion
from src.data.convert.splits import SplitPlan
from src.data.convert.textfile import DEFAULT_CHUNK_BYTES
from src.data.convert.workers import default_workers, tune_malloc
from src.data.criteo_native import make_parser
from src.data.criteo_parse import CAT_FIELDS, DENSE_FIELDS, NUM_CAT, NUM_DENSE, CriteoFormatError
from src.data.criteo_passes import COLUMNS, CriteoRun
from src.data.criteo_vocab import Hasher, Vocabulary
from src.fileio import folder_listing, read_feature_map

VOCABULARY_FILE = "vocabulary.npz"
FORMAT_VERSION = 2        # 2: integrity record and fingerprints (src/data/convert/publish.py)
DEFAULT_SHARD_ROWS = 2048 * 1024
DAY_FILE = re.compile(r"^day_(\d+)(\.gz)?$")
TRAIN_FILES = ("train.txt", "train.txt.gz")


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
                            f"{' or '.join(TRAIN_FILES)}; the folder holds {folder_listing(present)}")


# --------------------------------------------------------------------------------------------
# splits, hashing


def _default_log(text):
    print(text, flush=True)


def convert(raw, out_dir, min_count=1, max_ind_range=0, dense_transform="log1p", split="random",
            val_fraction=0.1, test_fraction=0.1, days=7, seed=2020, shard_rows=DEFAULT_SHARD_ROWS,
            block_rows=1024, skip_malformed=False, chunk_bytes=DEFAULT_CHUNK_BYTES,
            progress_seconds=5.0, log=_default_log, workers=None, parser="native"):
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
    0: all in this process; the output is the same whatever the number);
    ``parser``: ``native`` (a C++ parser, compiled on first use) or
    ``numpy`` (see :mod:`src.data.criteo_native`; the same output).
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
    native = make_parser(parser)
    files = find_sources(raw)
    plan = SplitPlan(split, len(files), seed, val_fraction, test_fraction, days)
    workers = default_workers() if workers is None else int(workers)
    if workers < 0:
        raise ValueError(f"workers must be >= 0, got {workers}")
    if "fork" not in multiprocessing.get_all_start_methods():
        workers = 0                     # the workers share this process's data by forking
    run = CriteoRun(files, chunk_bytes, skip_malformed, progress_seconds, log, workers, native)
    clock = Clock()
    log(f"criteo: {len(files)} file(s), {run.total_bytes / 1e6:,.1f} MB, {run.workers} worker "
        f"process(es), {parser} parser: " + ", ".join(files))

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
    """``python -m src.data.criteo``: see :mod:`src.data.criteo_cli`."""
    from src.data.criteo_cli import main as cli_main
    return cli_main(argv)


if __name__ == "__main__":
    from src.engine.cli import run_main     # one-line errors: exit 2 for bad input, 1 for the machine
    tune_malloc()                      # this process only runs the conversion
    sys.exit(run_main(main))
