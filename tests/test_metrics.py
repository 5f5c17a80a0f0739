import math

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from src.metrics import (binary_task_metrics, format_metrics, misordered_pairs_by_group,
                         multiclass_task_metrics, task_metrics,
                         threshold_warnings)


def test_per_task_auc_differs_from_flattened_auc():
    """The upstream pooled AUC over a flattened (N, 2) one-hot is inflated by
    the trivially separable negative column; the per-task AUC is not."""
    rng = np.random.default_rng(0)
    n = 4000
    label = (rng.random(n) < 0.06).astype(np.float64)          # rare positives, like income
    prob = np.clip(0.06 + 0.08 * label + 0.08 * rng.standard_normal(n), 0.001, 0.999)
    metrics = task_metrics(np.c_[prob, prob], np.c_[label, label], ["income", "other"])
    true_auc = roc_auc_score(label, prob)
    assert metrics["income_auc"] == pytest.approx(true_auc)
    pooled = roc_auc_score(np.c_[1 - label, label].ravel(), np.c_[1 - prob, prob].ravel())
    assert pooled - true_auc > 0.05                             # upstream's number is inflated
    assert abs(metrics["income_auc"] - pooled) > 0.05


def test_tasks_are_scored_separately():
    labels = np.array([[0, 1], [1, 0], [0, 1], [1, 0]], np.float32)
    probs = np.array([[0.1, 0.2], [0.9, 0.8], [0.2, 0.3], [0.8, 0.7]], np.float32)
    m = task_metrics(probs, labels, ["a", "b"])
    assert m["a_auc"] == 1.0 and m["b_auc"] == 0.0
    assert m["avg_auc"] == 0.5
    assert m["a_accuracy"] == 1.0 and m["b_accuracy"] == 0.0


def test_logloss_and_accuracy_values():
    m = binary_task_metrics([0.8, 0.4], [1, 0])
    assert m["logloss"] == pytest.approx(-(math.log(0.8) + math.log(0.6)) / 2)
    assert m["accuracy"] == 1.0


def test_single_class_auc_is_nan_not_made_up():
    assert math.isnan(binary_task_metrics([0.2, 0.7], [1, 1])["auc"])


@pytest.mark.parametrize("probs,labels,match", [
    ([0.1, 0.2], [0, 1, 1], "predictions for"),
    ([0.1, float("nan")], [0, 1], "NaN"),
    ([0.1, 0.2], [0, 2], "0 or 1"),
    ([], [], "no samples"),
])
def test_bad_inputs_are_rejected(probs, labels, match):
    with pytest.raises(ValueError, match=match):
        binary_task_metrics(probs, labels)


def test_task_count_mismatch():
    with pytest.raises(ValueError, match="2 tasks"):
        task_metrics(np.zeros((3, 3)), np.zeros((3, 3)), ["a", "b"])


def test_multiclass():
    probs = np.array([[[0.7, 0.3], [0.2, 0.8]], [[0.4, 0.6], [0.9, 0.1]]])
    labels = np.array([[0, 1], [0, 0]])
    m = task_metrics(probs, labels, ["left", "right"], task_type="multiclass")
    assert m["left_accuracy"] == 0.5 and m["right_accuracy"] == 1.0
    assert m["avg_accuracy"] == 0.75
    assert multiclass_task_metrics([[0.5, 0.5]], [0])["logloss"] == pytest.approx(math.log(2))
    with pytest.raises(ValueError, match="labels must lie"):
        multiclass_task_metrics([[0.5, 0.5]], [2])


def test_format():
    assert format_metrics({"a_auc": 0.5, "n": 3}) == "a_auc=0.500000 n=3"


def test_threshold_warning_names_a_task_whose_accuracy_counts_one_class():
    rng = np.random.default_rng(0)
    labels = np.stack([rng.integers(0, 2, 200), rng.integers(0, 2, 200)], axis=1)
    # task "a": ranked perfectly but every probability below 0.5 (AUC 1.0, accuracy = negatives)
    probs = np.stack([0.1 + 0.3 * labels[:, 0], np.where(labels[:, 1] == 1, 0.8, 0.2)], axis=1)
    metrics = task_metrics(probs, labels, ["a", "b"])
    assert metrics["a_auc"] == 1.0
    assert metrics["a_accuracy"] == pytest.approx(1.0 - labels[:, 0].mean())
    warnings = threshold_warnings(probs, labels, ["a", "b"])
    assert len(warnings) == 1 and warnings[0].startswith("a: every probability is below 0.5")
    assert f"{1.0 - labels[:, 0].mean():.4f}" in warnings[0]
    # all at or above 0.5 is named too; one-class labels and multi-class tasks are not
    assert "at or above" in threshold_warnings(np.full(200, 0.7), labels[:, 0], ["a"])[0]
    assert threshold_warnings(np.full(200, 0.2), np.zeros(200), ["a"]) == []
    assert threshold_warnings(np.full((4, 1, 3), 1 / 3), np.zeros((4, 1)), ["d"], "multiclass") == []


def test_evaluation_prints_the_threshold_warning(capsys, monkeypatch):
    from src.engine import evaluation

    class Spec:
        task_type = "binary"

        @staticmethod
        def task_names(_):
            return ["income"]

    labels = np.array([0, 1, 0, 1, 0], np.float32).reshape(-1, 1)
    probs = np.array([0.1, 0.3, 0.05, 0.4, 0.2]).reshape(-1, 1)
    monkeypatch.setattr(evaluation, "predict", lambda *a: (probs, labels))
    metrics = evaluation.evaluate(Spec, {}, None, None)
    assert metrics["income_auc"] == 1.0 and metrics["income_accuracy"] == pytest.approx(0.6)
    assert "warning: income: every probability is below 0.5" in capsys.readouterr().out


def test_misordered_pairs_by_group_matches_counting_every_pair():
    """Scores rounded to one decimal, so ties occur; every (positive, negative)
    pair is counted by brute force and attributed to both members' groups."""
    rng = np.random.default_rng(0)
    label = rng.integers(0, 2, 400)
    prob = np.round(rng.random(400) * 0.7 + 0.3 * label, 1)
    groups = np.array(["a", "b", "c"])[rng.integers(0, 3, 400)]
    shares = misordered_pairs_by_group(prob, label, groups)
    pos, neg = np.flatnonzero(label == 1), np.flatnonzero(label == 0)
    p_pos, p_neg = prob[pos][:, None], prob[neg][None, :]
    wrong = (p_neg > p_pos) + 0.5 * (p_neg == p_pos)          # one row per positive
    total = wrong.sum()
    assert total / wrong.size == pytest.approx(1 - roc_auc_score(label, prob))
    for g in "abc":
        in_g = groups == g
        assert shares[g]["rows"] == in_g.sum()
        assert shares[g]["positives"] == pytest.approx(label[in_g].mean())
        assert shares[g]["auc"] == pytest.approx(roc_auc_score(label[in_g], prob[in_g]))
        assert shares[g]["as_positive"] == pytest.approx(wrong[in_g[pos]].sum() / total)
        assert shares[g]["as_negative"] == pytest.approx(wrong[:, in_g[neg]].sum() / total)
    assert sum(s["as_positive"] for s in shares.values()) == pytest.approx(1.0)


def test_misordered_pairs_by_group_perfect_ranking_and_bad_input():
    shares = misordered_pairs_by_group([0.1, 0.9, 0.2], [0, 1, 0], [1, 1, 2])
    assert shares[1] == {"rows": 2, "positives": 0.5, "auc": 1.0, "as_positive": 0.0,
                         "as_negative": 0.0}
    assert shares[2]["auc"] is None and shares[2]["positives"] == 0.0
    with pytest.raises(ValueError, match="3 predictions, 2 labels and 3 groups"):
        misordered_pairs_by_group([0.1, 0.9, 0.2], [0, 1], [1, 1, 2])
    with pytest.raises(ValueError, match="must be 0 or 1"):
        misordered_pairs_by_group([0.1, 0.9], [0, 2], [1, 1])
