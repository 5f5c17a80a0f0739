"""Prediction and evaluation over a split: one code path for the training
callback and eval.py."""
import numpy as np
from src.engine.graph_call import GraphCall
from src.engine.runtime import as_tensors

from src.metrics import task_metrics, threshold_warnings


def predict(spec, network, dataset, predictor=None):
    """``(probabilities, labels)`` of ``network`` over a whole split, in order."""
    predictor = GraphCall(predictor or spec.predictor(network))
    was_training = network.training
    network.set_train(False)
    probs, labels = [], []
    try:
        for batch in dataset.epoch(0):
            probs.append(predictor(*as_tensors(batch[:-1])).asnumpy())
            labels.append(batch[-1])
    finally:
        network.set_train(was_training)
    return np.concatenate(probs), np.concatenate(labels)


def evaluate(spec, feature_map, network, dataset, predictor=None):
    """Per-task metrics (see :func:`src.metrics.task_metrics`) of ``network`` on a split;
    a warning is printed for a binary task whose accuracy only counts one class."""
    return score(spec, feature_map, *predict(spec, network, dataset, predictor))


def score(spec, feature_map, probs, labels):
    """:func:`evaluate` on predictions already made (:func:`predict`)."""
    names = spec.task_names(feature_map)
    for message in threshold_warnings(probs, labels, names, spec.task_type):
        print(f"warning: {message}", flush=True)
    return task_metrics(probs, labels, names, spec.task_type)
