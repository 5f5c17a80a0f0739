"""PyTorch peers of this project's four networks, for the benchmark
(``bench/workload.py``): the same layers, initialisation, loss, optimizer
and batches as our MindSpore implementation, on PyTorch's CPU kernels.

``build_peer(cfg, feature_map, seed)`` returns a :class:`PeerModel` with

* ``module``: the ``torch.nn.Module`` producing logits like ours;
* ``train_step(*batch)``: forward, loss, backward, optimizer step on the
  numpy batch ``spec.make_batch`` returns; returns the loss;
* ``predict(*inputs)``: eval-mode probabilities (numpy), our Predictor's output;
* ``load_from_mindspore(network)``: copy our network's parameters in.

``python -m bench.peer.check`` checks every peer against ours (forward,
one training step, initialisation statistics). See ``common`` for the
optimizer mapping.
"""
from bench.peer.common import PeerModel, torch_threads

__all__ = ["PeerModel", "build_peer", "torch_threads"]


def build_peer(cfg, feature_map, seed=1, steps_per_epoch=None):
    """The :class:`PeerModel` of ``cfg.model`` (mmoe, deepfm, dlrm, dselect_k).

    ``steps_per_epoch`` sizes the learning-rate table as our trainer does
    (default: the feature map's train rows over ``cfg.batch_size``)."""
    model = cfg.model
    if model == "mmoe":
        from bench.peer.mmoe import MMoEPeer as cls
    elif model == "deepfm":
        from bench.peer.deepfm import DeepFMPeer as cls
    elif model == "dlrm":
        from bench.peer.dlrm import DLRMPeer as cls
    elif model == "dselect_k":
        from bench.peer.dselect_k import DSelectKPeer as cls
    else:
        raise ValueError(f"no peer for model {model!r}")
    return cls(cfg, feature_map, seed=seed, steps_per_epoch=steps_per_epoch)
