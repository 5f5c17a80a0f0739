"""Misuse and faults of the environment, as a user meets them: two runs in
one folder, another model or data set in a used folder, damaged and
swapped files, a full disk, unreadable files, impossible values. Each ends
in one ``error:`` line (exit 2 for bad input, 1 for the environment) and
loses nothing."""
import gzip
import json
import os
import pickle
import shutil
import signal
import subprocess
import tempfile

import numpy as np
import pytest

import prepare_data
from entry import CPU_CONFIG, ROOT, one_line_error, run, start, wait_for
from src.synth import census as census_synth
from src.synth import mnist as mnist_synth
from src.engine import checkpoint
from src.engine.callbacks import read_metrics_log
from roles import default_model, on
from src.registry import model_names

MODEL = default_model("census")   # what train.py runs here, on generated census files

FAST = ["--batch_size", "128", "--learning_rate", "0.01", "--warmup_epochs", "0.5",
        "--log_every_steps", "1000", "--eval_batch_size", "1024"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    base = tmp_path_factory.mktemp("misuse")
    for name, seed in (("raw_a", 11), ("raw_b", 12)):
        census_synth.generate_dataset(str(base / name), train_rows=2000, test_rows=600, seed=seed)
        assert prepare_data.main(["--config_path", CPU_CONFIG, "--raw_data_path", str(base / name),
                                  "--data_path", str(base / name.replace("raw", "mr"))]) == 0
    return base


def _train(data_dir, out, *extra, **kw):
    return run("train.py", "--config_path", CPU_CONFIG, "--data_path", data_dir,
               "--output_path", out, *FAST, *extra, **kw)


@pytest.fixture(scope="module")
def finished(data):
    """A finished two-epoch run on data set A."""
    out = data / "finished"
    result = _train(data / "mr_a", out, "--epoch_size", "2")
    assert result.returncode == 0, result.stderr[-2000:]
    return out


def _snapshot(folder):
    return {name: open(os.path.join(folder, name), "rb").read() for name in sorted(os.listdir(folder))
            if os.path.isfile(os.path.join(folder, name)) and name != ".lock"}


# ---------------------------------------------------------------- run folders


def test_two_trainings_in_one_folder(data, tmp_path):
    out = tmp_path / "run"
    first = start("train.py", "--config_path", CPU_CONFIG, "--data_path", data / "mr_a",
                  "--output_path", out, *FAST, "--epoch_size", "20000")
    try:
        assert wait_for(lambda: os.path.isfile(out / "run.json"), timeout=120)
        line = one_line_error(_train(data / "mr_a", out, "--epoch_size", "1"), 2)
        assert f"pid {first.pid}" in line and "in use" in line
        line = one_line_error(_train(data / "mr_a", out, "--epoch_size", "1", "--resume", "True"), 2)
        assert "in use" in line
    finally:
        first.send_signal(signal.SIGKILL)
        first.communicate()
    # the dead owner's lock is taken over, with a message
    result = _train(data / "mr_a", out, "--epoch_size", "1", "--resume", "True")
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"taking over the lock of output_path {out} left by pid {first.pid}" in result.stdout


def test_a_used_folder_is_refused_and_left_as_it_was(data, finished, tmp_path):
    before = _snapshot(finished)
    line = one_line_error(_train(data / "mr_a", finished, "--epoch_size", "1"), 2)
    assert f"already holds a finished run of {MODEL}" in line and "--replace_run True" in line
    line = one_line_error(_train(data / "mr_b", finished, "--epoch_size", "3", "--resume", "True"), 2)
    assert "another data set" in line
    mnist_synth.generate_idx(str(tmp_path / "idx"), train=300, test=100, seed=1)
    assert prepare_data.main(["--config_path", CPU_CONFIG, "--model", on("multimnist"), "--raw_data_path",
                              str(tmp_path / "idx"), "--data_path", str(tmp_path / "mm"),
                              "--pairs_per_image", "1"]) == 0
    other = run("train.py", "--config_path", CPU_CONFIG, "--model", on("multimnist"), "--data_path",
                tmp_path / "mm", "--output_path", finished, "--resume", "True")
    assert f"holds a run of model {MODEL}, not {on('multimnist')}" in one_line_error(other, 2)
    assert _snapshot(finished) == before


def test_replace_run_moves_the_old_run_aside(data, finished, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(finished, out)
    before = _snapshot(out)
    result = _train(data / "mr_b", out, "--epoch_size", "1", "--replace_run", "True")
    assert result.returncode == 0, result.stderr[-2000:]
    [aside] = [d for d in os.listdir(out) if d.startswith("replaced-")]
    moved = _snapshot(out / aside)
    assert moved == {k: v for k, v in before.items() if k in moved}
    assert set(before) - set(moved) <= {"train.log", "eval.log"}
    assert json.load(open(out / "run.json"))["status"] == "finished"


def test_stray_temporary_files_of_killed_writes_are_removed(data, finished, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(finished, out)
    (out / f".tmp-999999999-{MODEL}-2_11.ckpt").write_bytes(b"half")
    result = _train(data / "mr_a", out, "--epoch_size", "3", "--resume", "True")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "removed 1 temporary file(s) of a killed write" in result.stdout
    assert not [f for f in os.listdir(out) if f.startswith(".tmp-")]


def test_a_cut_last_metrics_line_is_skipped_and_a_bad_one_is_named(data, finished, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(finished, out)
    with open(out / "metrics.jsonl", "a") as fh:
        fh.write('{"epoch": 3, "global_st')
    result = _train(data / "mr_a", out, "--epoch_size", "3", "--resume", "True")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "line 3 is incomplete" in result.stdout
    assert [r["epoch"] for r in read_metrics_log(str(out / "metrics.jsonl"))] == [1, 2, 3]
    lines = open(out / "metrics.jsonl").read().splitlines()
    lines[1] = "garbage"
    open(out / "metrics.jsonl", "w").write("\n".join(lines) + "\n")
    line = one_line_error(_train(data / "mr_a", out, "--epoch_size", "4", "--resume", "True"), 2)
    assert f"{out / 'metrics.jsonl'}: line 2 is not a metrics record" in line


def test_launcher_logs_are_appended(data, finished, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(finished, out)
    (out / "train.log").write_text("earlier run line\n")
    script = os.path.join(ROOT, "scripts", "run_standalone_train_cpu.sh")
    result = subprocess.run(["bash", script, str(data / "mr_a"), "0", str(out), "--",
                             "--epoch_size", "1"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    log = (out / "train.log").read_text()
    assert log.startswith("earlier run line\n") and "===== " in log and "already holds" in log


# ---------------------------------------------------------------- checkpoints and data sets


def test_eval_and_export_take_everything_from_the_checkpoint(data, finished, tmp_path):
    ckpt = finished / "best_avg_auc.ckpt"
    # no config file, no model: the checkpoint knows the model and its sizes
    result = run("eval.py", "--data_path", data / "mr_a", "--ckpt_file", ckpt,
                 "--device_target", "CPU", "--amp_level", "O0")
    assert result.returncode == 0, result.stderr[-2000:]
    assert os.path.isfile(finished / "eval_best_avg_auc_test.json")
    result = run("export.py", "--config_path", CPU_CONFIG, "--data_path", data / "mr_a",
                 "--ckpt_file", ckpt, "--num_experts", "8", cwd=str(tmp_path))
    assert result.returncode == 0, result.stderr[-2000:]
    assert os.path.isfile(finished / f"{MODEL}.mindir") and not os.listdir(tmp_path)
    # AIR needs the Ascend backend: said in one line, not in MindSpore's call stack
    line = one_line_error(run("export.py", "--config_path", CPU_CONFIG, "--data_path", data / "mr_a",
                              "--ckpt_file", ckpt, "--file_format", "AIR"), 2)
    assert "file_format AIR needs MindSpore's Ascend backend" in line
    # --model naming another model is refused by the checkpoint, before the data set is read
    other = next(m for m in model_names() if m != MODEL)
    for script in ("eval.py", "export.py"):
        line = one_line_error(run(script, "--config_path", CPU_CONFIG, "--data_path", data / "mr_a",
                                  "--ckpt_file", ckpt, "--model", other), 2)
        assert f"written by model '{MODEL}', but --model says '{other}'" in line


def test_a_damaged_checkpoint_is_refused(data, finished, tmp_path):
    damaged = tmp_path / "best.ckpt"
    raw = bytearray((finished / "best_avg_auc.ckpt").read_bytes())
    for i in np.random.default_rng(3).choice(len(raw), 1000, replace=False):
        raw[i] ^= 0xFF
    damaged.write_bytes(bytes(raw))
    for script in ("eval.py", "export.py"):
        line = one_line_error(run(script, "--config_path", CPU_CONFIG, "--data_path", data / "mr_a",
                                  "--ckpt_file", damaged), 2)
        assert f"{damaged} is damaged" in line


def test_a_checkpoint_with_another_encoding_is_refused(data, finished):
    """Data set B has the same width as A but other vocabularies and scaling."""
    for script in ("eval.py", "export.py", "preprocess.py"):
        line = one_line_error(run(script, "--config_path", CPU_CONFIG, "--data_path", data / "mr_b",
                                  "--ckpt_file", finished / "best_avg_auc.ckpt"), 2)
        assert str(finished / "best_avg_auc.ckpt") in line
        assert str(data / "mr_b" / "feature_map.json") in line and "encoded differently" in line


def test_a_swapped_feature_map_or_cut_split_is_refused(data, tmp_path):
    target = tmp_path / "mr"
    shutil.copytree(data / "mr_a", target)
    shutil.copy(data / "mr_b" / "feature_map.json", target / "feature_map.json")
    line = one_line_error(_train(target, tmp_path / "out", "--epoch_size", "1"), 2)
    assert "train.mindrecord is not the file" in line and "feature_map.json records" in line
    shutil.copytree(data / "mr_a", tmp_path / "mr2")
    os.remove(tmp_path / "mr2" / "val.mindrecord")
    line = one_line_error(_train(tmp_path / "mr2", tmp_path / "out2", "--epoch_size", "1"), 2)
    assert "val.mindrecord is missing" in line


def test_a_streamed_split_replaced_between_epochs_stops_the_reader(data, tmp_path):
    from src.config import parse_config
    from src.data.convert.publish import DataSetError
    from src.engine.setup import split_reader
    from src.registry import get_model_spec
    target = tmp_path / "mr"
    shutil.copytree(data / "mr_a", target)
    cfg = parse_config(["--config_path", CPU_CONFIG, "--data_path", str(target),
                        "--shuffle_buffer_rows", "500"])
    spec = get_model_spec(MODEL)
    reader = split_reader(spec, spec.load_feature_map(str(target)), cfg, "train", training=True)
    assert sum(len(batch[0]) for batch in reader.epoch(1)) > 0
    assert prepare_data.main(["--config_path", CPU_CONFIG, "--raw_data_path", str(data / "raw_b"),
                              "--data_path", str(target)]) == 0
    with pytest.raises(DataSetError, match="changed while it was being read"):
        next(iter(reader.epoch(2)))


def test_two_conversions_into_one_folder(data, tmp_path):
    from src.data.convert.publish import StagedConversion
    with StagedConversion(str(tmp_path / "mr"), printer=lambda *a, **k: None):
        line = one_line_error(run("prepare_data.py", "--config_path", CPU_CONFIG, "--raw_data_path",
                                  data / "raw_a", "--data_path", tmp_path / "mr"), 2)
    assert f"data_path {tmp_path / 'mr'} is in use by pid {os.getpid()}" in line
    assert not os.path.exists(tmp_path / "mr")


def test_a_changed_row_between_the_sampled_bytes_is_refused(data, tmp_path):
    """A flipped value where the sampled digest does not look (simulated by
    recording the changed file's sampled digest) is caught by the rows'
    content digest when the split is loaded."""
    from src.fileio import sample_digest
    target = tmp_path / "mr"
    shutil.copytree(data / "mr_a", target)
    path = target / "val.mindrecord"
    raw = bytearray(path.read_bytes())
    labels = np.frombuffer(np.array([1.0, 0.0], np.float32).tobytes(), np.uint8)
    at = bytes(raw).find(labels.tobytes(), 1 << 20)       # a stored label pair, past the header
    assert at > 0
    raw[at:at + 8] = np.array([0.0, 1.0], np.float32).tobytes()
    path.write_bytes(bytes(raw))
    fmap = json.load(open(target / "feature_map.json"))
    fmap["contents"]["files"]["val.mindrecord"]["sample"] = sample_digest(str(path))
    json.dump(fmap, open(target / "feature_map.json", "w"))
    line = one_line_error(_train(target, tmp_path / "out", "--epoch_size", "1"), 2)
    assert f"{path}: its rows differ from the ones the conversion wrote" in line


def test_conversion_into_a_folder_of_other_files_is_refused(data, tmp_path):
    (tmp_path / "mine.txt").write_text("keep me")
    line = one_line_error(run("prepare_data.py", "--config_path", CPU_CONFIG, "--raw_data_path",
                              data / "raw_a", "--data_path", tmp_path), 2)
    assert "not a converted data set (mine.txt" in line
    assert (tmp_path / "mine.txt").read_text() == "keep me"


# ---------------------------------------------------------------- divergence


def test_a_huge_learning_rate_is_stopped(data, tmp_path):
    result = _train(data / "mr_a", tmp_path / "run", "--epoch_size", "2", "--learning_rate", "1e6")
    line = one_line_error(result, 1)
    assert "early level" in line or "loss became" in line or "no longer finite" in line
    for path in (tmp_path / "run").glob("*.ckpt"):     # nothing non-finite was saved
        params, _ = checkpoint.read_checkpoint(str(path))
        assert all(np.isfinite(p.asnumpy()).all() for p in params.values()
                   if p.asnumpy().dtype.kind == "f")
    assert json.load(open(tmp_path / "run" / "run.json"))["status"] == "diverged"


def test_divergence_after_resume_names_the_resumed_checkpoint(data, finished, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(finished, out)
    line = one_line_error(_train(data / "mr_a", out, "--epoch_size", "3", "--resume", "True",
                                 "--learning_rate", "1e30", "--clip_norm", "0",
                                 "--lr_schedule", "constant"), 1)
    assert f"the last good checkpoint is {out / f'{MODEL}-2_11.ckpt'}" in line


def test_a_resume_with_another_global_batch_is_refused(data, finished, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(finished, out)
    line = one_line_error(_train(data / "mr_a", out, "--epoch_size", "3", "--resume", "True",
                                 "--batch_size", "256"), 2)
    assert "was saved after 22 steps, but epoch 2 at 5 steps/epoch means 10" in line
    assert "the global batch (batch_size times ranks) of the original run" in line


# ---------------------------------------------------------------- bad values in raw files


def test_census_values_that_overflow_are_named(tmp_path):
    census_synth.generate_dataset(str(tmp_path / "raw"), train_rows=300, test_rows=100, seed=1)
    path = tmp_path / "raw" / "census-income.data.gz"
    lines = gzip.open(path, "rt").read().splitlines()
    fields = lines[6].split(",")
    fields[0] = "1e308"                                 # age
    lines[6] = ",".join(fields)
    with gzip.open(path, "wt") as fh:
        fh.write("\n".join(lines) + "\n")
    line = one_line_error(run("prepare_data.py", "--config_path", CPU_CONFIG, "--raw_data_path",
                              tmp_path / "raw", "--data_path", tmp_path / "mr"), 2)
    assert f"{path}: line 7: column 'age' holds 1e+308" in line
    assert not os.path.exists(tmp_path / "mr")


def test_nan_pixels_in_a_pickle_are_refused(tmp_path):
    images = np.random.default_rng(0).random((8, 36, 36))
    images[3, 5, 5] = np.nan
    labels = np.zeros((8, 2), np.int32)
    for name in ("train.pickle", "test.pickle"):
        with open(tmp_path / name, "wb") as fh:
            pickle.dump((images, labels), fh)
    line = one_line_error(run("prepare_data.py", "--config_path", CPU_CONFIG, "--model", on("multimnist"),
                              "--source", "pickle", "--raw_data_path", tmp_path,
                              "--data_path", tmp_path / "mm"), 2)
    assert "NaN or infinite pixel values" in line


def test_a_criteo_line_cut_inside_the_dense_block_is_named(tmp_path):
    good = "1\t" + "\t".join(["3"] * 13) + "\t" + "\t".join(["0000000a"] * 26)
    (tmp_path / "train.txt").write_text("\n".join([good] * 5 + ["0\t1\t2"] + [good] * 5) + "\n")
    line = one_line_error(run("prepare_data.py", "--config_path", CPU_CONFIG, "--model", on("criteo"),
                              "--raw_data_path", tmp_path, "--data_path", tmp_path / "mr"), 2)
    assert "train.txt: line 6: 3 tab-separated field(s): the line ends inside the dense block" in line


# ---------------------------------------------------------------- the environment


def test_a_device_this_install_lacks_is_one_line(data, tmp_path):
    line = one_line_error(_train(data / "mr_a", tmp_path / "run", "--device_target", "GPU"), 2)
    assert "device_target GPU" in line and "default_config_cpu.yaml" in line


def test_paths_that_are_not_what_they_should_be(data, finished, tmp_path):
    (tmp_path / "file").write_text("x")
    line = one_line_error(_train(data / "mr_a", tmp_path / "file" / "run", "--epoch_size", "1"), 2)
    assert "Not a directory" in line and str(tmp_path / "file") in line
    line = one_line_error(_train(data / "mr_a", tmp_path / "file", "--epoch_size", "1"), 2)
    assert "is a file, not a folder" in line
    line = one_line_error(run("eval.py", "--config_path", CPU_CONFIG, "--data_path", data / "mr_a",
                              "--ckpt_file", finished), 2)
    assert "is not a file" in line
    line = one_line_error(run("prepare_data.py", "--config_path", CPU_CONFIG, "--raw_data_path",
                              data / "raw_a", "--data_path", tmp_path / "file"), 2)
    assert "is a file, not a folder" in line


def _root():
    return hasattr(os, "geteuid") and os.geteuid() == 0


@pytest.mark.skipif(not _root(), reason="needs root to mount a small tmpfs")
def test_a_full_disk_is_one_line_and_keeps_nothing_partial(data):
    small = tempfile.mkdtemp(prefix="zoo-full-")
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=96k", "tmpfs", small]).returncode:
        pytest.skip("could not mount a tmpfs here")
    try:
        line = one_line_error(run("prepare_data.py", "--config_path", CPU_CONFIG, "--raw_data_path",
                                  data / "raw_a", "--data_path", os.path.join(small, "mr")), 1)
        assert "No space left on device" in line
        assert os.listdir(small) == [".mr.lock"]
        line = one_line_error(_train(data / "mr_a", os.path.join(small, "run"), "--epoch_size", "1"), 1)
        assert "No space left on device" in line
        assert not [f for f in os.listdir(os.path.join(small, "run")) if f.startswith(".tmp-")]
    finally:
        subprocess.run(["umount", small])
        os.rmdir(small)


def _without_root_override():
    """Command prefix that runs a command as root without the right to
    ignore file permissions (util-linux setpriv), or None."""
    prefix = ["setpriv", "--bounding-set=-dac_override,-dac_read_search",
              "--inh-caps=-dac_override,-dac_read_search", "--"]
    if not shutil.which("setpriv"):
        return None
    probe = subprocess.run(prefix + ["true"], capture_output=True)
    return prefix if probe.returncode == 0 else None


@pytest.mark.skipif(not _root() or _without_root_override() is None,
                    reason="needs root and setpriv to take away root's permission override")
def test_unreadable_files_are_one_line(data, finished, tmp_path):
    import sys
    prefix = _without_root_override()
    shutil.copytree(data / "raw_a", tmp_path / "raw")
    os.chmod(tmp_path / "raw" / "census-income.data.gz", 0)
    shutil.copy(finished / "best_avg_auc.ckpt", tmp_path / "best.ckpt")
    os.chmod(tmp_path / "best.ckpt", 0)
    env = dict(os.environ, GLOG_v="3", PYTHONPATH=ROOT)
    for script, args, expect in (
            ("prepare_data.py", ["--raw_data_path", tmp_path / "raw", "--data_path", tmp_path / "mr"],
             "Permission denied"),
            ("eval.py", ["--data_path", data / "mr_a", "--ckpt_file", tmp_path / "best.ckpt"],
             "not readable (permission denied)")):
        cmd = prefix + [sys.executable, os.path.join(ROOT, script), "--config_path", CPU_CONFIG,
                        *map(str, args)]
        result = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)
        assert expect in one_line_error(result, 2)
