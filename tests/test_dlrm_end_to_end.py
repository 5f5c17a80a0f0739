"""DLRM on generated Criteo files, through the real entry points on CPU: it
learns close to what the generator allows (its Bayes AUC). Resume, export and
inference are the registry contract's (test_registry_contract.py)."""
import json
import os

import numpy as np
import pytest

import prepare_data
import train as train_entry
from src.synth import criteo as criteo_synth
from src.engine import checkpoint
from src.engine.callbacks import read_metrics_log

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CPU_CONFIG = os.path.join(ROOT, "default_config_cpu.yaml")
DLRM = ["--model", "dlrm", "--embedding_dim", "8", "--bottom_units", "32,8", "--top_units", "32",
        "--batch_size", "256", "--learning_rate", "0.2", "--log_every_steps", "1000"]


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    out = tmp_path_factory.mktemp("criteo_raw")
    criteo_synth.main(["--output_dir", str(out), "--rows", "24000", "--seed", "5"])
    with open(out / "synth_info.json") as fh:
        return str(out), json.load(fh)["bayes_auc"]


def _prepare(raw_dir, out, model, *extra):
    assert prepare_data.main(["--config_path", CPU_CONFIG, "--model", model, "--raw_data_path",
                              raw_dir, "--data_path", str(out)] + list(extra)) == 0
    return str(out)


@pytest.fixture(scope="module")
def dlrm_data(raw, tmp_path_factory):
    return _prepare(raw[0], tmp_path_factory.mktemp("dlrm_mr"), "dlrm", "--split", "random")


def _train(data, out, args, *extra):
    return train_entry.main(["--config_path", CPU_CONFIG, "--data_path", data,
                             "--output_path", str(out)] + args + list(extra))


def test_dlrm_learns_close_to_what_the_generator_allows(raw, dlrm_data, tmp_path):
    assert _train(dlrm_data, tmp_path, DLRM, "--epoch_size", "3") == 0
    log = read_metrics_log(str(tmp_path / "metrics.jsonl"))
    auc = max(r["val"]["click_auc"] for r in log)
    assert auc > 0.72 and auc > raw[1] - 0.1, (auc, raw[1])
    _, meta = checkpoint.read_checkpoint(str(tmp_path / "best_click_auc.ckpt"))
    assert meta["model"] == "dlrm"


def test_sparse_steps_several_per_call_train_as_one_per_call(dlrm_data, tmp_path, monkeypatch):
    """DLRM's sparse step (rows in 256 buckets, updated in place) at 4 steps a
    graph call against 1: the same table, dense weights and optimizer state
    after an epoch, whose calls pad their batches' rows to the longest."""
    from src.engine import trainer
    lengths, same_rows = [], trainer.same_rows

    def recorded(group, scratch_row):
        padded = same_rows(group, scratch_row)
        lengths.append(([len(b[0]) for b in group], {len(b[0]) for b in padded}))
        return padded
    monkeypatch.setattr(trainer, "same_rows", recorded)
    runs = {}
    for k in ("1", "4"):
        assert _train(dlrm_data, tmp_path / k, DLRM, "--epoch_size", "1", "--steps_per_call", k,
                      "--optimizer", "adam", "--learning_rate", "0.01", "--row_buckets", "256") == 0
        ckpt = [f for f in os.listdir(tmp_path / k) if f.startswith("dlrm-1_")]
        runs[k] = checkpoint.read_checkpoint(str(tmp_path / k / ckpt[0]))
    (one, _), (four, meta) = runs["1"], runs["4"]
    # every call's batches went in at one length; some of them had to be padded
    assert lengths and all(len(after) == 1 for _, after in lengths)
    assert any(len(set(before)) > 1 for before, _ in lengths)
    assert set(one) == set(four) and "row_moments" in one and meta["global_step"] >= 8
    for name in one:
        np.testing.assert_allclose(four[name].asnumpy(), one[name].asnumpy(), rtol=1e-4,
                                   atol=1e-6, err_msg=name)
