"""PyTorch peers of this project's networks, for the benchmark
(``bench/workload.py``): the same layers, initialisation, loss, optimizer
and batches as our MindSpore implementation, on PyTorch's CPU kernels.

``build_peer(cfg, feature_map, seed)`` returns a :class:`PeerModel` with

* ``module``: the ``torch.nn.Module`` producing logits like ours;
* ``train_step(*batch)``: forward, loss, backward, optimizer step on the
  numpy batch ``spec.make_batch`` returns; returns the loss;
* ``predict(*inputs)``: eval-mode probabilities (numpy), our Predictor's output;
* ``load_from_mindspore(network)``: copy our network's parameters in.

A model's peer is ``bench/peer/<model>.py``, found by the model's name: it
defines ``PEER`` (the PeerModel class) and ``CHECKS`` (the cases ``check``
runs). A model without one is benchmarked on our side only.

``python -m bench.peer.check`` checks every peer against ours (forward,
one training step, initialisation statistics). See ``common`` for the
optimizer mapping.
"""
from bench.peer.common import PeerModel, torch_threads

import importlib
import os

__all__ = ["PeerModel", "build_peer", "has_peer", "peer_module", "torch_threads"]


def has_peer(model):
    """Whether ``model`` has a PyTorch peer (``bench/peer/<model>.py``)."""
    return os.path.isfile(os.path.join(os.path.dirname(os.path.abspath(__file__)), f"{model}.py"))


def peer_module(model):
    """The module ``bench/peer/<model>.py``."""
    if not has_peer(model):
        raise ValueError(f"no PyTorch peer for model {model!r} (bench/peer/{model}.py)")
    return importlib.import_module(f"bench.peer.{model}")


def build_peer(cfg, feature_map, seed=1, steps_per_epoch=None):
    """The :class:`PeerModel` of ``cfg.model``.

    ``steps_per_epoch`` sizes the learning-rate table as our trainer does
    (default: the feature map's train rows over ``cfg.batch_size``)."""
    cls = peer_module(cfg.model).PEER
    return cls(cfg, feature_map, seed=seed, steps_per_epoch=steps_per_epoch)
