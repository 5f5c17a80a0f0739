"""scripts/run_infer_cpu.sh's own checks of its arguments. Every model's run
through it (SDK, build, ONNX conversion, results scored as eval.py does) is
the registry contract's (test_registry_contract.py)."""
import os
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_inference_program_errors(tmp_path):
    script = os.path.join(ROOT, "scripts", "run_infer_cpu.sh")
    run = subprocess.run(["bash", script, "missing.onnx", str(tmp_path), "y"], capture_output=True,
                         text=True, cwd=tmp_path)
    assert run.returncode == 2 and "ONNX_PATH" in run.stderr
    (tmp_path / "m.onnx").write_bytes(b"x")
    run = subprocess.run(["bash", script, "m.onnx", str(tmp_path), "maybe"], capture_output=True,
                         text=True, cwd=tmp_path)
    assert run.returncode == 2 and "NEED_PREPROCESS" in run.stderr
    run = subprocess.run(["bash", script, "m.onnx", str(tmp_path), "n"], capture_output=True,
                         text=True, cwd=tmp_path, env={**os.environ, "INFER_TIMEOUT": "soon"})
    assert run.returncode == 2 and "INFER_TIMEOUT must be a non-negative integer" in run.stderr
    run = subprocess.run(["bash", script, "m.onnx", str(tmp_path), "n"], capture_output=True,
                         text=True, cwd=tmp_path, env={**os.environ, "INFER_PROFILE": "yes"})
    assert run.returncode == 2 and "INFER_PROFILE must be true or false, got 'yes'" in run.stderr
    (tmp_path / "m.mindir").write_bytes(b"x")
    run = subprocess.run(["bash", script, "m.mindir", str(tmp_path), "y"], capture_output=True,
                         text=True, cwd=tmp_path)
    assert run.returncode == 2 and "ONNX_PATH must be an ONNX export" in run.stderr
    assert sorted(os.listdir(tmp_path)) == ["m.mindir", "m.onnx"]     # nothing preprocessed


def test_ascend_inference_script_checks_its_arguments_before_building(tmp_path):
    script = os.path.join(ROOT, "scripts", "run_infer_310.sh")
    (tmp_path / "m.mindir").write_bytes(b"x")
    run = subprocess.run(["bash", script, "m.mindir", str(tmp_path), "n", "zero"],
                         capture_output=True, text=True, cwd=tmp_path)
    assert run.returncode == 2 and "DEVICE_ID must be a non-negative integer" in run.stderr
    run = subprocess.run(["bash", script, "m.mindir", str(tmp_path), "n", "0"], capture_output=True,
                         text=True, cwd=tmp_path, env={**os.environ, "INFER_PROFILE": "1"})
    assert run.returncode == 2 and "INFER_PROFILE must be true or false" in run.stderr
    run = subprocess.run(["bash", script, "m.mindir", str(tmp_path), "n", "0"], capture_output=True,
                         text=True, cwd=tmp_path)
    assert run.returncode == 2 and "manifest.json not found" in run.stderr
    (tmp_path / "m.onnx").write_bytes(b"x")
    run = subprocess.run(["bash", script, "m.onnx", str(tmp_path), "n", "0"], capture_output=True,
                         text=True, cwd=tmp_path)
    assert run.returncode == 2 and "MINDIR_PATH must be a MindIR export" in run.stderr
