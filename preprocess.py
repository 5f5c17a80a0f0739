r"""Write the evaluation split as raw .bin batches for an inference program
(the Ascend310 C++ app), at the exported model's batch size.

    python preprocess.py --config_path default_config_cpu.yaml --data_path DIR \
        --export_batch_size 1 --infer_data_path ./preprocess_Result [--ckpt_file FILE]

With ``--ckpt_file`` the model comes from the checkpoint, and a data set
encoded differently from the one it was trained on is refused.
"""
import os
import sys

import numpy as np

from src.config import load_config
from src.engine.cli import run_main
from src.fileio import FEATURE_MAP_FILE
from src.infer_io import batch_file, write_manifest


def _pad(array, rows):
    if len(array) == rows:
        return array
    pad = np.zeros((rows - len(array),) + array.shape[1:], array.dtype)
    return np.concatenate([array, pad])


def main(argv=None):
    cfg = load_config(description=__doc__, argv=argv, shown=lambda key, kind: key in (
        "model", "data_path", "ckpt_file", "eval_split", "export_batch_size", "infer_data_path"))
    # MindSpore loads only now: --help and bad options answer at once
    from src.engine import checkpoint
    from src.engine.setup import split_reader
    from src.pipeline import checkpoint_config, model_and_data
    meta = None
    if cfg.get("ckpt_file"):
        cfg, (_, meta) = checkpoint_config(cfg)
    spec, fmap = model_and_data(cfg)
    if meta is not None:
        checkpoint.check_data(meta, cfg.ckpt_file, fmap, os.path.join(cfg.data_path, FEATURE_MAP_FILE))
    bs = int(cfg.export_batch_size)
    cfg.eval_batch_size = bs
    data = split_reader(spec, fmap, cfg, cfg.eval_split)
    signature = spec.input_signature(fmap)
    out = cfg.infer_data_path
    for name in [n for n, _, _ in signature] + ["labels"]:
        os.makedirs(os.path.join(out, name), exist_ok=True)
    count = 0
    label_shape = None
    for i, batch in enumerate(data.epoch(0)):
        *inputs, labels = batch
        for (name, dtype, _), array in zip(signature, inputs):
            _pad(np.asarray(array, dtype), bs).tofile(batch_file(out, name, spec.name, i))
        labels = _pad(np.asarray(labels, np.float32), bs)
        label_shape = list(labels.shape)
        labels.tofile(batch_file(out, "labels", spec.name, i))
        count = i + 1
        if count % 1000 == 0:
            print(f"{count}/{len(data)} batches written", flush=True)
    tasks = spec.task_names(fmap)
    path = write_manifest(out, {
        "model": spec.name, "split": cfg.eval_split, "batch_size": bs, "num_batches": count,
        "rows": data.num_rows, "tasks": tasks, "task_type": spec.task_type,
        "inputs": [{"name": n, "dtype": np.dtype(d).name, "shape": [bs] + list(s)}
                   for n, d, s in signature],
        "labels": {"dtype": "float32", "shape": label_shape},
        "output": {"dtype": "float32", "shape": [bs] + list(spec.output_dims(fmap))}})
    print(f"{data.num_rows} {cfg.eval_split} rows in {count} batches of {bs} written to {out} "
          f"({path})", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
