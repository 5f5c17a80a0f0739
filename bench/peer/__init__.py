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
runs), and may define ``VARIANTS``: the names of other ways a PyTorch user
would write the same network (e.g. DLRM's table layouts), the default first;
``PEER`` then takes ``variant=``. The benchmark measures every variant and
compares ours with the fastest. A model without a peer module is
benchmarked on our side only.

``python -m bench.peer.check`` checks every peer against ours (forward,
one training step, initialisation statistics). See ``common`` for the
optimizer mapping.
"""
from bench.peer.common import PeerModel, torch_threads

import importlib
import os

__all__ = ["PeerModel", "build_peer", "has_peer", "peer_module", "peer_variants", "torch_threads"]


def has_peer(model):
    """Whether ``model`` has a PyTorch peer (``bench/peer/<model>.py``)."""
    return os.path.isfile(os.path.join(os.path.dirname(os.path.abspath(__file__)), f"{model}.py"))


def peer_module(model):
    """The module ``bench/peer/<model>.py``."""
    if not has_peer(model):
        raise ValueError(f"no PyTorch peer for model {model!r} (bench/peer/{model}.py)")
    return importlib.import_module(f"bench.peer.{model}")


def peer_variants(model):
    """The variants of ``model``'s peer, the default first (``(None,)``: one way only)."""
    return tuple(getattr(peer_module(model), "VARIANTS", None) or (None,))


def build_peer(cfg, feature_map, seed=1, steps_per_epoch=None, variant=None):
    """The :class:`PeerModel` of ``cfg.model`` (``variant``: one of its
    :func:`peer_variants`; None: the default).

    ``steps_per_epoch`` sizes the learning-rate table as our trainer does
    (default: the feature map's train rows over ``cfg.batch_size``)."""
    cls = peer_module(cfg.model).PEER
    known = peer_variants(cfg.model)
    if variant is None:
        return cls(cfg, feature_map, seed=seed, steps_per_epoch=steps_per_epoch)
    if variant not in known:
        raise ValueError(f"the {cfg.model} peer has no variant {variant!r}; it has "
                         f"{', '.join(v for v in known if v) or 'none'}")
    return cls(cfg, feature_map, seed=seed, steps_per_epoch=steps_per_epoch, variant=variant)
