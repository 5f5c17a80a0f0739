"""Census-Income's input options (log1p money columns, numeric buckets), the
splitter that makes a train/test pair from one real file, and the classical
baselines. All input files are written by the tests themselves."""
import gzip
import json
import os

import numpy as np
import pytest

from src.data import census, census_numeric, census_split
from tests.test_census_data import fitted, read_split, set_field, synth_lines, write


def test_log1p_touches_only_the_money_columns(tmp_path):
    table, plain = fitted(synth_lines(800, seed=1), tmp_path)
    _, logged = fitted(synth_lines(800, seed=1), tmp_path, numeric_transform="log1p")
    assert logged["input_dim"] == plain["input_dim"]
    enc = census.encode(table, logged)
    for j, (a, b) in enumerate(zip(plain["numeric"], logged["numeric"])):
        raw = table.numbers[a["name"]]
        if a["name"] in census_numeric.HEAVY_TAILED:
            assert b["transform"] == "log1p"
            x = np.log1p(raw)                               # the columns are non-negative
            np.testing.assert_allclose(enc["num"][:, j], (x - x.mean()) / x.std(), rtol=1e-4,
                                       atol=1e-5)
        else:
            assert b == a                                   # untouched, same statistics
    np.testing.assert_allclose(census_numeric.transformed([-9.0, 0.0, 9.0], {"transform": "log1p"}),
                               [-np.log(10), 0.0, np.log(10)])


def test_buckets_are_train_quantiles_with_a_bucket_for_the_common_value(tmp_path):
    table, fmap = fitted(synth_lines(2000, seed=2), tmp_path, numeric_buckets=8)
    n_fields = len(census.CATEGORICAL_COLUMNS)
    specs = fmap["numeric"]
    assert all("buckets" in s for s in specs)
    widths = [len(s["buckets"]["edges"]) + 1 for s in specs]
    first = specs[0]["buckets"]["offset"]
    cat_end = max(f["offset"] + len(f["vocab"]) for f in fmap["categorical"])
    assert first == cat_end
    assert [s["buckets"]["offset"] for s in specs] == (first + np.cumsum([0] + widths[:-1])).tolist()
    assert fmap["input_dim"] == first + sum(widths) + len(specs)
    assert fmap["columns"]["cat"]["width"] == n_fields + len(specs)

    enc = census.encode(table, fmap)
    assert enc["cat"].shape == (2000, n_fields + len(specs))
    for j, spec in enumerate(specs):
        col = enc["cat"][:, n_fields + j] - spec["buckets"]["offset"]
        assert col.min() >= 0 and col.max() <= len(spec["buckets"]["edges"])
        raw = table.numbers[spec["name"]]
        # ordered: a larger value never falls in a lower bucket
        order = np.argsort(raw, kind="stable")
        assert np.all(np.diff(col[order]) >= 0)
    gains = next(j for j, s in enumerate(specs) if s["name"] == "capital_gains")
    col = enc["cat"][:, n_fields + gains]
    zero = table.numbers["capital_gains"] == 0
    assert zero.mean() > 0.5
    assert len(set(col[zero])) == 1 and not np.isin(col[~zero], col[zero]).any()
    assert len(set(col[~zero])) >= 4                    # the rest is cut at its own quantiles
    dense = census.to_dense(enc["cat"], enc["num"], fmap["input_dim"])
    assert dense.shape == (2000, fmap["input_dim"])
    assert np.all(dense[:, :fmap["input_dim"] - len(specs)].sum(1)
                  <= n_fields + len(specs))              # one hot per field at most


def test_a_column_of_few_values_gets_a_bucket_per_value_and_cuts_are_its_values():
    rng = np.random.default_rng(0)
    # a survey code 0/1/2 whose rare middle value sits between the quantiles
    codes = rng.choice([0.0, 1.0, 2.0], size=5000, p=[0.25, 0.01, 0.74])
    edges = census_numeric.bucket_edges(codes, 20)
    assert edges == [0.0, 1.0, 2.0]
    assert np.searchsorted(edges, [0.0, 1.0, 2.0], side="right").tolist() == [1, 2, 3]
    # many integer values: every cut point but the common value's end is a value of
    # the column, so no bucket lies between two neighbouring values
    ages = rng.integers(0, 91, size=5000).astype(np.float64)
    ages[:2000] = 0.0
    edges = census_numeric.bucket_edges(ages, 20)
    assert 10 <= len(edges) <= 40 and edges == sorted(set(edges))
    assert set(edges) - set(ages) == {float(np.nextafter(0.0, 1.0))}
    used = np.unique(np.searchsorted(edges, ages, side="right"))
    assert used.tolist() == list(range(1, len(edges) + 1))          # no empty bucket


def test_upstream_layout_is_the_default_and_bad_options_are_refused(tmp_path):
    table, fmap = fitted(synth_lines(300, seed=3), tmp_path)
    assert all(set(s) == {"name", "mean", "std"} for s in fmap["numeric"])
    assert fmap["options"]["numeric_transform"] == "standard"
    assert fmap["options"]["numeric_buckets"] == 0
    with pytest.raises(ValueError, match="numeric_transform must be one of"):
        census.fit_feature_map(table, numeric_transform="log")
    with pytest.raises(ValueError, match="numeric_buckets must be 0"):
        census.fit_feature_map(table, numeric_buckets=1)


def test_a_converted_data_set_keeps_its_buckets_for_val_and_test(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    write(raw / "census-income.data", synth_lines(600, seed=4))
    write(raw / "census-income.test", synth_lines(300, seed=5))
    fmap = census.convert(str(raw), str(tmp_path / "mr"), numeric_transform="log1p",
                          numeric_buckets=5, block_rows=128)
    again = census.load_feature_map(str(tmp_path / "mr"))
    assert again["numeric"] == fmap["numeric"] and again["input_dim"] == fmap["input_dim"]
    assert again["options"]["numeric_buckets"] == 5


# ---------------------------------------------------------------- splitter

@pytest.mark.parametrize("gz", [False, True])
def test_split_is_complete_disjoint_seeded_and_line_exact(tmp_path, gz):
    lines = synth_lines(101, seed=6)
    source = write(tmp_path / ("all.gz" if gz else "all"), lines[:50] + ["  \n"] + lines[50:], gz=gz)
    parts = census_split.split_file(source, str(tmp_path / "out"), test_fraction=0.3, seed=4)
    assert {k: v[1] for k, v in parts.items()} == {"train": 71, "test": 30}
    read = {k: gzip.open(v[0], "rt").readlines() for k, v in parts.items()}
    assert sorted(read["train"] + read["test"]) == sorted(lines)      # blank line dropped
    assert not set(read["train"]) & set(read["test"])
    # rows keep their file order within a part
    assert read["test"] == sorted(read["test"], key=lines.index)
    again = census_split.split_file(source, str(tmp_path / "again"), test_fraction=0.3, seed=4)
    for part in parts:
        with open(parts[part][0], "rb") as a, open(again[part][0], "rb") as b:
            assert a.read() == b.read()                              # byte-identical
    other = census_split.split_file(source, str(tmp_path / "other"), test_fraction=0.3, seed=5)
    assert other["test"][2] != parts["test"][2]
    assert not [f for f in os.listdir(tmp_path / "out") if f.endswith(".partial")]
    # the converter reads the pair as UCI's two files
    table = census.read_raw(parts["train"][0])
    assert len(table) == 71


def test_split_errors_and_cli(tmp_path, capsys):
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        census_split.split_lines(10, 1.0, 0)
    with pytest.raises(ValueError, match="cannot be split"):
        census_split.split_lines(2, 0.1, 0)
    empty = write(tmp_path / "empty", ["\n", "  \n"])
    with pytest.raises(ValueError, match="no rows"):
        census_split.split_file(empty, str(tmp_path / "o"))
    # a file the converter would refuse is refused before anything is written, by line
    lines = synth_lines(20, seed=7)
    wrong = write(tmp_path / "wrong", lines[:3] + ["a,b,c\n"] + lines[3:])
    with pytest.raises(ValueError, match="line 4: expected 42 comma-separated fields, found 3"):
        census_split.split_file(wrong, str(tmp_path / "w"))
    packed = open(write(tmp_path / "all.gz", lines * 20, gz=True), "rb").read()
    with open(tmp_path / "cut.gz", "wb") as fh:
        fh.write(packed[:len(packed) // 2])
    with pytest.raises(ValueError, match="truncated or corrupt gzip data"):
        census_split.split_file(str(tmp_path / "cut.gz"), str(tmp_path / "c"))
    assert not os.path.exists(tmp_path / "w") and not os.path.exists(tmp_path / "c")
    with pytest.raises(FileNotFoundError, match="no such file"):
        census_split.main(["--input", str(tmp_path / "missing"), "--output_dir", str(tmp_path)])
    source = write(tmp_path / "all", synth_lines(20, seed=7))
    census_split.main(["--input", source, "--output_dir", str(tmp_path / "cli"),
                       "--test_fraction", "0.25"])
    out = capsys.readouterr().out
    assert "train: 15 rows" in out and "test: 5 rows" in out


# ---------------------------------------------------------------- baselines

def test_baselines_learn_the_generated_signal(tmp_path, capsys):
    from src import baselines
    from src.datasets import CENSUS
    raw = tmp_path / "raw"
    raw.mkdir()
    write(raw / "census-income.data", synth_lines(3000, seed=8))
    write(raw / "census-income.test", synth_lines(2000, seed=9))
    census.convert(str(raw), str(tmp_path / "mr"), block_rows=256)
    results = baselines.run(CENSUS, str(tmp_path / "mr"), seed=0, names=("logistic_regression",),
                            breakdown="det_hh_fam_stat")
    assert set(results) == {"logistic_regression/income", "logistic_regression/marital"}
    for row in results.values():
        assert row["C"] in baselines.LOGISTIC_C
        assert 0.8 < row["val_auc"] <= 1.0 and 0.8 < row["test_auc"] <= 1.0
        shares = row["breakdown"]["det_hh_fam_stat"]
        assert sum(g["rows"] for g in shares.values()) == 1000      # half of the test file
        assert sum(g["as_negative"] for g in shares.values()) == pytest.approx(1.0)
    json.dumps(results, allow_nan=False)        # a one-class group's AUC is None, not NaN
    out = capsys.readouterr().out
    assert "logistic_regression income: val auc" in out
    assert "logistic_regression marital: mis-ordered validation pairs by det_hh_fam_stat" in out
    with pytest.raises(ValueError, match="no categorical field 'nope'.*det_hh_fam_stat"):
        baselines.run(CENSUS, str(tmp_path / "mr"), names=(), breakdown="nope")


def test_baselines_refit_on_train_and_val_together(tmp_path, capsys):
    """--refit: the chosen setting fitted again on train + val rows, scored on
    test; the same figure as a model fitted on the two splits by hand."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from src import baselines
    from src.datasets import CENSUS
    raw = tmp_path / "raw"
    raw.mkdir()
    write(raw / "census-income.data", synth_lines(2000, seed=3))
    write(raw / "census-income.test", synth_lines(1200, seed=4))
    census.convert(str(raw), str(tmp_path / "mr"), block_rows=256, val_source="train",
                   val_fraction=0.25)
    results = baselines.run(CENSUS, str(tmp_path / "mr"), seed=0, names=("logistic_regression",),
                            refit=True)
    fmap = CENSUS.load_feature_map(str(tmp_path / "mr"))
    train, val, test = (baselines.load_split(CENSUS, str(tmp_path / "mr"), s, fmap)
                        for s in ("train", "val", "test"))
    assert len(train.x) == 1500 and len(val.x) == 500 and len(test.x) == 1200
    for t, task in enumerate(("income", "marital")):
        row = results[f"logistic_regression/{task}"]
        by_hand = LogisticRegression(C=row["C"], max_iter=2000, random_state=0).fit(
            np.concatenate([train.x, val.x]), np.concatenate([train.labels[:, t], val.labels[:, t]]))
        expected = roc_auc_score(test.labels[:, t], by_hand.predict_proba(test.x)[:, 1])
        assert row["refit_test_auc"] == pytest.approx(expected, abs=1e-12)
        assert 0.8 < row["refit_test_auc"] <= 1.0
    assert "fitted on train and val: test auc" in capsys.readouterr().out
    assert "refit_test_auc" not in baselines.run(
        CENSUS, str(tmp_path / "mr"), names=("logistic_regression",))["logistic_regression/income"]


def test_breakdown_field_values_name_unseen_values():
    from src.data.census import field_values
    fmap = {"categorical": [{"name": "a", "vocab": ["x", "y"], "offset": 0},
                            {"name": "b", "vocab": ["p", "q", "r"], "offset": 2}]}
    cat = np.array([[0, 4], [1, -1], [-1, 2]])
    assert list(field_values(fmap, {"cat": cat}, "b")) == ["r", "(unseen)", "p"]
    assert list(field_values(fmap, {"cat": cat}, "a")) == ["x", "y", "(unseen)"]


def test_validation_rows_from_the_training_file(tmp_path):
    """val_source train: val is a seeded share of the training file, disjoint
    from train, and the test file stays whole; the statistics see train only."""
    raw = tmp_path / "raw"
    raw.mkdir()
    train_lines = [set_field(line, "instance_weight", f"{1000 + i}.5")
                   for i, line in enumerate(synth_lines(400, seed=10))]
    write(raw / "census-income.data", train_lines)
    write(raw / "census-income.test", synth_lines(150, seed=11))
    fmap = census.convert(str(raw), str(tmp_path / "mr"), val_source="train", val_fraction=0.25,
                          keep_instance_weight=True, block_rows=64)
    assert fmap["splits"] == {"train": 300, "val": 100, "test": 150}
    assert fmap["options"]["val_source"] == "train"
    assert fmap["options"]["raw_rows"] == {"train": 400, "test": 150}
    weight = [s for s in fmap["numeric"] if s["name"] == "instance_weight"][0]
    ids = {}
    for split in ("train", "val"):
        num = read_split(str(tmp_path / "mr"), split)["num"]
        col = [s["name"] for s in fmap["numeric"]].index("instance_weight")
        ids[split] = set(np.round(num[:, col] * weight["std"] + weight["mean"] - 1000.5).astype(int))
    assert ids["train"].isdisjoint(ids["val"]) and ids["train"] | ids["val"] == set(range(400))
    train_ids = np.array(sorted(ids["train"])) + 1000.5
    assert weight["mean"] == pytest.approx(train_ids.mean())          # fitted on train only
    with pytest.raises(ValueError, match="val_source must be one of"):
        census.convert(str(raw), str(tmp_path / "bad"), val_source="val")


# ---------------------------------------------------------------- per-field embeddings

def test_field_embedding_matches_per_field_lookups(tmp_path):
    from mindspore import Tensor
    from src.datasets.census import fields_of, input_layer
    from types import SimpleNamespace
    table, fmap = fitted(synth_lines(400, seed=12), tmp_path, numeric_buckets=4)
    enc = census.encode(table, fmap)
    enc["cat"][0, 3] = -1                                   # a category unseen in train
    x = census.to_dense(enc["cat"], enc["num"], fmap["input_dim"])
    cfg = SimpleNamespace(field_embedding_dim=3, init="normal", init_scale=0.5)
    layer, width = input_layer(cfg, fmap)
    fields, n_num = fields_of(fmap)
    assert len(fields) == len(census.CATEGORICAL_COLUMNS) + len(fmap["numeric"]) == enc["cat"].shape[1]
    assert width == len(fields) * 3 + n_num == layer.output_dim
    got = layer(Tensor(x)).asnumpy()
    weight = layer.weight.asnumpy()
    for f, (offset, size) in enumerate(fields):
        rows = weight[enc["cat"][:, f], f * 3:(f + 1) * 3]       # the row of each category
        rows[enc["cat"][:, f] < 0] = 0.0                         # unseen: zeros
        np.testing.assert_allclose(got[:, f * 3:(f + 1) * 3], rows, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got[:, -n_num:], enc["num"], rtol=1e-6)
    assert input_layer(SimpleNamespace(field_embedding_dim=0), fmap) == (None, fmap["input_dim"])
    with pytest.raises(ValueError, match="field_embedding_dim must be 0"):
        input_layer(SimpleNamespace(field_embedding_dim=-1), fmap)


def test_field_embedding_trains_only_its_blocks():
    from mindspore import Tensor, nn
    from src.layers.fields import FieldEmbedding
    from src.layers.initializers import make_initializer
    layer = FieldEmbedding([(0, 3), (3, 2)], 1, 2, make_initializer("normal", 0.5))
    off_block = layer.mask.asnumpy() == 0
    assert np.all(layer.weight.asnumpy()[off_block] == 0)
    loss = nn.WithLossCell(layer, nn.MSELoss())
    step = nn.TrainOneStepCell(loss, nn.Adam(layer.trainable_params(), learning_rate=0.1))
    x = Tensor(np.eye(6, dtype=np.float32)[[0, 4, 2, 3]] + np.eye(6, dtype=np.float32)[[3, 3, 4, 4]])
    for _ in range(3):
        step(x, Tensor(np.ones((4, 5), np.float32)))
    assert np.all(layer.weight.asnumpy()[off_block] == 0)
    out = layer(Tensor(np.array([[0, 0, 0, 0, 0, 7.0]], np.float32))).asnumpy()
    np.testing.assert_allclose(out, [[0, 0, 0, 0, 7.0]])           # the numeric passes through
    with pytest.raises(ValueError, match="fields overlap"):
        FieldEmbedding([(0, 3), (2, 2)], 1, 2, make_initializer("normal", 0.5))
