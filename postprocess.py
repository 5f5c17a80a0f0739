"""Score an inference program's result files with the same metric code as
eval.py, and write them to acc.log.

    python postprocess.py --infer_data_path ./preprocess_Result --result_path ./result_Files
"""
import json
import os
import sys

import numpy as np

from src.config import load_config
from src.engine.cli import run_main
from src.fileio import write_text_atomic
from src.infer_io import batch_file, read_bin, read_manifest, result_file


def collect(infer_data_path, result_path):
    """``(probabilities, labels, manifest)`` gathered from the .bin files."""
    manifest = read_manifest(infer_data_path)
    model, probs, labels = manifest["model"], [], []
    wanted = [result_file(result_path, model, i) for i in range(manifest["num_batches"])]
    missing = [path for path in wanted if not os.path.isfile(path)]
    if missing:
        raise FileNotFoundError(
            f"{result_path} lacks {len(missing)} of the {len(wanted)} result files of "
            f"{infer_data_path}'s batches (first missing: {os.path.basename(missing[0])}): "
            "run the inference program on them first (scripts/run_infer_cpu.sh or "
            "run_infer_310.sh), or point --result_path at its result_Files")
    for i, result in enumerate(wanted):
        probs.append(read_bin(result, manifest["output"]["dtype"], manifest["output"]["shape"]))
        labels.append(read_bin(batch_file(infer_data_path, "labels", model, i),
                               manifest["labels"]["dtype"], manifest["labels"]["shape"]))
    rows = manifest["rows"]
    return np.concatenate(probs)[:rows], np.concatenate(labels)[:rows], manifest


def main(argv=None):
    cfg = load_config(description=__doc__, argv=argv,
                      shown=lambda key, kind: key in ("infer_data_path", "result_path"))
    # after the options: fast --help
    from src.metrics import format_metrics, task_metrics, threshold_warnings
    probs, labels, manifest = collect(cfg.infer_data_path, cfg.result_path)
    for message in threshold_warnings(probs, labels, manifest["tasks"], manifest["task_type"]):
        print(f"warning: {message}", flush=True)
    metrics = task_metrics(probs, labels, manifest["tasks"], manifest["task_type"])
    line = f"result ({manifest['split']} split, {manifest['rows']} rows): {format_metrics(metrics)}"
    print(line, flush=True)
    write_text_atomic("acc.log", line + "\n" + json.dumps(metrics) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
