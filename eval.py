"""Evaluate a checkpoint on a split (test by default) and write per-task metrics.

    python eval.py --config_path default_config_cpu.yaml --data_path DIR --ckpt_file FILE
"""
import json
import os
import sys

from src.config import load_config
from src.engine.cli import run_main
from src.engine.evaluation import evaluate
from src.engine.setup import split_reader, trained_network
from src.metrics import format_metrics


def main(argv=None):
    cfg = load_config(description=__doc__, argv=argv)
    spec, fmap, network, meta = trained_network(cfg)
    data = split_reader(spec, fmap, cfg, cfg.eval_split)
    metrics = evaluate(spec, fmap, network, data)
    print(f"result ({cfg.eval_split} split, {data.num_rows} rows, {cfg.ckpt_file}): "
          f"{format_metrics(metrics)}", flush=True)
    os.makedirs(cfg.output_path, exist_ok=True)
    name = os.path.splitext(os.path.basename(cfg.ckpt_file))[0]
    out = os.path.join(cfg.output_path, f"eval_{name}_{cfg.eval_split}.json")
    with open(out, "w", encoding="utf-8") as fh:
        json.dump({"model": spec.name, "checkpoint": os.path.abspath(cfg.ckpt_file),
                   "checkpoint_epoch": meta.get("epoch"), "split": cfg.eval_split,
                   "rows": data.num_rows, "metrics": metrics}, fh, indent=2)
    print(f"metrics written to {out}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
