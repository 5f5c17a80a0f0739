"""The Criteo converter's C++ parser (src/data/criteo_parse.cc, loaded by
src/data/criteo_native.py) against the NumPy parser it speeds up: the same
values for every well-formed chunk, and never a chunk the NumPy parser would
find malformed (that chunk goes back to NumPy, which describes it), checked
on edge cases and on thousands of random byte edits; the conversion's files
are the same bytes with either parser; without a compiler the error names
``parser: numpy``."""
import numpy as np
import pytest

from entry import env_with, one_line_error, run
from src.data import criteo, criteo_native
from src.data.criteo_parse import parse_lines
from test_criteo_data import output_bytes, random_lines, write


@pytest.fixture(scope="module")
def native():
    return criteo_native.NativeParser()


def _text(lines):
    return ("\n".join(lines) + "\n").encode()


def _same(got, want):
    assert got.problems == want.problems
    np.testing.assert_array_equal(got.reason, want.reason)
    np.testing.assert_array_equal(got.cat, want.cat)
    for name in ("label", "dense"):
        if want.reason.any():
            continue                     # malformed lines' values are meaningless
        a, b = getattr(got, name), getattr(want, name)
        assert (a is None) == (b is None), name
        if b is not None:
            np.testing.assert_array_equal(a, b, err_msg=name)
            assert a.dtype == b.dtype, name


@pytest.mark.parametrize("dense", [True, False])
def test_well_formed_lines_parse_to_the_numpy_values(native, dense):
    data = _text(random_lines(3000, seed=3, cardinality=50))
    got = native(data, dense)
    assert got is not None and not got.reason.any() and got.problems == []
    _same(got, parse_lines(data, dense=dense))


EDGE_LINES = [
    "1\t" + "\t".join(["123456789012345678", "-12345678901234567", "-0", "007", ""] + ["9"] * 8)
    + "\t" + "\t".join(["ABCDEF01", "abcdef01", "", "FfFfFfFf"] + ["00000000"] * 22),   # 40 fields
    "0" + "\t" * 13,                                     # 14 fields: no categorical value
    "0" + "\t" * 14,                                     # 15: one empty categorical value
    "1\t-5" + "\t" * 13 + "0000000a",                    # one categorical, then stripped
]


def test_edge_values_and_field_counts(native):
    data = _text(EDGE_LINES)
    got = native(data)
    assert got is not None
    _same(got, parse_lines(data))
    assert list(got.dense[0, :5]) == [123456789012345678, -12345678901234567, 0, 7, 0]
    assert list(got.cat[0, :4]) == [0xABCDEF01, 0xABCDEF01, -1, 0xFFFFFFFF]
    assert (got.cat[1:3] == -1).all() and got.cat[3, 0] == 10 and (got.cat[3, 1:] == -1).all()


@pytest.mark.parametrize("line", [
    "1" + "\t5" * 40,                                    # 41 fields
    EDGE_LINES[0] + "\t",                                # 41, the last empty
    EDGE_LINES[0] + "\t0000000a",                        # 41, every field valid
    "",                                                  # empty line
    "2\t1" + "\t" * 12,                                  # label 2
    "1\t1.5" + "\t" * 12,                                # not an integer
    "1\t\t\t-" + "\t" * 10,                              # a lone minus
    "1",                                                 # cut inside the dense block
    "1\t3\t4",
    "0" + "\t" * 14 + "abc",                             # short categorical
    "0" + "\t" * 20 + "0000000g",                        # not hex
    "0" + "\t" * 14 + "\x10" + "0" * 7,                  # a control byte
    "0" + "\t" * 14 + "000000001",                       # 9 hex digits
    "1\t" + "1" * 19 + "\t" * 12,                        # 19 digits: NumPy's slow path
    "0 " + "\t" * 13,                                    # label then a space
])
def test_a_chunk_with_a_malformed_or_rare_line_goes_back_to_numpy(native, line):
    for data in (_text(random_lines(5, seed=4) + [line] + random_lines(5, seed=5)),
                 _text(random_lines(5, seed=4) + [line])):             # the chunk's last line
        assert native(data) is None and native(data, False) is None
        _same(parse_lines(data, native=native), parse_lines(data))


def test_random_byte_edits_never_pass_what_numpy_rejects(native):
    """Each trial edits a few bytes of well-formed lines (replaced by, or
    inserted as, tabs, newlines, digits, hex letters, signs, control bytes;
    or dropped); whenever the C++ parser accepts the chunk, the NumPy parser
    accepts it too, to the same values."""
    rng = np.random.default_rng(7)
    short = ["1\t" + "\t".join(["1", "", "-2", "3"] + [""] * 9) + "\t" + "\t".join(["0000000a"] * 26),
             "0\t5" + "\t" * 13 + "0000000b"]
    base = _text(EDGE_LINES + short)
    alphabet = b"\t\n0123456789abcdefABCDEFgG-+ .\x00\x01\r\x7f\xff"
    accepted = 0
    for _ in range(4000):
        data = bytearray(base)
        for _ in range(int(rng.integers(1, 3))):
            i = int(rng.integers(0, len(data)))
            op, byte = rng.random(), alphabet[int(rng.integers(0, len(alphabet)))]
            if op < 0.2:
                del data[i]
            elif op < 0.5:
                data.insert(i, byte)
            else:
                data[i] = byte
        data = bytes(data).replace(b"\r\n", b"\n")
        if not data.endswith(b"\n"):
            continue
        want = parse_lines(data)
        got = native(data)
        if got is not None:
            accepted += 1
            assert not want.reason.any(), data
            _same(got, want)
        _same(parse_lines(data, native=native), want)
    assert accepted > 300                                 # the edits that keep lines valid


@pytest.mark.parametrize("kw", [{}, {"max_ind_range": 1000, "split": "time"}])
def test_conversions_with_either_parser_write_the_same_bytes(tmp_path, kw):
    lines = random_lines(900, seed=9)
    lines[400] = "5" + lines[400][1:]                     # malformed: its chunk goes to NumPy
    raw = write(tmp_path / "train.txt", lines)
    outs = {}
    for parser in criteo_native.PARSERS:
        out = tmp_path / parser
        fmap = criteo.convert(raw, str(out), parser=parser, chunk_bytes=4000, workers=2,
                              skip_malformed=True, log=lambda text: None, **kw)
        assert fmap["malformed_lines"]["first"][0]["line"] == 401
        outs[parser] = output_bytes(out)
    assert len(outs["native"]) > 3 and outs["native"] == outs["numpy"]


def test_parser_choice_errors(tmp_path):
    with pytest.raises(ValueError, match="parser must be one of native, numpy, got 'fast'"):
        criteo.convert(str(tmp_path), str(tmp_path / "out"), parser="fast")


def test_without_a_compiler_the_converter_says_to_use_numpy(tmp_path):
    raw = write(tmp_path / "train.txt", random_lines(50, seed=10))
    env = env_with(XDG_CACHE_HOME=str(tmp_path / "cache"), CXX="no-such-compiler")
    line = one_line_error(run("src/data/criteo.py", "--raw_data_path", raw, "--data_path",
                              tmp_path / "out", env=env), 1)
    assert "needs a C++ compiler" in line and "set parser: numpy" in line
    result = run("src/data/criteo.py", "--raw_data_path", raw, "--data_path", tmp_path / "out",
                 "--parser", "numpy", env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "numpy parser" in result.stdout
