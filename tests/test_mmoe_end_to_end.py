"""MMoE from generated raw Census-Income files to evaluated checkpoints,
through the real entry points (train.py, eval.py, export.py, preprocess.py,
postprocess.py) on CPU: what is particular to it and what the engine does
(checkpoint rotation, steps per call, divergence) on its quick data. Exact
resume and the C++ path are the registry contract's (test_registry_contract.py)."""
import json
import os

import mindspore as ms
import numpy as np
import pytest

import eval as eval_entry
import export as export_entry
import prepare_data
import postprocess as postprocess_entry
import preprocess as preprocess_entry
import train as train_entry
from src.synth import census as census_synth
from src.engine import checkpoint
from src.engine.callbacks import read_metrics_log
from src.infer_io import read_manifest
from src.layers.fields import fold_from
from src.registry import get_model_spec
from infer_parity import assert_postprocess_matches_eval, run_mindir

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CPU_CONFIG = os.path.join(ROOT, "default_config_cpu.yaml")
FAST = ["--batch_size", "128", "--learning_rate", "0.01", "--warmup_epochs", "0.5",
        "--log_every_steps", "1000", "--eval_batch_size", "1024"]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    base = tmp_path_factory.mktemp("census")
    # the CPU config validates on a quarter of the training file: 6,000 train, 2,000 val rows
    census_synth.generate_dataset(str(base / "raw"), train_rows=8000, test_rows=1500, seed=5)
    assert prepare_data.main(["--config_path", CPU_CONFIG, "--raw_data_path", str(base / "raw"),
                              "--data_path", str(base / "mr")]) == 0
    return str(base / "mr")


def _train(data_dir, out, *extra):
    argv = ["--config_path", CPU_CONFIG, "--data_path", data_dir, "--output_path", str(out)]
    return train_entry.main(argv + FAST + list(extra))


@pytest.fixture(scope="module")
def trained(data_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    assert _train(data_dir, out, "--epoch_size", "3", "--keep_checkpoint_max", "2") == 0
    return out


def test_training_learns_and_keeps_best_checkpoints(trained):
    log = read_metrics_log(str(trained / "metrics.jsonl"))
    assert [r["epoch"] for r in log] == [1, 2, 3]
    assert log[-1]["train_loss"] < log[0]["train_loss"]
    val = log[-1]["val"]
    assert val["income_auc"] > 0.8 and val["marital_auc"] > 0.8, val
    files = set(os.listdir(trained))
    assert {"best_income_auc.ckpt", "best_marital_auc.ckpt", "best_avg_auc.ckpt",
            "config.yaml"} <= files
    assert sorted(f for f in files if f.startswith("mmoe-")) == ["mmoe-2_46.ckpt", "mmoe-3_46.ckpt"]
    # the best checkpoint holds the epoch with the best validation avg_auc
    best_epoch = max(log, key=lambda r: r["val"]["avg_auc"])["epoch"]
    _, meta = checkpoint.read_checkpoint(str(trained / "best_avg_auc.ckpt"))
    assert meta["epoch"] == best_epoch and meta["model"] == "mmoe"


def test_eval_reports_per_task_metrics_on_test(trained, data_dir, capsys):
    ckpt = str(trained / "best_avg_auc.ckpt")
    assert eval_entry.main(["--config_path", CPU_CONFIG, "--data_path", data_dir,
                            "--ckpt_file", ckpt, "--output_path", str(trained)]) == 0
    assert "income_auc=" in capsys.readouterr().out
    with open(trained / "eval_best_avg_auc_test.json") as fh:
        result = json.load(fh)
    assert result["split"] == "test" and result["rows"] == 1500
    assert result["metrics"]["income_auc"] > 0.8 and result["metrics"]["marital_auc"] > 0.8


def test_eval_breaks_the_auc_down_by_a_field(trained, data_dir, tmp_path, capsys):
    """--breakdown_field: per value of a categorical field, the shares of the
    mis-ordered pairs, printed and in the JSON; an unknown field is named."""
    argv = ["--config_path", CPU_CONFIG, "--data_path", data_dir, "--eval_split", "val",
            "--ckpt_file", str(trained / "best_avg_auc.ckpt"), "--output_path", str(tmp_path)]
    assert eval_entry.main(argv + ["--breakdown_field", "sex"]) == 0
    out = capsys.readouterr().out
    assert "marital: mis-ordered val pairs by sex" in out and "AUC within" in out
    with open(tmp_path / "eval_best_avg_auc_val.json") as fh:
        result = json.load(fh)
    for task in ("income", "marital"):
        shares = result["breakdown"]["sex"][task]
        assert sum(g["rows"] for g in shares.values()) == result["rows"] == 2000
        assert sum(g["as_positive"] for g in shares.values()) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="no categorical field 'sexx'"):
        eval_entry.main(argv + ["--breakdown_field", "sexx"])


def test_steps_per_call_trains_as_one_step_per_call(data_dir, tmp_path, capsys):
    """Four steps per graph call against one: the same weights, optimizer
    state and logged losses after two epochs of 46 steps (11 calls of 4 steps
    and 2 single steps each)."""
    assert _train(data_dir, tmp_path / "k1", "--epoch_size", "2", "--steps_per_call", "1") == 0
    assert "steps per graph call" not in capsys.readouterr().out
    assert _train(data_dir, tmp_path / "k4", "--epoch_size", "2", "--steps_per_call", "4") == 0
    assert "4 training steps per graph call" in capsys.readouterr().out
    one, _ = checkpoint.read_checkpoint(str(tmp_path / "k1" / "mmoe-2_46.ckpt"))
    four, meta = checkpoint.read_checkpoint(str(tmp_path / "k4" / "mmoe-2_46.ckpt"))
    assert meta["global_step"] == 92 and set(one) == set(four)
    for name in one:
        np.testing.assert_allclose(four[name].asnumpy(), one[name].asnumpy(), rtol=1e-5, atol=1e-7,
                                   err_msg=name)
    logs = [read_metrics_log(str(tmp_path / k / "metrics.jsonl")) for k in ("k1", "k4")]
    assert [r["epoch"] for r in logs[0]] == [r["epoch"] for r in logs[1]] == [1, 2]
    for a, b in zip(*logs):
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-5)


def test_fresh_run_refuses_a_used_output_path(trained, data_dir, capsys):
    with pytest.raises(ValueError, match="--resume True"):
        _train(data_dir, trained, "--epoch_size", "1")


def test_a_final_fit_trains_on_the_validation_rows_too(data_dir, tmp_path, capsys):
    """train_splits train,val: 6,000 + 2,000 rows a epoch (62 steps of 128
    where train alone gives 46), no validation and no best checkpoints; the
    last epoch's checkpoint is the result and evaluates on the test split."""
    from src.config import ConfigError
    assert _train(data_dir, tmp_path, "--epoch_size", "2", "--train_splits", "train,val") == 0
    out = capsys.readouterr().out
    assert "8000 training rows (62 steps/epoch), no validation" in out
    last = tmp_path / "mmoe-2_62.ckpt"
    assert f"checkpoint of the last epoch (the result of this run): {last}" in out
    assert not [f for f in os.listdir(tmp_path) if f.startswith("best_")]
    log = read_metrics_log(str(tmp_path / "metrics.jsonl"))
    assert [(r["epoch"], r["global_step"], r["val"]) for r in log] == [(1, 62, None), (2, 124, None)]
    assert eval_entry.main(["--config_path", CPU_CONFIG, "--data_path", data_dir,
                            "--ckpt_file", str(last)]) == 0
    with open(tmp_path / "eval_mmoe-2_62_test.json") as fh:
        metrics = json.load(fh)["metrics"]
    assert metrics["income_auc"] > 0.8 and metrics["marital_auc"] > 0.8, metrics
    for wrong in ("val", "train,train", "val,train"):
        with pytest.raises(ConfigError, match="train_splits must be train, or train,val"):
            _train(data_dir, tmp_path / "bad", "--train_splits", wrong)


def test_divergence_stops_with_a_clear_message(data_dir, tmp_path):
    from src.engine.trainer import TrainingDiverged
    with pytest.raises(TrainingDiverged, match="loss became|exceeds 1000 times"):
        _train(data_dir, tmp_path, "--epoch_size", "1", "--optimizer", "sgd",
               "--learning_rate", "1e30", "--clip_norm", "0", "--lr_schedule", "constant")
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".ckpt")]


def test_export_and_inference_files_match_eval(trained, data_dir, tmp_path, monkeypatch, capsys):
    """export.py's MindIR gives the network's outputs; preprocess.py -> an
    inference run over the .bin files -> postprocess.py gives eval.py's metrics.
    The MindIR mixes the experts in the broadcast form and eval.py in the
    CPU config's 2-D products, so this also checks that the two forms agree; its batch
    (128) is past ``fold_batch``, so the folded input is exported."""
    monkeypatch.chdir(tmp_path)
    ckpt = str(trained / "best_avg_auc.ckpt")
    params = ms.load_checkpoint(ckpt)
    width = params["expert_kernel"].shape[1] + params["gate_kernel"].shape[1]
    assert fold_from(*params["input_layer.weight"].shape, width) <= 128
    common = ["--config_path", CPU_CONFIG, "--data_path", data_dir, "--export_batch_size", "128"]
    assert export_entry.main(common + ["--ckpt_file", ckpt, "--file_name", "mmoe_bs128"]) == 0
    assert "using mixture=broadcast (training used matmul)" in capsys.readouterr().out
    assert preprocess_entry.main(common + ["--infer_data_path", "pre"]) == 0
    manifest = read_manifest("pre")
    assert manifest["rows"] == 1500 and manifest["num_batches"] == 12
    assert manifest["inputs"][0]["shape"][0] == 128
    # before the inference program has run: postprocess says what is missing and why
    with pytest.raises(FileNotFoundError, match="lacks 12 of the 12 result files .*mmoe_0_0.bin"):
        postprocess_entry.main(["--infer_data_path", "pre", "--result_path", "results"])
    run_mindir("mmoe_bs128.mindir", "pre", "results")     # the inference program
    assert_postprocess_matches_eval("pre", "results", common, ckpt, tol=1e-6)


def test_input_width_comes_from_the_feature_map(data_dir):
    spec = get_model_spec("mmoe")
    fmap = spec.load_feature_map(data_dir)
    assert spec.input_signature(fmap) == [("x", np.float32, (fmap["input_dim"],))]
    assert fmap["input_dim"] != 499
