"""DLRM on generated Criteo files, through the real entry points on CPU: it
learns close to what the generator allows (its Bayes AUC). Resume, export and
inference are the registry contract's (test_registry_contract.py)."""
import json
import os

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
