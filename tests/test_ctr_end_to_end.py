"""DLRM and DeepFM from generated Criteo files to evaluated and exported
checkpoints, through the real entry points on CPU."""
import json
import os

import numpy as np
import pytest

import export as export_entry
import prepare_data
import preprocess as preprocess_entry
import train as train_entry
from src.data import criteo_synth
from src.engine import checkpoint
from src.engine.callbacks import read_metrics_log
from src.infer_io import read_manifest
from infer_parity import assert_postprocess_matches_eval, run_mindir

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CPU_CONFIG = os.path.join(ROOT, "default_config_cpu.yaml")
DLRM = ["--model", "dlrm", "--embedding_dim", "8", "--bottom_units", "32,8", "--top_units", "32",
        "--batch_size", "256", "--learning_rate", "0.2", "--log_every_steps", "1000"]
DEEPFM = ["--model", "deepfm", "--embedding_dim", "8", "--deep_units", "32,32", "--batch_size", "300",
          "--learning_rate", "0.003", "--log_every_steps", "1000", "--embedding_l2", "1e-5"]


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


def test_sparse_resume_continues_exactly(dlrm_data, tmp_path):
    """The table, the row optimizer's moments and its step counter are part of
    the training state: 1 epoch + resume to 2 equals 2 epochs in one go."""
    args = DLRM + ["--optimizer", "adam", "--learning_rate", "0.003"]
    assert _train(dlrm_data, tmp_path / "a", args, "--epoch_size", "2") == 0
    assert _train(dlrm_data, tmp_path / "b", args, "--epoch_size", "1") == 0
    assert _train(dlrm_data, tmp_path / "b", args, "--epoch_size", "2", "--resume", "True") == 0
    name = [f for f in os.listdir(tmp_path / "a") if f.startswith("dlrm-2_")][0]
    full, _ = checkpoint.read_checkpoint(str(tmp_path / "a" / name))
    resumed, _ = checkpoint.read_checkpoint(str(tmp_path / "b" / name))
    keys = {"embedding.weight", "row_moments", "row_step", "bottom.layers.0.weight"}
    assert keys <= set(full), sorted(full)
    for key in keys:
        np.testing.assert_allclose(resumed[key].asnumpy(), full[key].asnumpy(), rtol=1e-5, atol=1e-7)


def test_deepfm_export_and_inference_files_match_eval(raw, tmp_path, monkeypatch):
    data = _prepare(raw[0], tmp_path / "mr", "deepfm", "--min_count", "3")
    out = tmp_path / "run"
    assert _train(data, out, DEEPFM, "--epoch_size", "2", "--dropout", "0.1") == 0
    val = read_metrics_log(str(out / "metrics.jsonl"))[-1]["val"]
    assert val["click_auc"] > 0.7, val
    monkeypatch.chdir(tmp_path)
    ckpt = str(out / "best_click_auc.ckpt")
    common = ["--config_path", CPU_CONFIG, "--data_path", data, "--export_batch_size", "100"] + DEEPFM
    assert export_entry.main(common + ["--ckpt_file", ckpt, "--file_name", "dfm"]) == 0
    assert preprocess_entry.main(common + ["--infer_data_path", "pre"]) == 0
    manifest = read_manifest("pre")
    assert [i["name"] for i in manifest["inputs"]] == ["cat", "dense"]
    assert manifest["inputs"][0] == {"name": "cat", "dtype": "int32", "shape": [100, 26]}
    run_mindir("dfm.mindir", "pre", "results")
    post = assert_postprocess_matches_eval("pre", "results", common, ckpt)
    assert {"click_auc", "click_logloss"} <= set(post)
