"""The run's curves and result tables: steps.jsonl keeps every step (and
stays consistent over a resume), plot.py draws a decodable PNG of the
expected size, report.py computes mean and std over runs."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import plot as plot_entry
import prepare_data
import report as report_entry
import train as train_entry
from roles import default_model
from src.engine.callbacks import read_metrics_log
from src.runs import Run
from src.synth import census as census_synth

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CPU_CONFIG = os.path.join(ROOT, "default_config_cpu.yaml")
FAST = ["--config_path", CPU_CONFIG, "--batch_size", "128", "--learning_rate", "0.01",
        "--warmup_epochs", "0.5", "--log_every_steps", "1000"]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    assert default_model("census")
    base = tmp_path_factory.mktemp("census")
    census_synth.generate_dataset(str(base / "raw"), train_rows=1500, test_rows=800, seed=2)
    assert prepare_data.main(["--config_path", CPU_CONFIG, "--raw_data_path", str(base / "raw"),
                              "--data_path", str(base / "mr")]) == 0
    return str(base / "mr")


def test_step_log_survives_a_resume_and_plot_draws_it(data_dir, tmp_path):
    out = tmp_path / "run"
    assert train_entry.main(FAST + ["--data_path", data_dir, "--output_path", str(out),
                                    "--epoch_size", "1"]) == 0
    assert train_entry.main(FAST + ["--data_path", data_dir, "--output_path", str(out),
                                    "--epoch_size", "2", "--resume", "True"]) == 0
    steps = read_metrics_log(str(out / "steps.jsonl"))
    per_epoch = read_metrics_log(str(out / "metrics.jsonl"))[0]["global_step"]
    assert [r["global_step"] for r in steps] == list(range(1, 2 * per_epoch + 1))
    assert {"epoch", "step", "loss", "lr", "time"} <= set(steps[0])
    assert steps[-1]["epoch"] == 2 and steps[-1]["step"] == per_epoch
    assert all(np.isfinite(r["loss"]) and r["lr"] > 0 for r in steps)
    assert steps[0]["time"] <= steps[-1]["time"]

    png = tmp_path / "curves.png"
    assert plot_entry.main([str(out), str(out), "--out", str(png), "--dpi", "40"]) == 0
    from matplotlib.image import imread
    image = imread(str(png))
    panels = 2 + len(Run(str(out)).val_metric_names())
    rows = -(-panels // 3)
    assert image.shape[:2] == (round(3.6 * rows * 40), 5 * 3 * 40)
    assert image[..., :3].std() > 0.01                 # not a blank canvas


def _fake_run(folder, values, evaluated=None):
    folder.mkdir()
    with open(folder / "metrics.jsonl", "w") as fh:
        for epoch, val in enumerate(values, start=1):
            fh.write(json.dumps({"epoch": epoch, "global_step": 10 * epoch, "train_loss": 0.5,
                                 "lr": 0.1, "val": val}) + "\n")
    if evaluated:
        with open(folder / "eval_best_avg_auc_test.json", "w") as fh:
            json.dump({"split": "test", "metrics": evaluated}, fh)
    return str(folder)


def test_report_gives_mean_and_std_over_runs(tmp_path, capsys):
    a = _fake_run(tmp_path / "a", [{"auc": 0.70, "logloss": 0.5}, {"auc": 0.80, "logloss": 0.4}],
                  evaluated={"auc": 0.75, "logloss": 0.45})
    b = _fake_run(tmp_path / "b", [{"auc": 0.85, "logloss": 0.3}], evaluated={"auc": 0.85,
                                                                               "logloss": 0.35})
    c = _fake_run(tmp_path / "c", [{"auc": 0.60, "logloss": 0.7}, {"auc": 0.65, "logloss": 0.9}])
    # a run evaluated twice: the checkpoint of its monitored metric (config.yaml) counts
    with open(tmp_path / "a" / "eval_best_other_test.json", "w") as fh:
        json.dump({"split": "test", "metrics": {"auc": 0.1, "logloss": 9.0}}, fh)
    (tmp_path / "a" / "config.yaml").write_text("monitor: avg_auc\n")
    assert report_entry.main([a, b, c]) == 0
    text = capsys.readouterr().out
    # test results of a and b; c has none: its best validation (auc 0.65, log loss 0.7)
    auc = [0.75, 0.85, 0.65]
    line = next(l for l in text.splitlines() if l.startswith("| auc |"))
    assert f"{np.mean(auc):.6f} +- {np.std(auc, ddof=1):.6f} | 3 |" in line
    assert "| 0.750000 | 0.850000 | 0.650000 |" in line
    assert "| logloss | 0.500000 +- " in text          # (0.45 + 0.35 + 0.7) / 3
    assert "c: best validation" in text and "a: eval_best_avg_auc_test" in text
    assert report_entry.mean_std([2.0]) == (2.0, 0.0)


def test_best_epoch_is_the_first_best_one(tmp_path):
    """The epoch whose best_<metric>.ckpt train.py kept: the first of equal
    bests (it saves on strict improvement), the lowest for a log loss, and
    epochs without validation passed over."""
    run = Run(_fake_run(tmp_path / "a", [{"auc": 0.7, "logloss": 0.5}, {"auc": 0.8, "logloss": 0.3},
                                         None, {"auc": 0.8, "logloss": 0.4}]))
    assert run.best_epoch("auc") == 2 and run.best_epoch("logloss") == 2
    with pytest.raises(ValueError, match="no epoch has a validation avg_auc"):
        run.best_epoch("avg_auc")
    assert Run(_fake_run(tmp_path / "b", [{"auc": 0.7}, {"auc": 0.9}])).best_epoch("auc") == 2


def test_report_prints_a_plain_table_for_a_file(tmp_path):
    """``python report.py RUN... > results.md``: the table goes out as it is,
    without the time stamps of the log lines (src/engine/cli.py)."""
    a = _fake_run(tmp_path / "a", [{"auc": 0.70}], evaluated={"auc": 0.75})
    b = _fake_run(tmp_path / "b", [{"auc": 0.80}])
    done = subprocess.run([sys.executable, os.path.join(ROOT, "report.py"), a, b], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, PYTHONPATH=ROOT))
    assert done.returncode == 0, done.stderr
    assert done.stdout == report_entry.table([Run(a), Run(b)], "test")
    assert done.stdout.startswith("| metric | mean +- std |")


def test_plot_and_report_name_a_folder_that_is_not_a_run(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        plot_entry.main([str(tmp_path / "missing")])
    with pytest.raises(ValueError, match="not a run folder"):
        report_entry.main([str(tmp_path)])


def _summary_events(folder):
    """``[(step, {tag: value})]`` of the summary records in ``folder``."""
    import glob
    import struct
    from mindspore.train.summary_pb2 import Event
    events = []
    for path in glob.glob(str(folder / "*summary*")):
        data = open(path, "rb").read()
        pos = 0
        while pos < len(data):
            (size,) = struct.unpack("<Q", data[pos:pos + 8])
            event = Event()
            event.ParseFromString(data[pos + 12:pos + 12 + size])
            pos += 12 + size + 4
            values = {v.tag: v.scalar_value for v in event.summary.value}
            if values:
                events.append((event.step, values))
    return events


def test_summary_records_for_mindspore_viewers(data_dir, tmp_path):
    out = tmp_path / "run"
    assert train_entry.main(FAST + ["--data_path", data_dir, "--output_path", str(out),
                                    "--epoch_size", "2", "--summary", "True",
                                    "--log_every_steps", "4"]) == 0
    events = _summary_events(out / "summary")
    per_epoch = read_metrics_log(str(out / "metrics.jsonl"))[0]["global_step"]
    losses = [(step, v["train/loss"]) for step, v in events if "train/loss" in v]
    assert [s for s, _ in losses] == list(range(4, 2 * per_epoch + 1, 4))
    epochs = [(step, v) for step, v in events if "val/avg_auc" in v]
    assert [s for s, _ in epochs] == [per_epoch, 2 * per_epoch]
    log = read_metrics_log(str(out / "metrics.jsonl"))
    assert epochs[-1][1]["val/avg_auc"] == pytest.approx(log[-1]["val"]["avg_auc"], rel=1e-6)
