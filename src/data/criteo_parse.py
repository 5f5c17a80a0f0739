"""Byte-level parsing of Criteo text lines (see :mod:`src.data.criteo` for the format).

:func:`parse_lines` works on the raw bytes of whole lines with numpy: it
locates tabs and newlines, pads short lines (trailing empty fields stripped),
then reads the 8 bytes at each field's start as one unaligned little-endian
``uint64`` and decodes them with SIMD-within-a-register arithmetic (8 hex
digits -> 32-bit value, up to 8 decimal digits -> integer; longer integers,
rare, go through ``int()``), validating every field on the way.
:func:`iter_chunks` reads a plain or gzip'd file in chunks of whole lines.
"""
from dataclasses import dataclass

import numpy as np

NUM_DENSE = 13
NUM_CAT = 26
NUM_FIELDS = 1 + NUM_DENSE + NUM_CAT
DENSE_FIELDS = tuple(f"I{i}" for i in range(1, NUM_DENSE + 1))
CAT_FIELDS = tuple(f"C{i}" for i in range(1, NUM_CAT + 1))
FIELD_NAMES = ("label",) + DENSE_FIELDS + CAT_FIELDS
MAX_REPORTED = 10

# why a line is malformed
OK, TOO_MANY_FIELDS, EMPTY_LINE, BAD_LABEL, BAD_DENSE, BAD_CAT, CUT_IN_DENSE = range(7)
# a line must reach its last dense field: only trailing empty categoricals are ever stripped
MIN_FIELDS = 1 + NUM_DENSE


class CriteoFormatError(ValueError):
    """A raw Criteo file is malformed; the message names the file and line."""


# --------------------------------------------------------------------------------------------
# parsing

_U = np.uint64
_ONES = _U(0x0101010101010101)
_LOW_NIBBLES = _U(0x0F0F0F0F0F0F0F0F)
_HIGH_NIBBLES = _U(0xF0F0F0F0F0F0F0F0)
_ASCII_ZEROS = _U(0x3030303030303030)
_SIXES = _U(0x0606060606060606)
_SEVENTIES = _U(0x7070707070707070)
_BIT4 = _U(0x1010101010101010)
_BIT5 = _U(0x2020202020202020)
_BIT7 = _U(0x8080808080808080)
_FIELD_INDEX = np.arange(NUM_FIELDS)
_BYTE_MASK = np.array([(1 << (8 * k)) - 1 for k in range(9)], dtype=np.uint64)  # low k bytes


@dataclass
class ParsedLines:
    """Fields of ``n`` lines. ``label`` int8; ``dense`` int64 (n, 13) with
    missing read as 0 and negative values kept; ``cat`` int64 (n, 26): the
    32-bit number the hex string spells, -1 when missing; ``reason``: int8,
    :data:`OK` or why the line is malformed (its fields are then meaningless);
    ``problems``: ``(line index, description)`` of the first malformed lines."""
    label: np.ndarray
    dense: np.ndarray
    cat: np.ndarray
    reason: np.ndarray
    problems: list

    def __len__(self):
        return len(self.reason)


def decode_hex8(words):
    """``(value int64, ok bool)`` of uint64 words each holding 8 ASCII bytes
    (the first in the lowest byte): the number they spell in hex and whether
    all 8 are hex digits (either case)."""
    low = words >> _U(1)
    low &= _BIT5
    low |= words                                   # 'A'-'F' -> 'a'-'f', digits unchanged
    nib = low & _LOW_NIBBLES
    letter = low >> _U(6)
    letter &= _ONES
    letter *= _U(9)
    nib += letter                                   # '0'-'9' -> 0-9, 'a'-'f' -> 10-15
    enc = nib + _SIXES                              # re-encode: every byte must come back
    enc >>= _U(4)
    enc &= _ONES
    enc *= _U(39)
    enc += nib
    enc += _ASCII_ZEROS
    ok = enc == low
    enc = nib + _SEVENTIES                          # and be a nibble (< 16)
    enc &= _BIT7
    ok &= enc == 0
    # pack the 8 nibbles, first digit highest, by multiply-shift-mask: in
    # each 16-bit lane (b0 + 256 b1) * (4096 + 1) holds 16 b0 + b1 in bits
    # 8..15; the same with 32-bit lanes of bytes, then the two halves
    nib *= _U(0x1001)
    nib >>= _U(8)
    nib &= _U(0x00FF00FF00FF00FF)
    nib *= _U(0x1000001)
    nib >>= _U(16)
    nib &= _U(0x0000FFFF0000FFFF)
    nib *= _U(0x1000000000001)
    nib >>= _U(32)
    return nib.view(np.int64), ok


def decode_digits(words, ndigits, values=True):
    """``(value int64, ok bool)``: the first ``ndigits`` (1..8, per word)
    ASCII bytes of each uint64 word read as a decimal number, and whether they
    are all digits (``values=False``: ``(None, ok)``, the check alone)."""
    mask = _BYTE_MASK[ndigits]
    c = words & mask
    ok = (c & _HIGH_NIBBLES) == (_ASCII_ZEROS & mask)
    t = c & _LOW_NIBBLES
    d = t << (_U(8) * (_U(8) - ndigits.astype(np.uint64))) if values else None  # right-align
    t += _SIXES
    t &= _BIT4 & mask
    ok &= t == 0                                    # every digit nibble <= 9
    if not values:
        return None, ok
    d *= _U(2561)                                   # 10 * 256 + 1: pairs of digits
    d >>= _U(8)
    d &= _U(0x00FF00FF00FF00FF)
    d *= _U(6553601)                                # 100 * 65536 + 1: groups of four
    d >>= _U(16)
    d &= _U(0x0000FFFF0000FFFF)
    d *= _U(42949672960001)                         # 10000 * 2**32 + 1: all eight
    d >>= _U(32)
    return d.view(np.int64), ok


def _slow_ints(data, starts, ends):
    """Integers too long for :func:`decode_digits`, one by one (rare)."""
    values = np.zeros(len(starts), np.int64)
    ok = np.zeros(len(starts), bool)
    for i, (s, e) in enumerate(zip(starts, ends)):
        text = bytes(data[s:e])
        digits = text[1:] if text[:1] == b"-" else text
        if digits.isascii() and digits.isdigit():
            values[i] = max(min(int(text), 2 ** 62), -2 ** 62)
            ok[i] = True
    return values, ok


def _field_bounds(seps, kinds):
    """Start and end offsets (n, 40) of the fields of every line, and the
    number of fields of each line.

    Field ``f`` of a line ends at the line's ``f``-th separator, clipped to
    its newline: an absent trailing field then starts one byte after it ends
    (width -1, read as empty). The last field always ends at the newline, so
    a line with more than 40 fields keeps its first 39 tabs (it is malformed
    anyway).
    """
    nl_idx = np.flatnonzero(kinds == 10)            # index in seps of each line end
    n = len(nl_idx)
    nfields = np.diff(nl_idx, prepend=-1)
    if (nfields == NUM_FIELDS).all():               # no line to pad
        ends = seps
    else:
        idx = (nl_idx - (nfields - 1))[:, None] + _FIELD_INDEX
        np.minimum(idx, nl_idx[:, None], out=idx)
        idx[:, -1] = nl_idx
        ends = seps[idx.ravel()]
    starts = np.empty(len(ends), np.int64)
    starts[0] = 0
    np.add(ends[:-1], 1, out=starts[1:])
    return starts.reshape(n, NUM_FIELDS), ends.reshape(n, NUM_FIELDS), nfields


def parse_lines(data, describe=MAX_REPORTED, dense=True, native=None):
    """Parse ``data``: the bytes of whole lines, each ending with ``\\n``.

    Returns :class:`ParsedLines`; at most ``describe`` malformed lines get a
    description in ``problems``. With ``dense=False`` the label and dense
    values are checked but not decoded (``label`` and ``dense`` are None):
    what counting the categorical values needs. ``native``: the C++ parser
    (:class:`src.data.criteo_native.NativeParser`), tried first; a chunk
    with a malformed line is parsed here.
    """
    if b"\r" in data:
        data = data.replace(b"\r\n", b"\n")
    if not data:
        z = np.zeros(0, np.int64)
        return ParsedLines(z.astype(np.int8), z.reshape(0, NUM_DENSE), z.reshape(0, NUM_CAT),
                           z.astype(np.int8), [])
    if not data.endswith(b"\n"):
        raise ValueError("parse_lines needs whole lines, each ending with a newline")
    if native is not None:
        parsed = native(data, dense)
        if parsed is not None:
            return parsed
    padded = data + b"\0" * 8
    buf = np.frombuffer(padded, np.uint8)
    # words[i]: bytes i .. i+7 as one little-endian uint64 (an unaligned strided view)
    words = np.ndarray((len(padded) - 7,), dtype="<u8", buffer=padded, strides=(1,))
    seps = np.flatnonzero(buf <= 10)
    kinds = buf[seps]
    if ((kinds != 9) & (kinds != 10)).any():       # other control bytes belong to a field
        seps = seps[(kinds == 9) | (kinds == 10)]
        kinds = buf[seps]
    starts, ends, nfields = _field_bounds(seps, kinds)
    n = len(nfields)
    width = ends - starts
    np.maximum(width, 0, out=width)

    first = words[starts[:, 0]]
    label = (first & _U(0xFF)).view(np.int64)
    label_ok = (width[:, 0] == 1) & ((label == 48) | (label == 49))
    label = (label == 49).astype(np.int8) if dense else None

    d_starts = starts[:, 1:1 + NUM_DENSE]
    d_width = width[:, 1:1 + NUM_DENSE]
    dword = words[d_starts]
    neg = (dword & _U(0xFF)) == 45                 # '-'
    np.right_shift(dword, _U(8), out=dword, where=neg)
    ndig = d_width - neg
    room = 8 - neg                                  # digits the word still holds
    fast = (ndig >= 1) & (ndig <= room)
    values, dense_ok = decode_digits(dword, np.where(fast, ndig, 1), values=dense)
    dense_ok &= fast
    dense_ok |= d_width == 0                        # missing
    if dense:
        values[~fast] = 0
    slow = ndig > room
    if slow.any():
        rows, cols = np.nonzero(slow)
        vals, ok = _slow_ints(padded, d_starts[rows, cols], d_starts[rows, cols] + d_width[rows, cols])
        if dense:
            values[rows, cols] = vals
        dense_ok[rows, cols] = ok
    if dense:
        np.negative(values, out=values, where=neg & fast)

    c_width = width[:, 1 + NUM_DENSE:]
    cat, hex_ok = decode_hex8(words[starts[:, 1 + NUM_DENSE:]])
    c8 = c_width == 8
    cat_ok = (c_width == 0) | (c8 & hex_ok)
    cat[~c8] = -1

    reason = np.zeros(n, np.int8)
    problems = []
    short = nfields < MIN_FIELDS
    if not (label_ok.all() and dense_ok.all() and cat_ok.all()) or (nfields > NUM_FIELDS).any() \
            or short.any():
        bad = np.concatenate([~label_ok[:, None], ~dense_ok, ~cat_ok], axis=1)
        first_bad = bad.argmax(axis=1)
        any_bad = bad.any(axis=1)
        reason[any_bad & (first_bad > NUM_DENSE)] = BAD_CAT
        reason[any_bad & (first_bad >= 1) & (first_bad <= NUM_DENSE)] = BAD_DENSE
        reason[any_bad & (first_bad == 0)] = BAD_LABEL
        reason[short & (reason == OK)] = CUT_IN_DENSE
        reason[(nfields == 1) & (width[:, 0] == 0)] = EMPTY_LINE
        reason[nfields > NUM_FIELDS] = TOO_MANY_FIELDS
        for i in np.flatnonzero(reason)[:describe]:
            problems.append((int(i), _describe(padded, int(reason[i]), int(first_bad[i]),
                                               starts[i], ends[i], int(nfields[i]))))
    return ParsedLines(label, values, cat, reason, problems)


def _describe(data, reason, field, starts, ends, nfields):
    if reason == TOO_MANY_FIELDS:
        return f"{nfields} tab-separated fields, more than {NUM_FIELDS}"
    if reason == EMPTY_LINE:
        return "empty line"
    if reason == CUT_IN_DENSE:
        return (f"{nfields} tab-separated field(s): the line ends inside the dense block "
                f"(at least {MIN_FIELDS} expected)")
    text = data[starts[field]:ends[field]].decode("utf-8", "backslashreplace")
    text = text if len(text) <= 40 else text[:40] + "..."
    if reason == BAD_LABEL:
        return f"label {text!r} is not 0 or 1"
    if reason == BAD_DENSE:
        return f"{FIELD_NAMES[field]} holds {text!r}, not an integer"
    return f"{FIELD_NAMES[field]} holds {text!r}, not 8 hex digits"
