"""Evaluate a checkpoint on a split (test by default) and write per-task metrics.

    python eval.py --config_path default_config_cpu.yaml --data_path DIR --ckpt_file FILE

The model and its sizes come from the checkpoint. The metrics go to
``eval_<checkpoint>_<split>.json`` beside the checkpoint (its run folder), or
in ``--output_path`` when given.
"""
import os
import sys

from src.config import help_for, load_config
from src.engine.cli import run_main
from src.fileio import write_json_atomic


def main(argv=None):
    cfg = load_config(description=__doc__, argv=argv, shown=help_for((
        "data_path", "ckpt_file", "eval_split", "eval_batch_size", "output_path",
        "breakdown_field")))
    # MindSpore loads only now: --help and bad options answer at once
    from src.engine.evaluation import predict, score
    from src.engine.graph_call import threaded
    from src.metrics import format_metrics
    from src.engine.setup import split_reader
    from src.pipeline import trained_network
    cfg, spec, fmap, network, meta = trained_network(cfg)
    data = split_reader(spec, fmap, cfg, cfg.eval_split)
    field = cfg.get("breakdown_field")
    groups = field_groups(spec, fmap, cfg, field) if field else None   # a bad field fails now
    probs, labels = predict(spec, network, data, threaded(spec.predictor(network), cfg, "predict"))
    metrics = score(spec, fmap, probs, labels)
    print(f"result ({cfg.eval_split} split, {data.num_rows} rows, {cfg.ckpt_file}): "
          f"{format_metrics(metrics)}", flush=True)
    described = describe(spec, fmap, network, data)
    if field:
        described["breakdown"] = {field: breakdown(spec.task_names(fmap), probs, labels, groups,
                                                   f"{cfg.eval_split} pairs by {field}")}
    folder = (cfg.output_path if "output_path" in cfg.cli_keys
              else os.path.dirname(os.path.abspath(cfg.ckpt_file)))
    os.makedirs(folder, exist_ok=True)
    name = os.path.splitext(os.path.basename(cfg.ckpt_file))[0]
    out = write_json_atomic(os.path.join(folder, f"eval_{name}_{cfg.eval_split}.json"), {
        "model": spec.name, "checkpoint": os.path.abspath(cfg.ckpt_file),
        "checkpoint_epoch": meta.get("epoch"), "split": cfg.eval_split,
        "data_path": os.path.abspath(cfg.data_path), "data_fingerprint": fmap.get("fingerprint"),
        "rows": data.num_rows, "metrics": metrics, **described})
    print(f"metrics written to {out}", flush=True)
    return 0


def field_groups(spec, fmap, cfg, field):
    """The value of the categorical ``field`` in each row of the split, in order."""
    from src.data.census import field_values
    from src.data.reader import BlockDataset
    if spec.task_type != "binary":
        raise ValueError(f"breakdown_field: {spec.dataset.title} has no binary tasks to break down")
    stored = BlockDataset(cfg.data_path, cfg.eval_split, spec.columns(fmap), batch_size=1)
    return field_values(fmap, stored.arrays, field)


def breakdown(task_names, probs, labels, groups, title):
    """Where each task's AUC is lost on the split, by group, printed;
    ``{task: shares}`` (:func:`src.metrics.misordered_pairs_by_group`)."""
    from src.metrics import breakdown_lines, misordered_pairs_by_group
    if len(groups) != len(labels):
        raise ValueError(f"{len(groups)} stored rows but {len(labels)} predictions")
    out = {}
    for t, task in enumerate(task_names):
        out[task] = misordered_pairs_by_group(probs[:, t], labels[:, t], groups)
        print("\n".join(breakdown_lines(out[task], f"{task}: mis-ordered {title}")), flush=True)
    return out


def describe(spec, fmap, network, data):
    """The model's own account of the trained network (``ModelSpec.describe``) on
    the split's first batch, printed; ``{"network": ...}`` for the JSON, or ``{}``."""
    if spec.describe is None:
        return {}
    from src.engine.runtime import as_tensors
    batch = next(iter(data.epoch(0)))
    network.set_train(False)
    found = spec.describe(network, as_tensors(batch[:-1]), spec.task_names(fmap))
    print(f"network ({found.get('rows', len(batch[-1]))} rows of the {data.split} split):",
          flush=True)
    for line in found.get("lines", []):
        print(f"  {line}", flush=True)
    return {"network": found}


if __name__ == "__main__":
    sys.exit(run_main(main))
