"""Split one raw Census-Income file into the train and test files the
converter reads.

The converter (:mod:`src.data.census`) wants UCI's two files: it fits the
vocabularies and scaling on ``census-income.data`` and splits
``census-income.test`` into validation and test rows. When only one real file
is at hand (a share of the UCI test file, say), this tool makes the pair: a
seeded permutation puts ``test_fraction`` of the non-blank lines into
``census-income.test.gz`` and the rest into ``census-income.data.gz``, each
line as it was (checked as the converter checks it, written unchanged, in
its order within a part). The two files are
written under temporary names and renamed only when both are complete.

    python -m src.data.census_split --input census-income.real60.gz \\
        --output_dir data/census/real --test_fraction 0.4 --seed 2026
    python prepare_data.py --model MODEL --raw_data_path data/census/real \\
        --data_path data/census/real_mindrecord --val_fraction 0.5

(MODEL: any model on Census-Income) gives 60 % train, 20 % validation and
20 % test rows.
"""
import gzip
import hashlib
import os

import numpy as np

from src.data.census_raw import open_lines, read_raw
from src.engine.cli import ArgumentParser

OUTPUT_NAMES = {"train": "census-income.data.gz", "test": "census-income.test.gz"}


def read_lines(path):
    """The non-blank lines of a plain or gzip file, as bytes with their newline;
    a file the converter would refuse (:func:`src.data.census_raw.read_raw`:
    field count, numbers, labels, gzip stream) is refused here, by line."""
    read_raw(path)
    with open_lines(path) as fh:
        lines = [line if line.endswith(b"\n") else line + b"\n" for line in fh if line.strip()]
    if not lines:
        raise ValueError(f"{path}: no rows to split")
    return lines


def split_lines(n, test_fraction, seed):
    """Sorted row indices ``(train, test)`` of ``n`` rows, test of size
    ``round(n * test_fraction)`` chosen by a seeded permutation."""
    if not 0.0 < float(test_fraction) < 1.0:
        raise ValueError(f"test_fraction must lie strictly between 0 and 1, got {test_fraction}")
    n_test = int(round(n * float(test_fraction)))
    if n_test == 0 or n_test == n:
        raise ValueError(f"{n} rows cannot be split into non-empty parts with "
                         f"test_fraction {test_fraction}")
    perm = np.random.RandomState(int(seed)).permutation(n)
    return np.sort(perm[n_test:]), np.sort(perm[:n_test])


def split_file(input_path, output_dir, test_fraction=0.4, seed=2026):
    """Write ``output_dir/census-income.{data,test}.gz``; returns
    ``{part: (path, rows, sha256 of the uncompressed lines)}``."""
    lines = read_lines(input_path)
    parts = dict(zip(("train", "test"), split_lines(len(lines), test_fraction, seed)))
    os.makedirs(output_dir, exist_ok=True)
    done, staged = {}, []
    try:
        for part, index in parts.items():
            final = os.path.join(output_dir, OUTPUT_NAMES[part])
            temp = final + ".partial"
            digest = hashlib.sha256()
            # mtime=0: the same input, fraction and seed give byte-identical files
            with open(temp, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as fh:
                for i in index:
                    fh.write(lines[i])
                    digest.update(lines[i])
            staged.append((temp, final))
            done[part] = (final, len(index), digest.hexdigest())
        for temp, final in staged:
            os.replace(temp, final)
    finally:
        for temp, _ in staged:
            if os.path.exists(temp):
                os.remove(temp)
    return done


def main(argv=None):
    parser = ArgumentParser(
        prog="python -m src.data.census_split",
        description="Split one raw Census-Income file (plain or gzip, 42 columns) into "
                    "census-income.data.gz and census-income.test.gz for prepare_data.py.")
    parser.add_argument("--input", required=True, help="the raw file to split")
    parser.add_argument("--output_dir", required=True,
                        help="folder for census-income.data.gz and census-income.test.gz")
    parser.add_argument("--test_fraction", type=float, default=0.4,
                        help="share of the rows that goes to the test file (default 0.4); "
                             "prepare_data.py's val_fraction then splits that file again")
    parser.add_argument("--seed", type=int, default=2026, help="seed of the permutation")
    args = parser.parse_args(argv)
    if not os.path.isfile(args.input):
        raise FileNotFoundError(f"{args.input}: no such file")
    for part, (path, rows, digest) in split_file(args.input, args.output_dir,
                                                 args.test_fraction, args.seed).items():
        print(f"census_split: {part}: {rows} rows -> {path} (sha256 of lines {digest[:16]})",
              flush=True)


if __name__ == "__main__":
    from src.engine.cli import run_main
    run_main(main)
