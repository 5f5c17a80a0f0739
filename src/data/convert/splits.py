"""Split plans: which split (train, val, test) each line of the input goes to.

``random``: a seeded splitmix64 hash of the global line number, so every
pass, chunk size and run agree; ``time``: consecutive days, the last halved
into test then val (the reference DLRM's)."""
import math

import numpy as np

SPLITS = ("train", "val", "test")
TRAIN, VAL, TEST = 0, 1, 2

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
