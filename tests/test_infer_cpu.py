"""The C++ inference program on CPU: scripts/run_infer_cpu.sh fetches the
MindSpore Lite SDK (cached in .cache/), builds ascend310_infer/, converts the
ONNX export and runs it; its results must score exactly as eval.py does."""
import json
import os
import subprocess

import pytest

import eval as eval_entry
import export as export_entry
import prepare_data
import train as train_entry
from src.data import census_synth, criteo_synth
from src.data.mnist_synth import generate_idx

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CPU_CONFIG = os.path.join(ROOT, "default_config_cpu.yaml")

MODELS = {
    "mmoe": (lambda raw: census_synth.generate_dataset(raw, train_rows=2000, test_rows=600, seed=1),
             ["--batch_size", "128"], "best_avg_auc.ckpt"),
    "dlrm": (lambda raw: criteo_synth.main(["--output_dir", raw, "--rows", "6000", "--seed", "1"]),
             ["--embedding_dim", "8", "--bottom_units", "16,8", "--top_units", "16", "--batch_size", "128"],
             "best_click_auc.ckpt"),
    "deepfm": (lambda raw: criteo_synth.main(["--output_dir", raw, "--rows", "6000", "--seed", "1"]),
               ["--embedding_dim", "8", "--deep_units", "16,16", "--batch_size", "128"],
               "best_click_auc.ckpt"),
    "dselect_k": (lambda raw: generate_idx(raw, train=300, test=60, seed=1),
                  ["--num_experts", "4", "--conv_channels", "4,8", "--expert_units", "16,16",
                   "--tower_units", "16", "--batch_size", "50"], "best_avg_accuracy.ckpt"),
}


@pytest.mark.parametrize("model", sorted(MODELS))
def test_cpp_inference_matches_eval(model, tmp_path, monkeypatch):
    make_raw, sizes, best = MODELS[model]
    make_raw(str(tmp_path / "raw"))
    common = ["--config_path", CPU_CONFIG, "--model", model]
    data = str(tmp_path / "mr")
    assert prepare_data.main(common + ["--raw_data_path", str(tmp_path / "raw"), "--data_path", data]) == 0
    out = tmp_path / "run"
    assert train_entry.main(common + sizes + ["--data_path", data, "--output_path", str(out),
                                              "--epoch_size", "1", "--log_every_steps", "1000"]) == 0
    ckpt = str(out / best)
    monkeypatch.chdir(tmp_path)
    assert export_entry.main(common + sizes + ["--data_path", data, "--ckpt_file", ckpt,
                                               "--file_format", "ONNX", "--export_batch_size", "16",
                                               "--file_name", model]) == 0
    run = subprocess.run(["bash", os.path.join(ROOT, "scripts", "run_infer_cpu.sh"), f"{model}.onnx", data,
                          "y", "--", "--model", model, "--export_batch_size", "16"] + sizes,
                         capture_output=True, text=True, timeout=900, cwd=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "NN inference cost average time" in run.stdout
    with open(tmp_path / "acc.log") as fh:
        cpp = json.loads(fh.read().splitlines()[1])
    assert eval_entry.main(common + sizes + ["--data_path", data, "--ckpt_file", ckpt,
                                             "--output_path", str(tmp_path)]) == 0
    with open(tmp_path / f"eval_{os.path.splitext(best)[0]}_test.json") as fh:
        evaluated = json.load(fh)["metrics"]
    assert set(cpp) == set(evaluated)
    for key, value in evaluated.items():
        assert cpp[key] == pytest.approx(value, abs=1e-5), key
    if model == "mmoe":
        _check_program_errors(tmp_path)


def _check_program_errors(work):
    """The program itself: a wrongly sized input and a missing model are named."""
    main = os.path.join(ROOT, "ascend310_infer", "out", "main")
    first = sorted(os.listdir(work / "preprocess_Result" / "x"))[0]
    with open(work / "preprocess_Result" / "x" / first, "ab") as fh:
        fh.write(b"\0\0\0\0")
    run = subprocess.run([main, "--mindir_path=mmoe_lite.mindir", "--input_paths=preprocess_Result/x",
                          "--device_target=CPU"], capture_output=True, text=True, cwd=work)
    assert run.returncode == 1 and "export and preprocess with the same batch size" in run.stderr
    run = subprocess.run([main, "--mindir_path=missing.mindir", "--input_paths=preprocess_Result/x",
                          "--device_target=CPU"], capture_output=True, text=True, cwd=work)
    assert run.returncode == 1 and "cannot build the model from missing.mindir" in run.stderr
    run = subprocess.run([main, "--input_paths=x"], capture_output=True, text=True, cwd=work)
    assert run.returncode == 2 and "--mindir_path is required" in run.stderr


def test_inference_program_errors(tmp_path):
    script = os.path.join(ROOT, "scripts", "run_infer_cpu.sh")
    run = subprocess.run(["bash", script, "missing.onnx", str(tmp_path), "y"], capture_output=True,
                         text=True, cwd=tmp_path)
    assert run.returncode == 2 and "ONNX_PATH" in run.stderr
    (tmp_path / "m.onnx").write_bytes(b"x")
    run = subprocess.run(["bash", script, "m.onnx", str(tmp_path), "maybe"], capture_output=True,
                         text=True, cwd=tmp_path)
    assert run.returncode == 2 and "NEED_PREPROCESS" in run.stderr
