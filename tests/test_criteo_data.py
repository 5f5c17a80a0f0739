"""Criteo parsing, conversion to sharded MindRecord splits and the synthetic
generator. Input files are written by the tests; one optional test reads the
real sample from shared/ (1000 lines, the last without newline) and skips
without it. Expected encodings come from a plain-Python reference here,
independent of the vectorised code."""
import gzip
import json
import math
import os
import subprocess
import sys
from collections import Counter

import numpy as np
import pytest

from src.data import criteo, criteo_parse, criteo_passes, criteo_vocab
from src.data.convert import progress, splits
from src import fileio
from src.synth import criteo as criteo_synth
from src.data.criteo import CriteoFormatError
from src.data.mindrecord_io import BlockWriter, shard_file, split_file, split_files
from src.data.reader import BlockDataset

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SAMPLE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "..", "shared",
                      "data", "criteo", "train.sample.txt")
COLUMNS = {"label": 1, "dense": 13, "cat": 26}


def random_lines(n, seed, cardinality=6):
    """Kaggle-style lines with few distinct values, negatives, missing values
    and stripped trailing empty fields."""
    rng = np.random.default_rng(seed)
    lines = []
    for _ in range(n):
        dense = [("" if rng.random() < 0.2 else str(int(rng.integers(-3, 2000)))) for _ in range(13)]
        values = [int(rng.zipf(1.5)) % cardinality * 0x1F3A5C7 % (1 << 32) for _ in range(26)]
        cat = [("" if rng.random() < 0.2 else f"{v:08x}") for v in values]
        line = "\t".join([str(int(rng.random() < 0.3))] + dense + cat)
        lines.append(line.rstrip("\t") if rng.random() < 0.7 else line)
    return lines


def write(path, lines, gz=False, end="\n"):
    data = "".join(line + end for line in lines).encode()
    with open(path, "wb") as fh:
        fh.write(gzip.compress(data, mtime=0) if gz else data)
    return str(path)


def fields(line):
    parts = line.split("\t")
    return parts + [""] * (40 - len(parts))


def reference(lines, codes, min_count=1, transform="log1p"):
    """Expected rows of every split: vocabularies from the train lines only."""
    rows = [fields(line) for line in lines]
    counts = [Counter() for _ in range(26)]
    for r, c in zip(rows, codes):
        if c == splits.TRAIN:
            for j in range(26):
                if r[14 + j]:
                    counts[j][int(r[14 + j], 16)] += 1
    vocab = []
    for cnt in counts:
        kept = sorted(((v, k) for v, k in cnt.items() if k >= min_count), key=lambda t: (-t[1], t[0]))
        vocab.append({v: i + 1 for i, (v, _) in enumerate(kept)})
    out = {name: {"label": [], "dense": [], "cat": []} for name in splits.SPLITS}
    for r, c in zip(rows, codes):
        part = out[splits.SPLITS[c]]
        part["label"].append([float(r[0])])
        x = [max(int(v), 0) if v else 0 for v in r[1:14]]
        part["dense"].append([np.float32(np.log1p(np.float64(v))) if transform == "log1p" else v for v in x])
        part["cat"].append([vocab[j].get(int(r[14 + j], 16), 0) if r[14 + j] else 0 for j in range(26)])
    return {name: {k: np.array(v, dtype=np.int32 if k == "cat" else np.float32).reshape(-1, COLUMNS[k])
                   for k, v in part.items()} for name, part in out.items()}, vocab


def read_split(directory, split):
    data = BlockDataset(str(directory), split, COLUMNS, batch_size=1 << 20, prefetch=0)
    return data.arrays


def convert(raw, out, **kw):
    kw.setdefault("log", lambda text: None)
    return criteo.convert(raw, str(out), **kw)


def assert_split_equal(got, want):
    for name in COLUMNS:
        np.testing.assert_array_equal(got[name], want[name], err_msg=name)


# --------------------------------------------------------------------------------------------
# parsing


def test_parse_pads_stripped_rows_and_reads_values():
    text = ("1\t5\t-2\t\t7" + "\t" * 10 + "00ab12CD\t\tffffffff\n"   # 17 fields
            "0" + "\t" * 13 + "\n"                                    # 14 fields: no categorical
            + "0\t" + "\t".join(["12345678901"] + [""] * 12) + "\t" + "\t".join(["0000000a"] * 26)
            + "\r\n")
    p = criteo_parse.parse_lines(text.encode())
    assert list(p.reason) == [0, 0, 0] and list(p.label) == [1, 0, 0]
    assert list(p.dense[0, :4]) == [5, -2, 0, 7] and not p.dense[0, 4:].any()
    assert list(p.cat[0, :3]) == [0x00AB12CD, -1, 0xFFFFFFFF] and (p.cat[0, 3:] == -1).all()
    assert (p.cat[1] == -1).all() and not p.dense[1].any()
    assert p.dense[2, 0] == 12345678901 and (p.cat[2] == 10).all()


@pytest.mark.parametrize("fields_kept", [1, 2, 13])
def test_a_line_cut_inside_the_dense_block_is_malformed(fields_kept):
    """Only trailing empty categoricals are stripped in the real files: a line
    that ends before its 13th dense value was cut, not padded."""
    good = "1\t" + "\t".join(["3"] * 13) + "\t" + "\t".join(["0000000a"] * 26)
    cut = "\t".join(good.split("\t")[:fields_kept])
    p = criteo_parse.parse_lines((good + "\n" + cut + "\n").encode())
    assert p.reason[0] == 0 and p.reason[1] != 0
    assert "ends inside the dense block" in p.problems[0][1]


def test_parse_real_sample_layout_37_38_40_fields():
    lines = random_lines(300, seed=1)
    counts = Counter(len(line.split("\t")) for line in lines)
    assert counts[40] and min(counts) < 40                  # both kinds present
    p = criteo_parse.parse_lines(("\n".join(lines) + "\n").encode())
    assert not p.reason.any()
    for i, line in enumerate(lines):
        f = fields(line)
        assert list(p.dense[i]) == [int(v) if v else 0 for v in f[1:14]]
        assert list(p.cat[i]) == [int(v, 16) if v else -1 for v in f[14:]]


@pytest.mark.parametrize("line, reason", [
    ("1" + "\t5" * 40, "41 tab-separated fields, more than 40"),
    ("", "empty line"),
    ("2\t1", "label '2' is not 0 or 1"),
    ("1\t1.5", "I1 holds '1.5', not an integer"),
    ("1\t\t\t-", "I3 holds '-', not an integer"),
    ("0" + "\t" * 14 + "abc", "C1 holds 'abc', not 8 hex digits"),
    ("0" + "\t" * 20 + "0000000g", "C7 holds '0000000g', not 8 hex digits"),
    ("0" + "\t" * 14 + "\x10" + "0" * 7, "not 8 hex digits"),
])
def test_parse_flags_malformed_lines(line, reason):
    p = criteo_parse.parse_lines(("0\t1" + "\t" * 12 + f"\n{line}\n").encode())
    assert p.reason[0] == 0 and p.reason[1] != 0
    assert p.problems[0][0] == 1 and reason in p.problems[0][1]


# --------------------------------------------------------------------------------------------
# conversion


def test_convert_matches_reference_encoding(tmp_path):
    lines = random_lines(400, seed=2)
    raw = write(tmp_path / "train.txt", lines)
    fmap = convert(str(tmp_path), tmp_path / "out", seed=5, val_fraction=0.2, test_fraction=0.2,
                   block_rows=16, chunk_bytes=700)
    codes = splits.random_split_codes(5, 0, len(lines), 0.2, 0.2)
    want, vocab = reference(lines, codes)
    for name in splits.SPLITS:
        assert_split_equal(read_split(tmp_path / "out", name), want[name])
        assert fmap["splits"][name]["rows"] == int((codes == splits.SPLITS.index(name)).sum())
    cards = [len(v) + 1 for v in vocab]
    assert fmap["cardinalities"] == cards and fmap["table_size"] == sum(cards)
    assert fmap["offsets"] == [sum(cards[:j]) for j in range(26)]
    assert fmap["source_files"] == [{"path": os.path.abspath(raw), "lines": 400}]
    assert fmap["columns"] == {"label": {"dtype": "float32", "width": 1},
                               "dense": {"dtype": "float32", "width": 13},
                               "cat": {"dtype": "int32", "width": 26}}
    saved = criteo.load_vocabulary(str(tmp_path / "out"))
    for j, name in enumerate(criteo_parse.CAT_FIELDS):
        assert [int(v) for v in saved[name]] == sorted(vocab[j], key=vocab[j].get)


def test_dense_negative_and_missing_are_zero_then_log1p(tmp_path):
    lines = ["1\t-5\t\t0\t3\t1000000\t-1\t7\t\t\t\t\t\t2",
             "0\t99999999\t123456789012" + "\t" * 11]
    write(tmp_path / "train.txt", lines)
    for transform in ("log1p", "none"):
        convert(str(tmp_path), tmp_path / transform, val_fraction=0.0, test_fraction=0.0,
                dense_transform=transform)
        dense = read_split(tmp_path / transform, "train")["dense"]
        raw = np.array([[0, 0, 0, 3, 1000000, 0, 7, 0, 0, 0, 0, 0, 2],
                        [99999999, 123456789012] + [0] * 11], dtype=np.float64)
        want = np.log1p(raw) if transform == "log1p" else raw
        np.testing.assert_array_equal(dense, want.astype(np.float32))


def test_vocabulary_from_train_only_with_min_count(tmp_path):
    a, b, c, t = "aaaaaaaa", "bbbbbbbb", "cccccccc", "dddddddd"
    cats = [a, a, a, b, b, c, b, a, t, t]      # time split, days=2: lines 0-4 train, 5-9 last day
    lines = ["1\t1\t" + "\t" * 12 + v for v in cats]
    write(tmp_path / "train.txt", lines)
    fmap = convert(str(tmp_path), tmp_path / "out", split="time", days=2, min_count=2)
    # train: a x3, b x2 -> ids a=1, b=2; c (only in val/test) and t (only in test) -> 0
    assert fmap["cardinalities"][0] == 3 and fmap["cardinalities"][1:] == [1] * 25
    test = read_split(tmp_path / "out", "test")["cat"][:, 0]
    val = read_split(tmp_path / "out", "val")["cat"][:, 0]
    assert list(test) == [0, 2, 1] and list(val) == [0, 0]
    assert list(read_split(tmp_path / "out", "train")["cat"][:, 0]) == [1, 1, 1, 2, 2]
    fmap1 = convert(str(tmp_path), tmp_path / "out1", split="time", days=2, min_count=3)
    assert fmap1["cardinalities"][0] == 2                    # b (2 times) is now rare


def test_hashing_is_deterministic_and_in_range(tmp_path):
    keys = np.array([[0, 1, -1, 0xFFFFFFFF] + [5] * 22] * 3, dtype=np.int64)
    keys[1, 0] = 123456
    ids = criteo_vocab.Hasher(97).encode(keys)
    np.testing.assert_array_equal(ids, criteo_vocab.Hasher(97).encode(keys))
    assert ids.dtype == np.int32 and ids.min() >= 0 and ids.max() < 97
    assert ids[0, 2] == 0 and (np.delete(ids, 2, axis=1) >= 1).all()
    wide = criteo_vocab.Hasher(1 << 20).encode(keys)
    assert wide[0, 0] != wide[1, 0]
    assert len(set(wide[0, 4:])) > 1                       # same value, other fields: other ids
    lines = random_lines(200, seed=3)
    write(tmp_path / "train.txt", lines)
    fmap = convert(str(tmp_path), tmp_path / "out", max_ind_range=50, seed=1)
    assert fmap["cardinalities"] == [50] * 26 and fmap["offsets"][1] == 50 and fmap["vocabulary_file"] is None
    assert not os.path.exists(tmp_path / "out" / criteo.VOCABULARY_FILE)
    codes = splits.random_split_codes(1, 0, 200, 0.1, 0.1)
    p = criteo_parse.parse_lines(("\n".join(lines) + "\n").encode())
    np.testing.assert_array_equal(read_split(tmp_path / "out", "train")["cat"],
                                  criteo_vocab.Hasher(50).encode(p.cat[codes == 0]))
    with pytest.raises(ValueError, match="hashing"):
        criteo.load_vocabulary(str(tmp_path / "out"))


def test_random_split_is_seeded_with_right_fractions():
    codes = splits.random_split_codes(7, 0, 100000, 0.1, 0.2)
    share = np.bincount(codes, minlength=3) / len(codes)
    assert abs(share[0] - 0.7) < 0.01 and abs(share[1] - 0.1) < 0.01 and abs(share[2] - 0.2) < 0.01
    np.testing.assert_array_equal(codes, splits.random_split_codes(7, 0, 100000, 0.1, 0.2))
    np.testing.assert_array_equal(codes[500:800], splits.random_split_codes(7, 500, 300, 0.1, 0.2))
    assert (codes != splits.random_split_codes(8, 0, 100000, 0.1, 0.2)).mean() > 0.3


def test_same_rows_same_split_whatever_the_chunk_size(tmp_path):
    lines = random_lines(300, seed=4)
    write(tmp_path / "train.txt", lines)
    small = convert(str(tmp_path), tmp_path / "small", chunk_bytes=97, seed=3)
    large = convert(str(tmp_path), tmp_path / "large", chunk_bytes=1 << 20, seed=3)
    assert small["splits"] == large["splits"] and small["cardinalities"] == large["cardinalities"]
    for name in splits.SPLITS:
        assert_split_equal(read_split(tmp_path / "small", name), read_split(tmp_path / "large", name))


def output_bytes(directory):
    """Every output file's bytes (the MindRecord index databases aside)."""
    return {name: (directory / name).read_bytes() for name in sorted(os.listdir(directory))
            if not name.endswith(".db")}


@pytest.mark.parametrize("kw", [{"split": "time", "days": 3}, {"split": "random", "min_count": 2},
                                {"split": "time", "max_ind_range": 1000}])
def test_worker_processes_give_the_same_bytes(tmp_path, kw):
    lines = random_lines(700, seed=11)
    lines[100] = lines[100].replace("\t", "\t\t", 1) + "\t" * 3    # over 40 fields: malformed
    raw = tmp_path / "train.txt"
    data = "".join(line + ("\r\n" if i % 7 == 0 else "\n") for i, line in enumerate(lines))
    raw.write_bytes(data.rstrip("\n").encode())                     # last line without newline
    outs = {}
    for workers in (0, 1, 3):
        out = tmp_path / f"w{workers}"
        fmap = convert(str(raw), out, workers=workers, chunk_bytes=2000, block_rows=32,
                       shard_rows=128, skip_malformed=True, seed=8, **kw)
        assert fmap["total_lines"] == 700 and fmap["malformed_lines"]["count"] == 1
        assert fmap["malformed_lines"]["first"][0]["line"] == 101
        outs[workers] = output_bytes(out)
    assert len(outs[0]) > 6 and outs[0] == outs[1] == outs[3]
    if "max_ind_range" not in kw:                                     # and the right rows
        plan = splits.SplitPlan(kw["split"], 1, seed=8, days=kw.get("days", 7))
        plan.set_line_counts([700])
        codes = np.delete(plan.codes(0, 0, 0, 700), 100)
        want, _ = reference(lines[:100] + lines[101:], codes, min_count=kw.get("min_count", 1))
        for name in splits.SPLITS:
            assert_split_equal(read_split(tmp_path / "w3", name), want[name])


def test_worker_processes_report_the_first_malformed_line(tmp_path):
    lines = random_lines(400, seed=12)
    lines[250] = "3" + lines[250][1:]
    lines[390] = ""
    path = write(tmp_path / "train.txt", lines, gz=True)             # read by this process
    for split in ("random", "time"):
        with pytest.raises(CriteoFormatError, match=f"{path}: line 251: label '3' is not 0 or 1"):
            convert(path, tmp_path / "out", chunk_bytes=300, workers=2, split=split)
    fmap = convert(path, tmp_path / "out", chunk_bytes=300, workers=2, skip_malformed=True)
    assert [m["line"] for m in fmap["malformed_lines"]["first"]] == [251, 391]


def test_worker_failures_stop_the_conversion(tmp_path, monkeypatch):
    write(tmp_path / "train.txt", random_lines(200, seed=13))

    def broken(data, **kw):
        raise ZeroDivisionError("no parse today")
    monkeypatch.setattr(criteo_passes, "parse_lines", broken)          # the forked workers see it
    with pytest.raises(RuntimeError, match="worker 0 failed: ZeroDivisionError: no parse today"):
        convert(str(tmp_path), tmp_path / "out", workers=2, chunk_bytes=1000)
    monkeypatch.setattr(criteo_passes, "parse_lines", lambda data, **kw: os._exit(3))
    with pytest.raises(RuntimeError, match=r"worker 0 died \(exit code 3\)"):
        convert(str(tmp_path), tmp_path / "out", workers=2, chunk_bytes=1000)
    assert not os.path.exists(tmp_path / "out" / fileio.FEATURE_MAP_FILE)


def test_value_counter_and_vocabulary_fit():
    counter = criteo_vocab.ValueCounter()
    rng = np.random.default_rng(0)
    r = rng.integers(-1, 5, (5000, 26))
    cat = np.where(r >= 0, r * 0x10001, -1)
    cat[:, 3] = np.where(cat[:, 3] >= 0, 0xFFFFFFFF, -1)                # the largest value
    for part in np.array_split(cat, 7):
        counter.add(criteo_vocab.field_keys(part))
    keys, counts = counter.result()
    half = criteo_vocab.ValueCounter()
    half.add(criteo_vocab.field_keys(cat[:2000]))
    other = criteo_vocab.ValueCounter()
    other.add(criteo_vocab.field_keys(cat[2000:]))
    merged = criteo_vocab.merge_counts([half.result(), other.result()])
    assert sorted(zip(*merged)) == sorted(zip(keys, counts))
    vocab = criteo_vocab.Vocabulary.fit(keys, counts, min_count=1)
    for f in range(26):
        col = cat[:, f][cat[:, f] >= 0]
        c = Counter(col.tolist())
        assert list(vocab.values[f]) == sorted(c, key=lambda v: (-c[v], v))
        assert list(vocab.counts[f]) == sorted(c.values(), reverse=True)
    ids = vocab.encode(cat)
    assert ids.dtype == np.int32 and ids.shape == cat.shape
    back = criteo.cat_values({n: vocab.values[f] for f, n in enumerate(criteo_parse.CAT_FIELDS)}, ids)
    np.testing.assert_array_equal(back, cat)
    assert (vocab.encode(np.full((2, 26), 7)) == 0).all()              # unseen values


def test_time_split_of_one_file(tmp_path):
    assert splits.day_sizes(23, 7) == [4, 4, 3, 3, 3, 3, 3]
    lines = [f"{i % 2}\t{i}" + "\t" * 12 for i in range(23)]    # I1 = line number
    write(tmp_path / "train.txt", lines)
    fmap = convert(str(tmp_path), tmp_path / "out", split="time", days=7)
    got = {s: np.expm1(read_split(tmp_path / "out", s)["dense"][:, 0].astype(np.float64)).round()
           for s in splits.SPLITS}
    assert list(got["train"]) == list(range(20))            # days 1..6
    assert list(got["test"]) == [20, 21] and list(got["val"]) == [22]   # day 7: halves
    assert fmap["split"]["day_lines"] == [4, 4, 3, 3, 3, 3, 3]


def test_time_split_of_day_files(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    for d, n in enumerate((3, 4, 5)):
        write(raw / f"day_{d}", [f"1\t{100 * d + i}" + "\t" * 12 for i in range(n)], gz=d == 1)
    (raw / "day_2.prob.npy").write_bytes(b"not a day file")
    fmap = convert(str(raw), tmp_path / "out", split="time")
    assert [os.path.basename(f["path"]) for f in fmap["source_files"]] == ["day_0", "day_1", "day_2"]
    got = {s: np.expm1(read_split(tmp_path / "out", s)["dense"][:, 0].astype(np.float64)).round()
           for s in splits.SPLITS}
    assert list(got["train"]) == [0, 1, 2, 100, 101, 102, 103]
    assert list(got["test"]) == [200, 201, 202] and list(got["val"]) == [203, 204]


@pytest.mark.parametrize("max_ind_range", [0, 1000])
def test_malformed_line_error_names_file_and_line(tmp_path, max_ind_range):
    lines = random_lines(120, seed=5)
    lines[56] = lines[56].split("\t", 1)[0] + "\t1.5"           # line 57, well after chunk 1
    path = write(tmp_path / "train.txt", lines)
    with pytest.raises(CriteoFormatError) as err:
        convert(path, tmp_path / "out", chunk_bytes=500, max_ind_range=max_ind_range)
    assert f"{path}: line 57: I1 holds '1.5', not an integer" in str(err.value)
    assert not os.path.exists(tmp_path / "out" / fileio.FEATURE_MAP_FILE)


def test_skip_malformed_counts_and_reports(tmp_path):
    lines = random_lines(100, seed=6)
    lines[9] = "7" + lines[9][1:]
    lines[40] = ""
    lines[77] = "\t".join(fields(lines[77])) + "\t1"          # 41 fields
    path = write(tmp_path / "train.txt", lines)
    fmap = convert(path, tmp_path / "out", skip_malformed=True, chunk_bytes=400)
    report = fmap["malformed_lines"]
    assert report["count"] == 3 and report["skip_malformed"] is True
    assert [m["line"] for m in report["first"]] == [10, 41, 78]
    assert [m["reason"] for m in report["first"]] == [
        "label '7' is not 0 or 1", "empty line", "41 tab-separated fields, more than 40"]
    assert all(m["file"] == path for m in report["first"])
    assert sum(s["rows"] for s in fmap["splits"].values()) == 97
    assert fmap["total_lines"] == 100


def test_gzip_input_is_detected_by_content(tmp_path):
    lines = random_lines(150, seed=7)
    plain = write(tmp_path / "plain.txt", lines)
    packed = write(tmp_path / "packed.txt", lines, gz=True)  # no .gz suffix
    a = convert(plain, tmp_path / "a")
    b = convert([packed], tmp_path / "b")
    assert a["splits"] == b["splits"] and a["cardinalities"] == b["cardinalities"]
    for name in splits.SPLITS:
        assert_split_equal(read_split(tmp_path / "a", name), read_split(tmp_path / "b", name))
    broken = tmp_path / "broken.txt"
    broken.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode())[:-30])
    with pytest.raises(CriteoFormatError, match="truncated or corrupt gzip"):
        convert(str(broken), tmp_path / "c")
    binary = tmp_path / "binary.bin"
    binary.write_bytes(bytes(range(11, 256)) * 5000)          # no newline at all
    with pytest.raises(CriteoFormatError, match="no line end within"):
        convert(str(binary), tmp_path / "d", chunk_bytes=1 << 16)


def test_multi_shard_splits_read_back_exactly(tmp_path):
    lines = random_lines(500, seed=8)
    write(tmp_path / "train.txt", lines, end="\r\n")
    out = tmp_path / "out"
    fmap = convert(str(tmp_path), out, block_rows=16, shard_rows=70, chunk_bytes=1000, seed=9)
    assert fmap["shard_rows"] == 64                           # whole blocks
    train = fmap["splits"]["train"]
    assert len(train["files"]) == math.ceil(train["rows"] / 64) >= 5
    assert split_files(str(out), "train") == [str(out / f) for f in train["files"]]
    want, _ = reference(lines, splits.random_split_codes(9, 0, 500, 0.1, 0.1))
    for name in splits.SPLITS:
        assert_split_equal(read_split(out, name), want[name])
    seen = []                                                 # rank sharding over all files
    for rank in range(3):
        data = BlockDataset(str(out), "train", COLUMNS, batch_size=64, num_shards=3, shard_id=rank,
                            prefetch=0)
        seen.append(data.arrays["dense"])
    got = np.concatenate(seen)
    assert len(got) == train["rows"]
    assert sorted(map(tuple, got)) == sorted(map(tuple, want["train"]["dense"]))
    # converting again with bigger shards leaves no stale shard behind
    fmap2 = convert(str(tmp_path), out, block_rows=16, shard_rows=1000, seed=9)
    assert fmap2["splits"]["train"]["files"] == ["train_000.mindrecord"]
    assert sorted(f for f in os.listdir(out) if f.startswith("train")) == [
        "train_000.mindrecord", "train_000.mindrecord.db"]


def test_split_files_single_and_sharded(tmp_path):
    cols = {"id": (np.int32, 1)}
    for index in (10, 2, 0, 1):
        with BlockWriter(shard_file(str(tmp_path), "train", index), cols, block_rows=4) as w:
            w.write({"id": np.arange(5)[:, None] + 100 * index})
    assert [os.path.basename(p) for p in split_files(str(tmp_path), "train")] == [
        "train_000.mindrecord", "train_001.mindrecord", "train_002.mindrecord", "train_010.mindrecord"]
    ids = BlockDataset(str(tmp_path), "train", {"id": 1}, batch_size=100, prefetch=0).arrays["id"]
    assert list(ids.ravel()) == [i + 100 * k for k in (0, 1, 2, 10) for i in range(5)]
    with pytest.raises(FileNotFoundError, match="'val'.*convert the data first"):
        split_files(str(tmp_path), "val")
    with BlockWriter(split_file(str(tmp_path), "train"), cols, block_rows=4) as w:
        w.write({"id": np.arange(3)[:, None]})
    assert split_files(str(tmp_path), "train") == [split_file(str(tmp_path), "train")]


def test_load_feature_map_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="run the converter"):
        criteo.load_feature_map(str(tmp_path))
    path = tmp_path / fileio.FEATURE_MAP_FILE
    path.write_text(json.dumps({"dataset": "census-income", "format_version": 1}))
    with pytest.raises(ValueError, match="census-income', not criteo"):
        criteo.load_feature_map(str(tmp_path))
    path.write_text(json.dumps({"dataset": "criteo", "format_version": 99}))
    with pytest.raises(ValueError, match="format version 99"):
        criteo.load_feature_map(str(tmp_path))


def test_option_and_source_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="looked for day_"):
        criteo.find_sources(str(tmp_path))
    write(tmp_path / "train.txt", ["1\t1"])
    for kw, msg in [({"min_count": 0}, "min_count"), ({"max_ind_range": 1}, "max_ind_range"),
                    ({"dense_transform": "log"}, "dense_transform"), ({"split": "day"}, "split"),
                    ({"val_fraction": 0.6, "test_fraction": 0.5}, "val_fraction"),
                    ({"split": "time", "days": 1}, "days")]:
        with pytest.raises(ValueError, match=msg):
            convert(str(tmp_path), tmp_path / "out", **kw)


def test_cli(tmp_path, capsys):
    write(tmp_path / "train.txt", random_lines(50, seed=10))
    out = tmp_path / "out"
    assert criteo.main(["--raw_data_path", str(tmp_path), "--data_path", str(out),
                        "--max_ind_range", "100", "--split", "time", "--days", "5"]) == 0
    fmap = criteo.load_feature_map(str(out))
    assert fmap["split"]["mode"] == "time" and fmap["table_size"] == 2600
    assert "pass 2/2" in capsys.readouterr().out
    missing = subprocess.run([sys.executable, "-m", "src.data.criteo", "--raw_data_path",
                              str(tmp_path / "nope"), "--data_path", str(out)], capture_output=True,
                             text=True, cwd=ROOT, env=dict(os.environ, GLOG_v="3"), timeout=120)
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
    assert missing.stderr.startswith("error: ") and "nope" in missing.stderr
    # --skip_malformed alone or with a value, spelled as prepare_data.py spells it
    (tmp_path / "train.txt").write_text((tmp_path / "train.txt").read_text() + "2\tbad\n")
    for flag, skips in ((["--skip_malformed"], True), (["--skip_malformed", "True"], True),
                        (["--skip_malformed=no"], False)):
        argv = ["--raw_data_path", str(tmp_path), "--data_path", str(out), "--max_ind_range", "100"]
        if skips:
            assert criteo.main(argv + flag) == 0
            assert criteo.load_feature_map(str(out))["malformed_lines"]["count"] == 1
        else:
            with pytest.raises(CriteoFormatError, match="line 51"):
                criteo.main(argv + flag)


# --------------------------------------------------------------------------------------------
# generator


def test_generator_format_and_known_labels(tmp_path):
    info = criteo_synth.generate(str(tmp_path), rows=12000, seed=3, days=3, save_probabilities=True)
    assert info["files"] == ["train.txt"] and info["rows_per_day"] == [4000, 4000, 4000]
    text = (tmp_path / "train.txt").read_text()
    lines = text.split("\n")[:-1]
    assert len(lines) == 12000
    widths = Counter(len(line.split("\t")) for line in lines)
    assert max(widths) == 40 and min(widths) < 40 and set(widths) <= set(range(30, 41))
    hexdigits = set("0123456789abcdef")
    negatives = 0
    for line in lines[:2000]:
        f = fields(line)
        assert f[0] in ("0", "1")
        assert all(v == "" or v.lstrip("-").isdigit() for v in f[1:14])
        negatives += any(v.startswith("-") for v in f[1:14])
        assert all(v == "" or (len(v) == 8 and set(v) <= hexdigits) for v in f[14:])
    assert negatives > 0
    labels = np.array([int(line[0]) for line in lines])
    prob = np.load(tmp_path / "train.txt.prob.npy")
    from sklearn.metrics import roc_auc_score
    auc = roc_auc_score(labels, prob)
    assert auc > 0.75 and abs(auc - info["auc_of_true_probability"]) < 1e-3
    assert abs(info["bayes_auc"] - auc) < 0.03 and 0.2 < labels.mean() < 0.3
    # the true probability follows from what the converter stores
    parsed = criteo_parse.parse_lines(text.encode())
    model = criteo_synth.CriteoSynth(seed=3, days=3)
    p = model.probability_from_features(criteo_passes.dense_features(parsed.dense), parsed.cat)
    np.testing.assert_allclose(p, prob, rtol=1e-4, atol=1e-6)
    # from converted rows (what a model test sees): the Bayes AUC of the test split
    fmap = convert(str(tmp_path / "train.txt"), tmp_path / "out", seed=4)
    test = read_split(tmp_path / "out", "test")
    keys = criteo.cat_values(criteo.load_vocabulary(str(tmp_path / "out")), test["cat"])
    p_test = model.probability_from_features(test["dense"], keys)
    assert len(p_test) == fmap["splits"]["test"]["rows"]
    best = criteo_synth.expected_auc(p_test)
    assert best > 0.75 and abs(roc_auc_score(test["label"].ravel(), p_test) - best) < 0.05
    again = tmp_path / "again"
    criteo_synth.main(["--output_dir", str(again), "--rows", "12000", "--seed", "3", "--days", "3"])
    assert (again / "train.txt").read_bytes() == text.encode()


def test_generator_day_files_gzip(tmp_path):
    info = criteo_synth.generate(str(tmp_path), rows=900, seed=1, days=3, gzip=True, day_files=True)
    assert info["files"] == ["day_0.gz", "day_1.gz", "day_2.gz"] and info["file_rows"] == [300] * 3
    assert criteo.find_sources(str(tmp_path)) == [str(tmp_path / n) for n in info["files"]]
    fmap = convert(str(tmp_path), tmp_path / "out", split="time")
    assert [fmap["splits"][s]["rows"] for s in splits.SPLITS] == [600, 150, 150]
    assert fmap["cardinalities"][2] > 1


@pytest.mark.skipif(not os.path.isfile(SAMPLE), reason="shared Criteo sample not present")
def test_real_sample(tmp_path):
    with open(SAMPLE) as fh:
        lines = fh.read().split("\n")
    lines = [line for line in lines if line]
    fmap = convert(SAMPLE, tmp_path / "out", val_fraction=0.1, test_fraction=0.1, seed=1)
    assert fmap["total_lines"] == len(lines) == 1000 and fmap["malformed_lines"]["count"] == 0
    codes = splits.random_split_codes(1, 0, len(lines), 0.1, 0.1)
    want, _ = reference(lines, codes)
    for name in splits.SPLITS:
        assert_split_equal(read_split(tmp_path / "out", name), want[name])


def test_progress_reports_rate_and_eta():
    out = []
    shown = progress.Progress("criteo pass 2/2", total_lines=1000, every=0.0, log=out.append)
    shown.update(250)
    shown.done(1000)
    assert "criteo pass 2/2: 250 lines (25.0 %)" in out[0] and "lines/s, ETA 0:00:0" in out[0]
    assert "done, 1,000 lines in" in out[-1]
    by_bytes = progress.Progress("pass 1/2", total_bytes=400, every=0.0, log=out.append)
    by_bytes.update(10, 100)
    assert "(25.0 %)" in out[-1] and "ETA" in out[-1]


def test_cli_takes_a_models_conversion_defaults(tmp_path):
    """python -m src.data.criteo --model M converts as prepare_data.py --model M."""
    from src.config import parse_config
    from src.data.criteo_cli import CLI_DEFAULTS, fill_defaults
    from src.registry import models_on
    import argparse
    for model in models_on("criteo"):
        args = argparse.Namespace(**{key: None for key in CLI_DEFAULTS})
        args.min_count = 3                                  # given: kept
        fill_defaults(args, model)
        cfg = parse_config(["--model", model])
        assert args.min_count == 3 and args.split == cfg.split and args.days == cfg.days
        assert args.val_fraction == cfg.val_fraction and args.block_rows == cfg.block_rows
    args = argparse.Namespace(**{key: None for key in CLI_DEFAULTS})
    fill_defaults(args)
    assert vars(args) == CLI_DEFAULTS
    write(tmp_path / "train.txt", random_lines(70, seed=12))
    model = models_on("criteo")[0]
    assert criteo.main(["--raw_data_path", str(tmp_path), "--data_path", str(tmp_path / "out"),
                        "--model", model, "--max_ind_range", "50"]) == 0
    fmap = criteo.load_feature_map(str(tmp_path / "out"))
    assert fmap["split"]["mode"] == parse_config(["--model", model]).split
