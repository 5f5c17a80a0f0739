"""Reading raw Census-Income (KDD) files: the 42 columns, the labels, and
:func:`read_raw`, which parses a plain or gzip file into a compact
:class:`CensusTable` (text columns as codes into their distinct values) or
stops at the first malformed line with a :class:`CensusFormatError` naming
file and line. :mod:`src.data.census` encodes and converts the tables."""
import gzip
import zlib
from dataclasses import dataclass

import numpy as np

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


def open_lines(path):
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
        with open_lines(path) as fh:
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
