"""DSelect-k from generated MNIST IDX files to evaluated and exported
checkpoints, through the real entry points on CPU. Export parity (the CPU run
trains with matmul convolutions, export switches to the native ones), resume
and the C++ path are the registry contract's (test_registry_contract.py)."""
import os

import numpy as np
import pytest

import export as export_entry
import prepare_data
import train as train_entry
from src.synth.mnist import generate_idx
from src.engine import checkpoint
from src.engine.callbacks import read_metrics_log

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CPU_CONFIG = os.path.join(ROOT, "default_config_cpu.yaml")
SMALL = ["--model", "dselect_k", "--num_experts", "4", "--conv_channels", "4,8",
         "--expert_units", "16,16", "--tower_units", "16", "--batch_size", "50",
         "--eval_batch_size", "128", "--log_every_steps", "1000", "--learning_rate", "0.003"]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    base = tmp_path_factory.mktemp("multimnist")
    generate_idx(str(base / "raw"), train=600, test=200, seed=4)
    assert prepare_data.main(["--config_path", CPU_CONFIG, "--model", "dselect_k",
                              "--raw_data_path", str(base / "raw"),
                              "--data_path", str(base / "mr")]) == 0
    return str(base / "mr")


@pytest.fixture(scope="module")
def trained(data_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    assert train_entry.main(["--config_path", CPU_CONFIG, "--data_path", data_dir,
                             "--output_path", str(out), "--epoch_size", "3"] + SMALL) == 0
    return out


def test_training_learns_both_digits(trained):
    log = read_metrics_log(str(trained / "metrics.jsonl"))
    assert [r["epoch"] for r in log] == [1, 2, 3]
    assert log[-1]["train_loss"] < log[0]["train_loss"]
    val = log[-1]["val"]
    assert val["left_accuracy"] > 0.6 and val["right_accuracy"] > 0.6, val   # chance is 0.1
    assert {"best_left_accuracy.ckpt", "best_avg_accuracy.ckpt"} <= set(os.listdir(trained))
    _, meta = checkpoint.read_checkpoint(str(trained / "best_avg_accuracy.ckpt"))
    assert meta["model"] == "dselect_k"


def test_onnx_export_for_the_inference_route(trained, data_dir, tmp_path, monkeypatch):
    """ONNX is the route to MindSpore Lite (issue 6): every op must export."""
    monkeypatch.chdir(tmp_path)
    assert export_entry.main(["--config_path", CPU_CONFIG, "--data_path", data_dir,
                              "--ckpt_file", str(trained / "best_avg_accuracy.ckpt"),
                              "--file_format", "ONNX", "--file_name", "dsk"] + SMALL) == 0
    assert os.path.getsize("dsk.onnx") > 10000


@pytest.mark.parametrize("gate", ["softmax", "topk"])
def test_baseline_gates_train_through_the_same_entry_point(data_dir, tmp_path, gate):
    assert train_entry.main(["--config_path", CPU_CONFIG, "--data_path", data_dir,
                             "--output_path", str(tmp_path), "--epoch_size", "1",
                             "--gate", gate, "--save_checkpoint", "false"] + SMALL) == 0
    val = read_metrics_log(str(tmp_path / "metrics.jsonl"))[-1]["val"]
    assert np.isfinite(val["avg_accuracy"]) and val["avg_accuracy"] > 0.1


def test_eval_reports_accuracy_and_the_experts_each_task_uses(trained, data_dir, tmp_path, capsys):
    import json
    import eval as eval_entry
    assert eval_entry.main(["--config_path", CPU_CONFIG, "--data_path", data_dir,
                            "--ckpt_file", str(trained / "best_avg_accuracy.ckpt"),
                            "--output_path", str(tmp_path)] + SMALL) == 0
    out = capsys.readouterr().out
    assert "network (128 rows of the test split):" in out and "  task right: " in out
    saved = json.load(open(tmp_path / "eval_best_avg_accuracy_test.json"))
    assert saved["metrics"]["left_accuracy"] > 0.5
    for task in ("left", "right"):
        usage = saved["network"]["tasks"][task]
        assert 1 <= usage["experts_used_mean"] <= 4 and len(usage["mean_weight"]) == 4
        assert sum(usage["mean_weight"]) == pytest.approx(1.0, abs=0.01)
