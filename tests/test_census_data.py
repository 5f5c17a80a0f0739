"""Census-Income raw parsing, encoding, conversion to MindRecord and the
synthetic generator. All input files are written by the tests themselves."""
import gzip
import json
import os

import numpy as np
import pytest

from src.data import census
from src.synth import census as census_synth
from src.data.census import CensusFormatError
from src.data.mindrecord_io import split_file

# One row in the real files' layout: one space before text values, none before
# numbers, trailing spaces after two values.
REAL_STYLE = (
    "31, Private,45,3, Bachelors degree(BA AB BS),0, Not in universe, Never married,"
    " Other professional services, Machine operators assmblrs & inspctrs , Black, All other,"
    " Male, Not in universe, Not in universe, Full-time schedules,0,0,0, Single,"
    " Not in universe, Not in universe, Nonfamily householder, Householder,614.61, ?, ?, ?,"
    " Not in universe under 1 year old, ?,3, Not in universe, United-States, United-States,"
    " United-States, Foreign born- Not a citizen of U S ,0, Not in universe,2,52,95, 50000+.\n")


def synth_lines(n, seed):
    """``n`` raw lines (with newline) from the synthetic generator."""
    rows = census_synth.sample_rows(n, np.random.default_rng(seed))
    return census_synth.format_rows(rows)


def set_field(line, column, value):
    fields = line.rstrip("\n").split(",")
    fields[census.COLUMNS.index(column)] = " " + value
    return ",".join(fields) + "\n"


def write(path, lines, gz=False):
    data = "".join(lines).encode()
    with open(path, "wb") as fh:
        fh.write(gzip.compress(data) if gz else data)
    return str(path)


def read_split(directory, split):
    import mindspore.dataset as ds
    out = {"cat": [], "num": [], "label": []}
    for rec in ds.MindDataset(split_file(directory, split), shuffle=False).create_dict_iterator(
            output_numpy=True, num_epochs=1):
        rows = int(rec["rows"])
        for name in out:
            out[name].append(rec[name].reshape(rows, -1))
    return {name: np.concatenate(parts) for name, parts in out.items()}


def table_rows(table):
    """Each row of a table as a tuple of its 42 raw (stripped) values."""
    cols = []
    for name in census.COLUMNS:
        col = table.column(name)
        cols.append([f"{v:g}" for v in col] if name in census.NUMERIC_COLUMNS else col)
    return list(zip(*cols))


# ---------------------------------------------------------------- parsing

def test_plain_and_gzip_read_identically_and_fields_are_stripped(tmp_path):
    lines = [REAL_STYLE] + synth_lines(20, seed=0)
    plain = census.read_raw(write(tmp_path / "census-income.data", lines))
    # gzip is told by its magic bytes, not by the name
    packed = census.read_raw(write(tmp_path / "no_suffix", lines, gz=True))
    assert len(plain) == len(packed) == 21
    assert table_rows(plain) == table_rows(packed)
    first = table_rows(plain)[0]
    assert first[census.COLUMNS.index("major_occ_code")] == "Machine operators assmblrs & inspctrs"
    assert first[census.COLUMNS.index("citizenship")] == "Foreign born- Not a citizen of U S"
    assert first[census.COLUMNS.index("instance_weight")] == "614.61"
    assert plain.labels()[0].tolist() == [1.0, 1.0]  # 50000+. and Never married
    assert plain.line_numbers[:3].tolist() == [1, 2, 3]


def test_crlf_and_blank_lines_are_counted(tmp_path):
    lines = synth_lines(3, seed=1)
    crlf = [line.replace("\n", "\r\n") for line in lines]
    table = census.read_raw(write(tmp_path / "t.data", crlf[:2] + ["  \n"] + crlf[2:] + ["\n"]))
    assert len(table) == 3 and table.blank_lines == 2
    assert table.line_numbers.tolist() == [1, 2, 4]


@pytest.mark.parametrize("case, expected", [
    ("columns", "line 2: expected 42 comma-separated fields, found 41"),
    ("number", "line 2: column 'age' holds 'abc'"),
    ("label", "line 2: column 'income_50k' holds '50000-.'"),
    ("empty", "no rows"),
    ("blank_only", "no rows"),
])
def test_malformed_text_is_reported_with_file_and_line(tmp_path, case, expected):
    good = synth_lines(3, seed=2)
    bad = {
        "columns": lambda: good[:1] + [good[1].replace(", ", ",", 1).split(",", 1)[1]] + good[2:],
        "number": lambda: good[:1] + [set_field(good[1], "age", "abc")] + good[2:],
        "label": lambda: good[:1] + [set_field(good[1], "income_50k", "50000-.")] + good[2:],
        "empty": lambda: [],
        "blank_only": lambda: ["\n", "\n"],
    }[case]()
    path = write(tmp_path / "census-income.data", bad)
    with pytest.raises(CensusFormatError) as err:
        census.read_raw(path)
    assert "census-income.data" in str(err.value) and expected in str(err.value)


def test_corrupt_gzip_is_reported_with_file_name(tmp_path):
    data = gzip.compress("".join(synth_lines(200, seed=3)).encode())
    truncated = tmp_path / "census-income.test.gz"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(CensusFormatError, match="census-income.test.gz.*truncated or corrupt"):
        census.read_raw(str(truncated))
    empty_gz = tmp_path / "empty.gz"
    empty_gz.write_bytes(gzip.compress(b""))
    with pytest.raises(CensusFormatError, match="empty.gz: no rows"):
        census.read_raw(str(empty_gz))
    zero_bytes = tmp_path / "zero.data.gz"
    zero_bytes.write_bytes(b"")
    with pytest.raises(CensusFormatError, match="zero.data.gz: no rows"):
        census.read_raw(str(zero_bytes))
    header_only = tmp_path / "header.gz"
    header_only.write_bytes(data[:12])
    with pytest.raises(CensusFormatError, match="header.gz"):
        census.read_raw(str(header_only))


# ---------------------------------------------------------------- encoding

def fitted(lines, tmp_path, name="train.data", **kw):
    table = census.read_raw(write(tmp_path / name, lines))
    return table, census.fit_feature_map(table, **kw)


def test_feature_map_layout_and_json(tmp_path):
    table, fmap = fitted(synth_lines(500, seed=4), tmp_path)
    json.loads(json.dumps(fmap))
    assert fmap["tasks"] == ["income", "marital"]
    names = [f["name"] for f in fmap["categorical"]]
    assert names == list(census.CATEGORICAL_COLUMNS)
    assert "marital_stat" not in names and "income_50k" not in names
    offsets = np.cumsum([0] + [len(f["vocab"]) for f in fmap["categorical"]])
    assert [f["offset"] for f in fmap["categorical"]] == offsets[:-1].tolist()
    for f in fmap["categorical"]:
        assert f["vocab"] == sorted(set(table.column(f["name"])))
    assert [f["name"] for f in fmap["numeric"]] == [c for c in census.NUMERIC_COLUMNS
                                                   if c != "instance_weight"]
    assert fmap["input_dim"] == offsets[-1] + 10
    assert fmap["columns"] == {"cat": {"dtype": "int32", "width": 29},
                               "num": {"dtype": "float32", "width": 10},
                               "label": {"dtype": "float32", "width": 2}}
    enc = census.encode(table, fmap)
    assert enc["cat"].dtype == np.int32 and enc["num"].dtype == np.float32
    np.testing.assert_allclose(enc["num"].mean(0), 0, atol=1e-4)
    assert np.all((enc["num"].std(0) > 0.99) | (enc["num"].std(0) == 0))


def test_instance_weight_only_with_the_switch(tmp_path):
    lines = synth_lines(300, seed=5)
    _, default = fitted(lines, tmp_path)
    _, kept = fitted(lines, tmp_path, keep_instance_weight=True)
    assert kept["input_dim"] == default["input_dim"] + 1
    assert "instance_weight" not in [f["name"] for f in default["numeric"]]
    assert [f["name"] for f in kept["numeric"]] == list(census.NUMERIC_COLUMNS)
    assert kept["columns"]["num"]["width"] == 11


def test_columns_stay_aligned_for_missing_and_new_test_categories(tmp_path):
    train_lines = synth_lines(400, seed=6)
    # a category that sorts first in its field, present in train only
    train_lines[0] = set_field(train_lines[0], "det_hh_fam_stat", "AAA only in train")
    train, fmap = fitted(train_lines, tmp_path)
    test_lines = train_lines[1:50] + [set_field(train_lines[1], "education", "Brand new degree")]
    test = census.read_raw(write(tmp_path / "test.data", test_lines))
    enc_train, enc_test = census.encode(train, fmap), census.encode(test, fmap)
    # the same raw row encodes identically in train and in test
    np.testing.assert_array_equal(enc_test["cat"][:49], enc_train["cat"][1:50])
    np.testing.assert_array_equal(enc_test["num"][:49], enc_train["num"][1:50])
    np.testing.assert_array_equal(enc_test["label"][:49], enc_train["label"][1:50])
    # the new category gives -1 in its own field only, then an all-zero field
    edu = census.CATEGORICAL_COLUMNS.index("education")
    new = enc_test["cat"][49]
    assert new[edu] == -1
    np.testing.assert_array_equal(np.delete(new, edu), np.delete(enc_train["cat"][1], edu))
    spec = fmap["categorical"][edu]
    dense = census.to_dense(enc_test["cat"][49:], enc_test["num"][49:], fmap["input_dim"])
    assert dense[0, spec["offset"]:spec["offset"] + len(spec["vocab"])].sum() == 0
    assert dense[0, :fmap["input_dim"] - 10].sum() == 28
    # vocabularies come from train only
    assert "Brand new degree" not in spec["vocab"]
    assert "AAA only in train" in fmap["categorical"][census.CATEGORICAL_COLUMNS.index(
        "det_hh_fam_stat")]["vocab"]


def test_to_dense_sets_the_right_columns():
    cat = np.array([[0, 3, -1], [2, -1, 5]], dtype=np.int32)
    num = np.array([[0.5, -1.0], [2.0, 3.0]], dtype=np.float32)
    dense = census.to_dense(cat, num, 8)
    expected = np.array([[1, 0, 0, 1, 0, 0, 0.5, -1.0],
                         [0, 0, 1, 0, 0, 1, 2.0, 3.0]], dtype=np.float32)
    assert dense.dtype == np.float32
    np.testing.assert_array_equal(dense, expected)
    assert census.to_dense(np.full((1, 3), -1), num[:1], 8)[0, :6].sum() == 0
    with pytest.raises(ValueError):
        census.to_dense(np.array([[6]]), num[:1], 8)


# ---------------------------------------------------------------- conversion

@pytest.fixture(scope="module")
def raw_dir(tmp_path_factory):
    base = tmp_path_factory.mktemp("raw")
    train = synth_lines(1500, seed=7)
    test = synth_lines(601, seed=8)
    # unique sampling weights identify the test rows after conversion
    test = [set_field(line, "instance_weight", f"{5000 + i}.25") for i, line in enumerate(test)]
    write(base / "Census-income.data.gz", train, gz=True)  # case as in the upstream README
    write(base / "census-income.test", test)
    return base


def convert(raw_dir, out, **kw):
    kw.setdefault("keep_instance_weight", True)
    return census.convert(str(raw_dir), str(out), block_rows=128, **kw)


def test_conversion_writes_splits_and_feature_map(raw_dir, tmp_path, capsys):
    out = tmp_path / "mr"
    fmap = convert(raw_dir, out)
    assert "read 1500 rows" in capsys.readouterr().out
    for split in ("train", "val", "test"):
        assert os.path.isfile(split_file(str(out), split))
    assert census.load_feature_map(str(out)) == json.loads(json.dumps(fmap))
    assert fmap["splits"] == {"train": 1500, "val": 300, "test": 301}
    assert fmap["options"]["train_file"] == "Census-income.data.gz"
    data = {s: read_split(str(out), s) for s in ("train", "val", "test")}
    for split, arrays in data.items():
        assert len(arrays["cat"]) == fmap["splits"][split]
        assert arrays["cat"].shape[1] == 29 and arrays["num"].shape[1] == 11
    # train records equal the encoding of the train file, in file order
    train = census.read_raw(str(raw_dir / "Census-income.data.gz"))
    expected = census.encode(train, fmap)
    for name in ("cat", "num", "label"):
        np.testing.assert_array_equal(data["train"][name], expected[name])
    # val and test are disjoint halves of the test file
    iw = census.NUMERIC_COLUMNS.index("instance_weight")
    spec = fmap["numeric"][iw]

    def ids(arrays):
        return np.round(arrays["num"][:, iw] * spec["std"] + spec["mean"] - 5000.25).astype(int)
    val_ids, test_ids = ids(data["val"]), ids(data["test"])
    assert sorted(val_ids.tolist() + test_ids.tolist()) == list(range(601))
    # same seed, same split; another seed, another split
    again = tmp_path / "again"
    convert(raw_dir, again)
    np.testing.assert_array_equal(ids(read_split(str(again), "val")), val_ids)
    other = tmp_path / "other"
    convert(raw_dir, other, seed=2)
    assert not np.array_equal(ids(read_split(str(other), "val")), val_ids)


def test_statistics_come_from_train_only(raw_dir, tmp_path):
    base = convert(raw_dir, tmp_path / "a")
    changed = tmp_path / "raw2"
    changed.mkdir()
    (changed / "census-income.data.gz").write_bytes((raw_dir / "Census-income.data.gz").read_bytes())
    lines = (raw_dir / "census-income.test").read_text().splitlines(keepends=True)
    lines = [set_field(set_field(line, "age", "90"), "race", "Martian") for line in lines]
    write(changed / "census-income.test.gz", lines, gz=True)
    other = convert(changed, tmp_path / "b")
    for key in ("categorical", "numeric", "input_dim", "columns"):
        assert base[key] == other[key]
    race = census.CATEGORICAL_COLUMNS.index("race")
    assert (read_split(str(tmp_path / "b"), "test")["cat"][:, race] == -1).all()


def test_missing_inputs_give_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="census-income.data.gz or census-income.data"):
        census.convert(str(tmp_path), str(tmp_path / "out"))
    with pytest.raises(FileNotFoundError, match="run the converter first"):
        census.load_feature_map(str(tmp_path))
    # a crowded folder is named in short: the first ten files and how many more
    crowded = tmp_path / "crowded"
    crowded.mkdir()
    for i in range(25):
        (crowded / f"f{i:02d}.txt").write_text("")
    with pytest.raises(FileNotFoundError, match=r"holds f00.txt, .*, f09.txt and 15 more$"):
        census.convert(str(crowded), str(tmp_path / "out"))


# ---------------------------------------------------------------- generator

def test_generator_format_labels_and_determinism(tmp_path):
    a = census_synth.generate(str(tmp_path / "a.data.gz"), 300, seed=11)
    b = census_synth.generate(str(tmp_path / "b.data.gz"), 300, seed=11)
    c = census_synth.generate(str(tmp_path / "c.data"), 300, seed=12)
    assert open(a, "rb").read() == open(b, "rb").read()
    assert open(a, "rb").read(2) == b"\x1f\x8b" and open(c, "rb").read(2) != b"\x1f\x8b"
    text = gzip.decompress(open(a, "rb").read()).decode()
    lines = text.splitlines()
    assert len(lines) == 300 and all(line.count(", ") == 41 for line in lines)
    assert {line.rsplit(", ", 1)[1] for line in lines} == {"- 50000.", "50000+."}
    table = census.read_raw(a)
    assert len(table) == 300
    assert set(table.column("marital_stat")) >= {"Never married", "Married-civilian spouse present"}
    assert set(table.column("income_50k")) == {"- 50000.", "50000+."}
    for name in census.NUMERIC_COLUMNS:
        if name != "instance_weight":
            values = table.column(name)
            assert np.array_equal(values, np.round(values)), name
    assert table_rows(census.read_raw(c)) != table_rows(table)


def test_generate_dataset_and_cli(tmp_path, capsys):
    assert census_synth.main(["--output_dir", str(tmp_path), "--train_rows", "200",
                              "--test_rows", "100", "--seed", "3"]) == 0
    assert "census-income.test.gz" in capsys.readouterr().out
    test = census.read_raw(str(tmp_path / census_synth.TEST_FILE))
    column, value = census_synth.DROPPED_TEST_CATEGORY
    assert value not in test.column(column)
    first = (tmp_path / census_synth.TRAIN_FILE).read_bytes()
    census_synth.generate_dataset(str(tmp_path), 200, 100, seed=3)
    assert (tmp_path / census_synth.TRAIN_FILE).read_bytes() == first
    with pytest.raises(SystemExit) as done:
        census_synth.main(["--help"])
    assert done.value.code == 0


def test_generated_labels_are_learnable(tmp_path):
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    train_path, test_path = census_synth.generate_dataset(str(tmp_path), 4000, 2000, seed=1)
    train, test = census.read_raw(train_path), census.read_raw(test_path)
    fmap = census.fit_feature_map(train)
    enc_train, enc_test = census.encode(train, fmap), census.encode(test, fmap)
    x_train = census.to_dense(enc_train["cat"], enc_train["num"], fmap["input_dim"])
    x_test = census.to_dense(enc_test["cat"], enc_test["num"], fmap["input_dim"])
    rates = enc_test["label"].mean(0)
    assert 0.02 < rates[0] < 0.15 and 0.3 < rates[1] < 0.55, rates
    for task in range(2):
        model = LogisticRegression(max_iter=1000).fit(x_train, enc_train["label"][:, task])
        auc = roc_auc_score(enc_test["label"][:, task], model.predict_proba(x_test)[:, 1])
        assert auc > 0.8, (census.TASKS[task], auc)
