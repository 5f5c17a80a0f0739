"""The registry contract: every registered model (src/<model>/spec.py) passes
these tests by registering. Each model makes its small run (its spec's
``trial``) on its data set's generated raw files, through the real entry
points on CPU, and must

- learn: the training loss falls and the validation metrics its trial names
  beat their thresholds; the best checkpoint names the model;
- resume exactly: E-1 epochs, then ``--resume`` to E, equals E in one go,
  every parameter and optimizer state;
- export what it evaluates: the MindIR over preprocess.py's batches scores,
  through postprocess.py, exactly what eval.py reports;
- run from C++: the inference program (scripts/run_infer_cpu.sh, ONNX to
  MindSpore Lite) scores what eval.py reports.

The spec itself must be complete: its network declares the interfaces the
spec claims, and its data set gives the signature export and preprocess use.
"""
import glob
import json
import os
import subprocess

import numpy as np
import pytest
import yaml
from mindspore import ops

import eval as eval_entry
import export as export_entry
import prepare_data
import preprocess as preprocess_entry
import train as train_entry
from infer_parity import assert_postprocess_matches_eval, run_mindir
from src.config import parse_config
from src.engine import checkpoint
from src.engine.callbacks import read_metrics_log
from src.engine.interfaces import missing
from src.infer_io import read_manifest
from src.registry import CAPABILITIES, get_model_spec, model_names

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CPU_CONFIG = os.path.join(ROOT, "default_config_cpu.yaml")
GPU_CONFIG = os.path.join(ROOT, "default_config_gpu.yaml")
MODELS = model_names()
EXPORT_BATCH = "16"


class Runs:
    """Generated raw data per data set, converted data and a trained run per
    model: made once per test session, on first use."""

    def __init__(self, base):
        self.base, self.raw, self.data, self.trained = base, {}, {}, {}

    def raw_dir(self, spec):
        name = spec.dataset.name
        if name not in self.raw:
            path = str(self.base / "raw" / name)
            spec.dataset.synthetic(path, seed=spec.trial.data_seed, scale=spec.trial.data_scale)
            self.raw[name] = path
        return self.raw[name]

    def data_dir(self, spec):
        if spec.name not in self.data:
            path = str(self.base / "data" / spec.name)
            assert prepare_data.main(["--config_path", CPU_CONFIG, "--model", spec.name,
                                      "--raw_data_path", self.raw_dir(spec), "--data_path", path]
                                     + list(spec.trial.prepare_args)) == 0
            self.data[spec.name] = path
        return self.data[spec.name]

    def run(self, spec, out, *extra):
        return train_entry.main(argv(spec, self.data_dir(spec)) + ["--output_path", str(out)]
                                + list(extra))

    def trained_run(self, spec):
        if spec.name not in self.trained:
            out = self.base / "runs" / spec.name
            assert self.run(spec, out, "--epoch_size", str(spec.trial.epochs)) == 0
            self.trained[spec.name] = out
        return self.trained[spec.name]


def argv(spec, data):
    return (["--config_path", CPU_CONFIG, "--model", spec.name, "--data_path", data]
            + list(spec.trial.args))


def best_checkpoint(spec, run):
    return str(run / f"best_{parse_config(['--model', spec.name]).monitor}.ckpt")


@pytest.fixture(scope="session")
def runs(tmp_path_factory):
    return Runs(tmp_path_factory.mktemp("contract"))


@pytest.mark.parametrize("name", MODELS)
def test_spec_is_complete(name):
    spec = get_model_spec(name)
    cfg = parse_config(["--model", name])
    assert cfg.monitor in cfg.best_ckpt_metrics
    assert spec.trial.expect and spec.trial.epochs >= 2
    assert set(spec.capabilities) <= set(CAPABILITIES)
    assert spec.dataset.task_type in ("binary", "multiclass")


@pytest.mark.parametrize("name", MODELS)
def test_learns_on_generated_data(runs, name):
    spec = get_model_spec(name)
    run = runs.trained_run(spec)
    log = read_metrics_log(str(run / "metrics.jsonl"))
    assert [r["epoch"] for r in log] == list(range(1, spec.trial.epochs + 1))
    assert log[-1]["train_loss"] < log[0]["train_loss"]
    for metric, floor in spec.trial.expect.items():
        best = max(r["val"][metric] for r in log)
        assert best > floor, (metric, best, floor)
    params, meta = checkpoint.read_checkpoint(best_checkpoint(spec, run))
    assert meta["model"] == name
    fmap = spec.load_feature_map(runs.data_dir(spec))
    network = spec.build_network(parse_config(["--model", name] + list(spec.trial.args)), fmap)
    for capability in spec.capabilities:            # what the spec declares, the network has
        assert not missing(network, CAPABILITIES[capability]), capability


@pytest.mark.parametrize("name", MODELS)
def test_resume_continues_exactly(runs, name, tmp_path):
    """With the trial's deterministic overrides (a dropout op draws other
    masks after a resume than in one go)."""
    spec = get_model_spec(name)
    epochs, fixed = spec.trial.epochs, list(spec.trial.deterministic_args)
    full_run = runs.trained_run(spec) if not fixed else tmp_path / "full"
    if fixed:
        assert runs.run(spec, full_run, "--epoch_size", str(epochs), *fixed) == 0
    part = tmp_path / "resumed"
    assert runs.run(spec, part, "--epoch_size", str(epochs - 1), *fixed) == 0
    assert runs.run(spec, part, "--epoch_size", str(epochs), "--resume", "True", *fixed) == 0
    last = os.path.basename(glob.glob(str(full_run / f"{name}-{epochs}_*.ckpt"))[0])
    full, _ = checkpoint.read_checkpoint(str(full_run / last))
    resumed, meta = checkpoint.read_checkpoint(str(part / last))
    assert meta["epoch"] == epochs and set(resumed) == set(full)
    for key in full:
        np.testing.assert_allclose(resumed[key].asnumpy(), full[key].asnumpy(), rtol=1e-5,
                                   atol=1e-7, err_msg=key)


@pytest.mark.parametrize("name", MODELS)
def test_export_and_inference_files_match_eval(runs, name, tmp_path, monkeypatch):
    spec = get_model_spec(name)
    ckpt = best_checkpoint(spec, runs.trained_run(spec))
    data = runs.data_dir(spec)
    monkeypatch.chdir(tmp_path)
    common = argv(spec, data) + ["--export_batch_size", EXPORT_BATCH]
    assert export_entry.main(common + ["--ckpt_file", ckpt, "--file_name", name]) == 0
    assert preprocess_entry.main(common + ["--infer_data_path", "pre"]) == 0
    manifest = read_manifest("pre")
    fmap = spec.load_feature_map(data)
    assert manifest["model"] == name and manifest["task_type"] == spec.task_type
    assert [(i["name"], tuple(i["shape"][1:])) for i in manifest["inputs"]] == [
        (n, tuple(shape)) for n, _, shape in spec.input_signature(fmap)]
    assert manifest["output"]["shape"] == [int(EXPORT_BATCH)] + list(spec.output_dims(fmap))
    run_mindir(f"{name}.mindir", "pre", "results")
    post = assert_postprocess_matches_eval("pre", "results", common, ckpt)
    assert set(spec.trial.expect) <= set(post)


def _custom_kernels(network):
    """The C++ CPU kernels (``ops.Custom``) the network's cells hold."""
    return [name for name, cell in network.cells_and_names()
            for value in vars(cell).values() if isinstance(value, ops.Custom)]


@pytest.mark.parametrize("name", [n for n in MODELS if get_model_spec(n).compute_keys])
def test_checkpoint_runs_with_another_devices_choices(runs, name, tmp_path):
    """A checkpoint trained with the CPU config's kernels is built with the
    compute choices of the config it is loaded under (the GPU config's
    operators here), not the training's, and scores the same: a CPU kernel
    on a GPU would refuse to run."""
    from src.pipeline import trained_network
    spec = get_model_spec(name)
    ckpt = best_checkpoint(spec, runs.trained_run(spec))
    gpu = parse_config(["--config_path", GPU_CONFIG, "--model", name])
    with open(CPU_CONFIG) as fh:
        doc = yaml.safe_load(fh)
    doc.setdefault(name, {}).update({key: gpu.get(key) for key in spec.compute_keys})
    other = tmp_path / "gpu_choices.yaml"
    other.write_text(yaml.safe_dump(doc))
    metrics = {}
    for label, config in (("cpu", CPU_CONFIG), ("gpu", str(other))):
        args = argv(spec, runs.data_dir(spec)) + ["--config_path", config, "--ckpt_file", ckpt]
        kernels = _custom_kernels(trained_network(parse_config(args))[3])
        assert bool(kernels) == (label == "cpu"), (label, kernels)
        assert eval_entry.main(args + ["--output_path", str(tmp_path / label)]) == 0
        stem = os.path.splitext(os.path.basename(ckpt))[0]
        with open(tmp_path / label / f"eval_{stem}_test.json") as fh:
            metrics[label] = json.load(fh)["metrics"]
    for key, value in metrics["cpu"].items():
        assert metrics["gpu"][key] == pytest.approx(value, abs=1e-5), key


@pytest.mark.parametrize("name", MODELS)
def test_cpp_inference_matches_eval(runs, name, tmp_path, monkeypatch):
    """scripts/run_infer_cpu.sh fetches the MindSpore Lite SDK (cached in
    .cache/), builds ascend310_infer/, converts the ONNX export and runs it."""
    spec = get_model_spec(name)
    ckpt = best_checkpoint(spec, runs.trained_run(spec))
    data = runs.data_dir(spec)
    common = argv(spec, data)
    monkeypatch.chdir(tmp_path)
    assert export_entry.main(common + ["--ckpt_file", ckpt, "--file_format", "ONNX",
                                       "--export_batch_size", EXPORT_BATCH,
                                       "--file_name", name]) == 0
    run = subprocess.run(["bash", os.path.join(ROOT, "scripts", "run_infer_cpu.sh"),
                          f"{name}.onnx", data, "y", "--", "--model", name,
                          "--export_batch_size", EXPORT_BATCH] + list(spec.trial.args),
                         capture_output=True, text=True, timeout=900, cwd=tmp_path,
                         env={**os.environ, "INFER_PROFILE": "true"})
    assert run.returncode == 0, run.stdout + run.stderr
    assert "NN inference cost average time" in run.stdout
    with open(tmp_path / "acc.log") as fh:
        cpp = json.loads(fh.read().splitlines()[1])
    assert eval_entry.main(common + ["--ckpt_file", ckpt, "--output_path", str(tmp_path)]) == 0
    stem = os.path.splitext(os.path.basename(ckpt))[0]
    with open(tmp_path / f"eval_{stem}_test.json") as fh:
        evaluated = json.load(fh)["metrics"]
    assert set(cpp) == set(evaluated)
    for key, value in evaluated.items():
        assert cpp[key] == pytest.approx(value, abs=1e-5), key     # with timing on: scores the same
    _check_program_errors(tmp_path, name, run.stdout)


def _check_program_errors(work, name, script_output):
    """The program itself: the kernel times it wrote for the script's run
    (``INFER_PROFILE=true``: ``--profile=true``, shown in ``script_output``),
    and a wrongly sized input, a missing model and a bad option named."""
    main = os.path.join(ROOT, "ascend310_infer", "out", "main")
    names = [i["name"] for i in read_manifest(str(work / "preprocess_Result"))["inputs"]]
    inputs = "--input_paths=" + ",".join(f"preprocess_Result/{n}" for n in names)
    with open(work / "time_Result" / "kernel_times.txt") as fh:
        lines = fh.read().splitlines()
    assert lines[0].startswith("kernel time per batch, ms") and lines[0] in script_output
    types = {line.split()[1]: float(line.split()[-1]) for line in lines[1:] if line.startswith("type ")}
    kernels = [float(line.split()[-1]) for line in lines[1:] if line.startswith("kernel ")]
    assert types and kernels and all(ms >= 0 for ms in list(types.values()) + kernels)
    assert max(kernels) <= sum(types.values()) + 1e-6      # a kernel's time is part of its type's
    assert any(t.startswith("MatMul") for t in types), types   # every model holds a dense layer
    folder = work / "preprocess_Result" / names[0]
    first = sorted(os.listdir(folder))[0]
    with open(folder / first, "ab") as fh:
        fh.write(b"\0\0\0\0")
    run = subprocess.run([main, f"--mindir_path={name}_lite.mindir", inputs,
                          "--device_target=CPU"], capture_output=True, text=True, cwd=work)
    assert run.returncode == 1 and "export and preprocess with the same batch size" in run.stderr
    run = subprocess.run([main, "--mindir_path=missing.mindir", inputs, "--device_target=CPU"],
                         capture_output=True, text=True, cwd=work)
    assert run.returncode == 1 and "cannot build the model from missing.mindir" in run.stderr
    run = subprocess.run([main, "--input_paths=x"], capture_output=True, text=True, cwd=work)
    assert run.returncode == 2 and "--mindir_path is required" in run.stderr
    run = subprocess.run([main, "--help"], capture_output=True, text=True, cwd=work)
    assert run.returncode == 0 and run.stdout.startswith("usage: main --mindir_path=")
    run = subprocess.run([main, "--mindir_path=x", "--input_paths=x", "--profile=yes"],
                         capture_output=True, text=True, cwd=work)
    assert run.returncode == 2 and "--profile must be true or false" in run.stderr
