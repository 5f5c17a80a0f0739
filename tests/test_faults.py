"""Fault injection: kill -9 at chosen points (src/faults.py) and at seeded
random moments of conversion, re-conversion, training and checkpoint
writing. After every kill nothing half-written is accepted, every
checkpoint left loads, and resuming gives the parameters of an
uninterrupted run."""
import glob
import json
import os
import signal
import threading
import time
import types

import numpy as np
import pytest

import prepare_data
from entry import CPU_CONFIG, ROOT, env_with, killed, one_line_error, run, start, wait_for
from src.synth import census as census_synth
from src.synth import criteo as criteo_synth
from src.synth import mnist as mnist_synth
from src.data.convert.publish import StagedConversion, verify_split
from src.engine import checkpoint
from src.engine.callbacks import read_metrics_log
from src.fileio import FEATURE_MAP_FILE
from roles import default_model, on

TRAIN = ["--batch_size", "128", "--learning_rate", "0.01", "--warmup_epochs", "0.5",
         "--log_every_steps", "1000", "--eval_batch_size", "1024", "--epoch_size", "3"]
MODEL = default_model("census")   # what train.py runs here, on generated census files
FINAL = f"{MODEL}-3_11.ckpt"      # 1,500 training rows in batches of 128: 11 steps an epoch
# (the CPU config holds a quarter of the 2,000-row training file out for validation)


def _fmap(path):
    with open(os.path.join(path, FEATURE_MAP_FILE)) as fh:
        return json.load(fh)


def _convert_args(raw, out, *extra):
    return ["--config_path", CPU_CONFIG, "--raw_data_path", raw, "--data_path", out, *extra]


@pytest.fixture(scope="module")
def census(tmp_path_factory):
    """Raw files A and B (different draws), and A converted."""
    base = tmp_path_factory.mktemp("faults")
    for name, seed in (("raw_a", 5), ("raw_b", 6)):
        census_synth.generate_dataset(str(base / name), train_rows=2000, test_rows=600, seed=seed)
    assert prepare_data.main(_convert_args(str(base / "raw_a"), str(base / "mr_a"))) == 0
    return base


def _train_args(data, out, *extra):
    return ["--config_path", CPU_CONFIG, "--data_path", data, "--output_path", out, *TRAIN, *extra]


def _started_training(proc, timeout=120):
    """Wait until ``proc`` (train.py) prints the line it prints just before
    training; the rest of its output is drained in the background."""
    seen = threading.Event()

    def drain():
        for line in proc.stdout:
            if f"model {MODEL} on" in line:
                seen.set()
        seen.set()
    threading.Thread(target=drain, daemon=True).start()
    assert seen.wait(timeout)
    return time.time()


@pytest.fixture(scope="module")
def reference(census):
    """The parameters of an uninterrupted three-epoch run, and how long its
    training (from the line printed before it) takes here."""
    out = census / "reference"
    proc = start("train.py", *_train_args(census / "mr_a", out))
    began = _started_training(proc)
    assert proc.wait(timeout=300) == 0, proc.stderr.read()[-2000:]
    return types.SimpleNamespace(params=checkpoint.read_checkpoint(str(out / FINAL))[0],
                                 seconds=time.time() - began)


def _assert_nothing_half_written(out):
    """Every checkpoint in ``out`` loads (CRC checked), the metrics log and
    run.json read; only temporary files may be partial."""
    for path in glob.glob(str(out / "*.ckpt")):
        checkpoint.read_checkpoint(path)
    read_metrics_log(str(out / "metrics.jsonl"), printer=lambda *a, **k: None)
    with open(out / "run.json") as fh:
        assert json.load(fh)["model"] == MODEL


def _assert_equals_reference(out, reference):
    resumed, meta = checkpoint.read_checkpoint(str(out / FINAL))
    assert meta["epoch"] == 3 and set(resumed) == set(reference.params)
    for name, value in reference.params.items():
        np.testing.assert_allclose(resumed[name].asnumpy(), value.asnumpy(), rtol=1e-5, atol=1e-7,
                                   err_msg=name)
    assert [r["epoch"] for r in read_metrics_log(str(out / "metrics.jsonl"))] == [1, 2, 3]
    assert not [f for f in os.listdir(out) if f.startswith(".tmp-")]


# Each of these passes is reached in a three-epoch run of MODEL (epoch 1 alone
# writes three best checkpoints, then the periodic one).
# one kill of each kind by default, the others with --slow
TRAINING_KILLS = ["train.step:17", "checkpoint.tmp_written:1", "checkpoint.saved:2",
                  "metrics.appended:1"] + [
    pytest.param(fault, marks=pytest.mark.slow) for fault in (
        "train.step:5", "train.step:30", "checkpoint.tmp_written:4", "checkpoint.saved:4",
        "checkpoint.saved:5", "metrics.appended:2")]


@pytest.mark.parametrize("fault", TRAINING_KILLS)
def test_training_killed_then_resumed_equals_an_uninterrupted_run(fault, census, reference, tmp_path):
    out = tmp_path / "run"
    result = run("train.py", *_train_args(census / "mr_a", out), fault=fault)
    assert killed(result), (fault, result.returncode, result.stderr[-2000:])
    _assert_nothing_half_written(out)
    result = run("train.py", *_train_args(census / "mr_a", out, "--resume", "True"))
    assert result.returncode == 0, result.stderr[-2000:]
    _assert_equals_reference(out, reference)


def test_a_kill_while_resume_rewrites_the_metrics_log_loses_nothing(census, reference, tmp_path):
    """Killed after epoch 2's metrics but before its checkpoint, then again
    while the resumed run cuts the log back to epoch 1: the log is whole
    each time and the third try ends as an uninterrupted run."""
    out = tmp_path / "run"
    assert killed(run("train.py", *_train_args(census / "mr_a", out), fault="metrics.appended:2"))
    assert len(read_metrics_log(str(out / "metrics.jsonl"))) == 2
    resume = _train_args(census / "mr_a", out, "--resume", "True")
    assert killed(run("train.py", *resume, fault="metrics.rewritten"))
    assert [r["epoch"] for r in read_metrics_log(str(out / "metrics.jsonl"))] == [1]
    assert run("train.py", *resume).returncode == 0
    _assert_equals_reference(out, reference)


def test_training_killed_at_seeded_random_moments(census, reference, tmp_path):
    """Three kills at seeded moments of the training itself (compile, steps,
    validation, checkpoint and metrics writes), drawn from 5 % to 70 % of its
    measured length so that they land even when the machine's load changes."""
    out = tmp_path / "run"
    rng = np.random.default_rng(18)
    kills = 0
    for attempt, share in enumerate(rng.uniform(0.05, 0.7, size=3)):
        extra = ("--resume", "True") if attempt else ()
        proc = start("train.py", *_train_args(census / "mr_a", out, *extra))
        _started_training(proc)
        time.sleep(share * reference.seconds)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills += proc.returncode == -signal.SIGKILL
        if os.path.isfile(out / "run.json"):
            _assert_nothing_half_written(out)
    assert kills >= 1
    result = run("train.py", *_train_args(census / "mr_a", out, "--resume", "True"))
    assert result.returncode == 0, result.stderr[-2000:]
    _assert_equals_reference(out, reference)


# ---------------------------------------------------------------- conversion


def _leftovers(target):
    parent, name = os.path.split(str(target))
    return [e for e in os.listdir(parent) if e.startswith(f".{name}.") and not e.endswith(".lock")]


@pytest.mark.parametrize("fault", ["convert.split_written:1", "convert.split_written:3",
                                   "publish.staged"])
def test_a_killed_first_conversion_leaves_no_data_set(fault, census, tmp_path):
    target = tmp_path / "mr"
    assert killed(run("prepare_data.py", *_convert_args(census / "raw_a", target), fault=fault))
    assert not os.path.exists(target)
    line = one_line_error(run("train.py", *_train_args(target, tmp_path / "out")), 2)
    assert "does not exist" in line
    assert run("prepare_data.py", *_convert_args(census / "raw_a", target)).returncode == 0
    assert _fmap(target)["fingerprint"] == _fmap(census / "mr_a")["fingerprint"]
    assert _leftovers(target) == []


def _copy_of_a(census, tmp_path):
    import shutil
    target = tmp_path / "mr"
    shutil.copytree(census / "mr_a", target)
    return target


def _verified(target):
    """Every split of the data set at ``target`` passes the reader's checks."""
    from src.engine.setup import split_reader
    from src.registry import get_model_spec
    from src.config import parse_config
    cfg = parse_config(["--config_path", CPU_CONFIG, "--data_path", str(target)])
    spec = get_model_spec(MODEL)
    fmap = spec.load_feature_map(str(target))
    for split in ("train", "val", "test"):
        assert split_reader(spec, fmap, cfg, split).total_rows == verify_split(str(target), fmap, split)
    return fmap["fingerprint"]


@pytest.mark.parametrize("fault, exchange", [
    ("convert.split_written:1", True), ("convert.split_written:2", True), ("publish.staged", True),
    ("publish.exchanged", True), ("publish.moved_aside", False)])
def test_a_killed_reconversion_leaves_one_whole_data_set(fault, exchange, census, tmp_path):
    """Re-converting other raw data (B) over A and killed: A stays, whole,
    until the new one is complete; the next conversion clears what was left."""
    target = _copy_of_a(census, tmp_path)
    a = _fmap(target)["fingerprint"]
    env = env_with(fault, **({} if exchange else {"MS_ZOO_NO_EXCHANGE": "1"}))
    assert killed(run("prepare_data.py", *_convert_args(census / "raw_b", target), env=env))
    if fault == "publish.moved_aside":      # between the two renames: the next start restores A
        assert not os.path.exists(target)
        with StagedConversion(str(target), printer=lambda *a, **k: None):
            pass
    now = _verified(target)
    assert now == a if fault != "publish.exchanged" else now != a
    assert run("prepare_data.py", *_convert_args(census / "raw_b", target)).returncode == 0
    assert _verified(target) != a and _leftovers(target) == []


def test_a_killed_multimnist_reconversion_keeps_the_old_data_set(tmp_path):
    mnist_synth.generate_idx(str(tmp_path / "idx"), train=600, test=200, seed=1)
    args = ["--config_path", CPU_CONFIG, "--model", on("multimnist"), "--raw_data_path",
            tmp_path / "idx", "--data_path", tmp_path / "mm", "--pairs_per_image", "1"]
    assert run("prepare_data.py", *args).returncode == 0
    before = _fmap(tmp_path / "mm")
    assert killed(run("prepare_data.py", *args, "--seed", "2", fault="convert.split_written:2"))
    assert _fmap(tmp_path / "mm") == before
    for split, rows in before["contents"]["split_rows"].items():
        assert verify_split(str(tmp_path / "mm"), before, split) == rows


def _processes_with(marker):
    found = []
    for cmdline in glob.glob("/proc/[0-9]*/cmdline"):
        try:
            with open(cmdline, "rb") as fh:
                if marker.encode() in fh.read():
                    found.append(cmdline.split("/")[2])
        except OSError:
            continue
    return found


def test_a_killed_criteo_reconversion_keeps_the_old_data_set_and_its_workers_end(tmp_path):
    criteo_synth.generate(str(tmp_path / "raw"), rows=6000, seed=3)
    out = tmp_path / "criteo"
    marker = str(tmp_path / "raw")                  # in the command line of the parent and workers
    args = ["-m", "src.data.criteo", "--raw_data_path", marker, "--data_path", str(out),
            "--chunk_mb", "0.05", "--workers", "2", "--progress_seconds", "100"]
    import subprocess
    import sys
    done = subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=ROOT,
                          env=env_with(), timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    before = _fmap(out)
    again = subprocess.run([sys.executable, *args, "--seed", "7"], capture_output=True, text=True,
                           cwd=ROOT, env=env_with("criteo.chunk_written:3"), timeout=300)
    assert again.returncode == -signal.SIGKILL, again.stderr[-2000:]
    assert wait_for(lambda: not _processes_with(marker), timeout=30), _processes_with(marker)
    assert _fmap(out) == before
    for split, rows in before["contents"]["split_rows"].items():
        assert verify_split(str(out), before, split) == rows
