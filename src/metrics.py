"""Per-task metrics, the one implementation used by the training callback,
eval.py and postprocess.py.

Binary tasks (MMoE's income/marital, DeepFM's and DLRM's click) are scored
on the positive-class probability of each task separately: AUC, log loss and
accuracy at 0.5. Upstream MMoE flattened a (N, 2) softmax and its one-hot
label into one pooled AUC, which inflates the figure (a model with a true
income AUC of 0.946 reads about 0.991); nothing here does that.

Multi-class tasks (DSelect-k's digits) are scored by accuracy and
cross-entropy over the class probabilities.
"""
import math

import numpy as np
from sklearn.metrics import roc_auc_score

_EPS = 1e-7


def binary_task_metrics(prob, label):
    """AUC, log loss and accuracy of one binary task.

    ``prob`` holds the positive-class probabilities, ``label`` 0/1 values, both
    shape ``(N,)``. The AUC is NaN when the labels hold a single class (it is
    undefined then), never a made-up 0.5 or 1.0.
    """
    prob = np.asarray(prob, dtype=np.float64).reshape(-1)
    label = np.asarray(label, dtype=np.float64).reshape(-1)
    if prob.shape != label.shape:
        raise ValueError(f"{prob.shape[0]} predictions for {label.shape[0]} labels")
    if prob.size == 0:
        raise ValueError("no samples to score")
    if not np.all(np.isfinite(prob)):
        raise ValueError("predictions contain NaN or infinity")
    if np.any((label != 0) & (label != 1)):
        raise ValueError("binary labels must be 0 or 1")
    p = np.clip(prob, _EPS, 1.0 - _EPS)
    logloss = float(-np.mean(label * np.log(p) + (1.0 - label) * np.log(1.0 - p)))
    accuracy = float(np.mean((prob >= 0.5) == (label == 1)))
    auc = float(roc_auc_score(label, prob)) if 0 < label.sum() < label.size else math.nan
    return {"auc": auc, "logloss": logloss, "accuracy": accuracy}


def multiclass_task_metrics(prob, label):
    """Accuracy and cross-entropy of one multi-class task.

    ``prob`` has shape ``(N, C)`` (rows sum to one), ``label`` integer classes ``(N,)``.
    """
    prob = np.asarray(prob, dtype=np.float64)
    label = np.asarray(label).reshape(-1).astype(np.int64)
    if prob.ndim != 2 or prob.shape[0] != label.shape[0]:
        raise ValueError(f"expected ({label.shape[0]}, C) probabilities, got {prob.shape}")
    if label.size and (label.min() < 0 or label.max() >= prob.shape[1]):
        raise ValueError(f"labels must lie in [0, {prob.shape[1]})")
    picked = np.clip(prob[np.arange(label.size), label], _EPS, 1.0)
    return {"accuracy": float(np.mean(prob.argmax(axis=1) == label)),
            "logloss": float(-np.mean(np.log(picked)))}


def task_metrics(probs, labels, task_names, task_type="binary"):
    """Metrics of every task, keyed ``<task>_<metric>``, plus averages.

    Binary: ``probs`` and ``labels`` have shape ``(N, T)``, one column per task
    (a 1-D array is one task). Multi-class: ``probs`` has shape ``(N, T, C)``
    and ``labels`` ``(N, T)``. The averages over tasks are ``avg_auc`` (binary)
    and ``avg_accuracy`` (both).
    """
    probs = np.asarray(probs)
    labels = np.asarray(labels)
    if task_type == "binary":
        probs = probs.reshape(len(probs), -1)
        labels = labels.reshape(len(labels), -1)
    n_tasks = len(task_names)
    if probs.shape[1] != n_tasks or labels.shape[1] != n_tasks:
        raise ValueError(f"{n_tasks} tasks {list(task_names)} but predictions have shape "
                         f"{probs.shape} and labels {labels.shape}")
    scorer = binary_task_metrics if task_type == "binary" else multiclass_task_metrics
    result = {}
    for t, name in enumerate(task_names):
        for metric, value in scorer(probs[:, t], labels[:, t]).items():
            result[f"{name}_{metric}"] = value
    for metric in ("auc", "accuracy"):
        values = [result[f"{name}_{metric}"] for name in task_names if f"{name}_{metric}" in result]
        if values and n_tasks > 1:
            result[f"avg_{metric}"] = float(np.mean(values))
    return result


def misordered_pairs_by_group(prob, label, groups):
    """Where a binary task's AUC is lost: ``1 - AUC`` is the share of
    (positive, negative) pairs ranked the wrong way (the negative scored above
    the positive; a tie counts half). Returns ``{group: {"rows", "positives",
    "auc", "as_positive", "as_negative"}}``: the group's row count, its
    positive rate, the AUC within it (None with one class: JSON has no NaN),
    and the shares of all mis-ordered pairs whose positive, and whose
    negative, is in the group (each share sums to 1 over the groups when any
    pair is mis-ordered). ``groups`` holds one hashable value per row."""
    prob = np.asarray(prob, dtype=np.float64).reshape(-1)
    label = np.asarray(label).reshape(-1)
    groups = np.asarray(groups).reshape(-1)
    if not prob.shape == label.shape == groups.shape:
        raise ValueError(f"{prob.size} predictions, {label.size} labels and {groups.size} groups")
    if np.any((label != 0) & (label != 1)):
        raise ValueError("binary labels must be 0 or 1")
    pos = label == 1
    scores, index = np.unique(prob, return_inverse=True)
    pos_at = np.bincount(index, weights=pos, minlength=scores.size)
    neg_at = np.bincount(index, weights=~pos, minlength=scores.size)
    pos_below = np.cumsum(pos_at) - pos_at
    neg_above = neg_at.sum() - np.cumsum(neg_at)
    # per row: the wrongly ordered partners of a positive (negatives above it,
    # half the tied ones) or of a negative (positives below it, half the tied)
    wrong = np.where(pos, neg_above[index] + 0.5 * neg_at[index],
                     pos_below[index] + 0.5 * pos_at[index])
    total = float(wrong[pos].sum())
    out = {}
    for value in np.unique(groups):
        rows = groups == value
        out[value.item() if hasattr(value, "item") else value] = {
            "rows": int(rows.sum()), "positives": float(pos[rows].mean()),
            "auc": (float(roc_auc_score(pos[rows], prob[rows])) if 0 < pos[rows].sum() < rows.sum()
                    else None),
            "as_positive": float(wrong[rows & pos].sum() / total) if total else 0.0,
            "as_negative": float(wrong[rows & ~pos].sum() / total) if total else 0.0}
    return out


def breakdown_lines(shares, title, top=8):
    """Lines showing :func:`misordered_pairs_by_group`'s groups that hold the
    most mis-ordered pairs, largest first, the rest summed in one line."""
    order = sorted(shares, key=lambda g: -(shares[g]["as_positive"] + shares[g]["as_negative"]))
    lines = [f"{title} (share whose positive / whose negative is in the group):"]
    for group in order[:top]:
        row = shares[group]
        within = "one class" if row["auc"] is None else f"AUC within {row['auc']:.4f}"
        lines.append(f"  {row['as_positive']:6.1%} / {row['as_negative']:6.1%}  {group} "
                     f"({row['rows']} rows, {row['positives']:.1%} positive, {within})")
    if len(order) > top:
        rest = [sum(shares[g][k] for g in order[top:]) for k in ("as_positive", "as_negative")]
        lines.append(f"  {rest[0]:6.1%} / {rest[1]:6.1%}  the other {len(order) - top} values")
    return lines


def threshold_warnings(probs, labels, task_names, task_type="binary"):
    """Messages for binary tasks whose every probability falls on one side of
    0.5 although both classes occur: their accuracy is then the share of one
    class, however good the AUC looks (seen with a large batch early in
    training). Multi-class tasks have no threshold: an empty list."""
    if task_type != "binary":
        return []
    probs = np.asarray(probs).reshape(len(probs), -1)
    labels = np.asarray(labels).reshape(len(labels), -1)
    out = []
    for t, name in enumerate(task_names):
        prob, label = probs[:, t], labels[:, t]
        positives = float(np.mean(label == 1)) if label.size else 0.0
        if not 0.0 < positives < 1.0:
            continue
        above = int(np.sum(prob >= 0.5))
        if above in (0, prob.size):
            side, share = ("below", 1.0 - positives) if above == 0 else ("at or above", positives)
            out.append(f"{name}: every probability is {side} 0.5 although {positives:.1%} of the "
                       f"labels are positive, so {name}_accuracy is just the share of one class "
                       f"({share:.4f}); the AUC ranks the rows, but the probabilities are not "
                       "calibrated at 0.5 yet")
    return out


def format_metrics(metrics):
    """One line ``income_auc=0.9461 marital_auc=0.9912 ...`` for logs."""
    return " ".join(f"{k}={v:.6f}" if isinstance(v, float) else f"{k}={v}" for k, v in metrics.items())
