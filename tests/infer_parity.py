"""Shared by the end-to-end tests: stand in for the inference program (run an
exported MindIR over preprocess.py's batches) and check that postprocess.py
scores the results exactly as eval.py scores the checkpoint."""
import json
import os

import mindspore as ms
import pytest

import eval as eval_entry
import postprocess as postprocess_entry
from src.infer_io import batch_file, read_bin, read_manifest, result_file


def run_mindir(mindir, infer_dir, result_dir):
    """Write ``result_dir/<model>_<i>_0.bin`` for every batch; returns the manifest."""
    manifest = read_manifest(infer_dir)
    graph = ms.nn.GraphCell(ms.load(mindir))
    os.makedirs(result_dir, exist_ok=True)
    for i in range(manifest["num_batches"]):
        inputs = [ms.Tensor(read_bin(batch_file(infer_dir, s["name"], manifest["model"], i),
                                     s["dtype"], s["shape"])) for s in manifest["inputs"]]
        graph(*inputs).asnumpy().tofile(result_file(result_dir, manifest["model"], i))
    return manifest


def assert_postprocess_matches_eval(infer_dir, result_dir, eval_argv, ckpt, tol=1e-5):
    """postprocess.py's acc.log against eval.py's metrics for ``ckpt`` (cwd: a scratch folder)."""
    assert postprocess_entry.main(["--infer_data_path", infer_dir, "--result_path", result_dir]) == 0
    with open("acc.log") as fh:
        post = json.loads(fh.read().splitlines()[1])
    assert eval_entry.main(eval_argv + ["--ckpt_file", ckpt, "--output_path", "."]) == 0
    name = os.path.splitext(os.path.basename(ckpt))[0]
    with open(f"eval_{name}_test.json") as fh:
        evaluated = json.load(fh)["metrics"]
    assert set(post) == set(evaluated)
    for key, value in evaluated.items():
        assert post[key] == pytest.approx(value, abs=tol), key
    return post
