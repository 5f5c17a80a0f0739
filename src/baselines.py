"""Classical single-task baselines on a converted tabular data set.

For each task of a binary multi-task data set (Census-Income), fit logistic
regression and histogram gradient boosting (scikit-learn) on the ``train``
split's model inputs, choose each one's setting by validation AUC, and report
validation and test AUC per task: the bar a multi-task network has to clear
on the same rows. The inputs are exactly the network's (one-hot categoricals
and the converter's numerics), so a difference is the model's, not the
features'.

    python -m src.baselines --dataset census --data_path data/census/real_mindrecord

``--refit`` also fits each chosen setting again on the train and validation
rows together and scores that model on test (``refit_test_auc``): the bar
for a network trained again the same way (train.py's ``train_splits``).

``--breakdown FIELD`` also shows, per value of a categorical field, where each
chosen model's validation AUC is lost (:func:`src.metrics.misordered_pairs_by_group`).
"""
import os
import sys
from typing import NamedTuple

from src.engine.cli import ArgumentParser

# the grids searched on the validation split (one fit per setting and task); the
# slow, small-leaved boosting setting is there so that the bar is a tuned model
LOGISTIC_C = (0.01, 0.1, 1.0, 10.0)
BOOSTING = ({"learning_rate": 0.05}, {"learning_rate": 0.1},
            {"learning_rate": 0.03, "max_leaf_nodes": 15, "l2_regularization": 1.0})


class Split(NamedTuple):
    """A whole split as the network sees it, and the stored columns it was made from."""
    x: object
    labels: object
    arrays: dict


def load_split(spec, data_dir, split, fmap):
    """The whole ``split`` as a :class:`Split`."""
    from src.data.reader import BlockDataset
    data = BlockDataset(data_dir, split, spec.columns(fmap), batch_size=1)
    inputs = spec.make_batch(data.arrays, fmap)
    if len(inputs) != 2:
        raise ValueError(f"{spec.title}: baselines need one input array, the data set has "
                         f"{len(inputs) - 1}")
    return Split(*inputs, data.arrays)


def _auc(y, score):
    from sklearn.metrics import roc_auc_score
    return float(roc_auc_score(y, score))


def _logistic(c, seed):
    from sklearn.linear_model import LogisticRegression
    return LogisticRegression(C=c, max_iter=2000, random_state=seed)


def _boosting(setting, seed):
    from sklearn.ensemble import HistGradientBoostingClassifier
    return HistGradientBoostingClassifier(max_iter=2000, early_stopping=True,
                                          validation_fraction=0.1, random_state=seed, **setting)


BASELINES = {"logistic_regression": (_logistic, LOGISTIC_C, "C"),
             "gradient_boosting": (_boosting, BOOSTING, "setting")}


def fit_task(name, splits, task, seed, refit=False):
    """Fit one baseline on one task: its validation-chosen setting and AUCs,
    and that model's validation probabilities; with ``refit``, also the test
    AUC of the setting fitted again on train and val together."""
    make, grid, key = BASELINES[name]
    train, val, test = splits["train"], splits["val"], splits["test"]
    best = None
    for value in grid:
        model = make(value, seed).fit(train.x, train.labels[:, task])
        val_prob = model.predict_proba(val.x)[:, 1]
        val_auc = _auc(val.labels[:, task], val_prob)
        if best is None or val_auc > best[1]:
            best = (value, val_auc, model, val_prob)
    value, val_auc, model, val_prob = best
    row = {key: value, "val_auc": val_auc,
           "test_auc": _auc(test.labels[:, task], model.predict_proba(test.x)[:, 1])}
    if refit:
        import numpy as np
        both = make(value, seed).fit(np.concatenate([train.x, val.x]),
                                     np.concatenate([train.labels[:, task], val.labels[:, task]]))
        row["refit_test_auc"] = _auc(test.labels[:, task], both.predict_proba(test.x)[:, 1])
    return row, val_prob


def run(spec, data_dir, seed=0, names=tuple(BASELINES), breakdown=None, refit=False):
    """Fit every baseline on every task; with ``breakdown`` (a categorical
    field), also where each chosen model's validation AUC is lost, by value;
    with ``refit``, also each chosen setting's fit on train and val (:func:`fit_task`)."""
    from src.data.census import field_values
    from src.metrics import breakdown_lines, misordered_pairs_by_group
    fmap = spec.load_feature_map(data_dir)
    if spec.task_type != "binary":
        raise ValueError(f"{spec.title}: baselines cover binary tasks only")
    splits = {s: load_split(spec, data_dir, s, fmap) for s in ("train", "val", "test")}
    groups = field_values(fmap, splits["val"].arrays, breakdown) if breakdown else None
    results = {}
    for name in names:
        for t, task in enumerate(spec.task_names(fmap)):
            row, val_prob = fit_task(name, splits, t, seed, refit)
            results[f"{name}/{task}"] = row
            chosen = ", ".join(f"{k} {v}" for k, v in row.items() if not k.endswith("auc"))
            again = (f", fitted on train and val: test auc {row['refit_test_auc']:.4f}"
                     if refit else "")
            print(f"baselines: {name} {task}: val auc {row['val_auc']:.4f} "
                  f"test auc {row['test_auc']:.4f}{again} ({chosen})", flush=True)
            if groups is not None:
                shares = misordered_pairs_by_group(val_prob, splits["val"].labels[:, t], groups)
                print(f"baselines: {name} {task}: " + "\n".join(
                    breakdown_lines(shares, f"mis-ordered validation pairs by {breakdown}")),
                    flush=True)
                row["breakdown"] = {breakdown: shares}
    return results


def main(argv=None):
    from src.registry import all_specs
    datasets = {spec.dataset.name: spec.dataset for spec in all_specs()
                if spec.dataset.task_type == "binary"}
    parser = ArgumentParser(
        prog="python -m src.baselines",
        description="Logistic regression and gradient boosting per task on a converted "
                    "tabular data set, chosen by validation AUC, reported on val and test.")
    parser.add_argument("--dataset", default="census", choices=sorted(datasets),
                        help="the data set the converted folder holds")
    parser.add_argument("--data_path", required=True, help="the converted data set folder")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", default=None, help="also write the results as JSON here")
    parser.add_argument("--breakdown", default=None, metavar="FIELD",
                        help="a categorical field (e.g. det_hh_fam_stat): show, per value, the "
                             "share of each model's mis-ordered validation pairs")
    parser.add_argument("--refit", action="store_true",
                        help="also fit each chosen setting on train and val together and "
                             "report its test AUC (refit_test_auc)")
    args = parser.parse_args(argv)
    results = run(datasets[args.dataset], args.data_path, args.seed, breakdown=args.breakdown,
                  refit=args.refit)
    if args.output:
        from src.fileio import write_json_atomic
        os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
        write_json_atomic(args.output, results)
    return results


if __name__ == "__main__":
    from src.engine.cli import run_main
    run_main(main, sys.argv[1:])
