"""Reading finished or running run folders (what train.py and eval.py wrote)
for plot.py and report.py: the per-step log, the per-epoch metrics, the
evaluation results. No MindSpore import."""
import glob
import json
import math
import os

from src.engine.jsonl import read_metrics_log


class Run:
    """One run folder: ``name`` (the folder's), ``model``, ``steps`` (the
    records of steps.jsonl), ``epochs`` (of metrics.jsonl), ``evals``
    (``{file stem: eval.py's result}`` of its eval_*.json files)."""

    def __init__(self, path):
        if not os.path.isdir(path):
            raise FileNotFoundError(f"run folder {path} does not exist")
        self.path = os.path.abspath(path)
        self.name = os.path.basename(self.path.rstrip(os.sep)) or self.path
        self.epochs = read_metrics_log(os.path.join(path, "metrics.jsonl"))
        self.steps = read_metrics_log(os.path.join(path, "steps.jsonl"))
        if not self.epochs and not self.steps:
            raise ValueError(f"{path} holds no metrics.jsonl or steps.jsonl: not a run folder "
                             "(or a run that has not finished an epoch)")
        self.model, self.monitor = None, None
        config_file = os.path.join(path, "config.yaml")
        if os.path.isfile(config_file):
            import yaml
            with open(config_file, encoding="utf-8") as fh:
                self.monitor = (yaml.safe_load(fh) or {}).get("monitor")
        run_file = os.path.join(path, "run.json")
        if os.path.isfile(run_file):
            with open(run_file, encoding="utf-8") as fh:
                self.model = json.load(fh).get("model")
        self.evals = {}
        for file in sorted(glob.glob(os.path.join(path, "eval_*.json"))):
            with open(file, encoding="utf-8") as fh:
                self.evals[os.path.splitext(os.path.basename(file))[0]] = json.load(fh)

    def val_metric_names(self):
        """The validation metrics of the epochs, in the order first seen."""
        names = []
        for record in self.epochs:
            for key in record.get("val") or {}:
                if key not in names:
                    names.append(key)
        return names

    def best_val(self):
        """``{metric: best value over the epochs}`` (highest; lowest for log loss)."""
        best = {}
        for name in self.val_metric_names():
            values = [r["val"][name] for r in self.epochs
                      if r.get("val") and _finite(r["val"].get(name))]
            if values:
                best[name] = min(values) if "logloss" in name else max(values)
        return best

    def best_epoch(self, metric):
        """The first epoch with the best validation ``metric`` (the one whose
        ``best_<metric>.ckpt`` train.py kept); ValueError when no epoch has it."""
        scored = [(r["val"][metric], r["epoch"]) for r in self.epochs
                  if r.get("val") and _finite(r["val"].get(metric))]
        if not scored:
            raise ValueError(f"{self.path}: no epoch has a validation {metric}")
        sign = 1 if "logloss" in metric else -1
        return min(scored, key=lambda item: (sign * item[0], item[1]))[1]

    def result(self, split="test"):
        """``(where, {metric: value})``: eval.py's result on ``split`` (of the
        best checkpoint of the run's monitored metric when there are several),
        else the best validation values."""
        on_split = {k: v for k, v in self.evals.items() if v.get("split") == split}
        if on_split:
            preferred = f"eval_best_{self.monitor}_{split}"
            key = sorted(on_split, key=lambda k: (k != preferred, k))[0]
            return key, dict(on_split[key]["metrics"])
        return "best validation", self.best_val()


def _finite(value):
    return isinstance(value, (int, float)) and math.isfinite(value)


def smooth(values, window):
    """Running mean over ``window`` values (the first ones over fewer)."""
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += v
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out
