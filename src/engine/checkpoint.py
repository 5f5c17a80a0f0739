"""Checkpoints: atomic writes, metadata, checked loading, rotation.

Every checkpoint carries metadata (``model``, ``epoch``, ``global_step``) so
that loading a checkpoint of another model, or of another shape, fails with
a message that says so instead of a shape error deep inside MindSpore.
Files are written under a temporary name and renamed: a run killed while
saving never leaves a truncated ``.ckpt`` behind.
"""
import hashlib
import glob
import os
import re

import mindspore as ms
import numpy as np

META_KEYS = ("model", "epoch", "global_step")
# Stored with a prefix: the optimizer has a parameter named global_step.
_META_PREFIX = "zoo_meta_"


class CheckpointError(ValueError):
    """A checkpoint that cannot be used for the requested network."""


def save_checkpoint(cell, path, model, epoch, global_step):
    """Save every parameter of ``cell`` with metadata, atomically."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    tmp = os.path.join(directory, f".tmp-{os.getpid()}-{os.path.basename(path)}")
    if not tmp.endswith(".ckpt"):
        tmp += ".ckpt"
    meta = {"model": str(model), "epoch": int(epoch), "global_step": int(global_step)}
    ms.save_checkpoint(cell, tmp, append_dict={_META_PREFIX + k: v for k, v in meta.items()})
    os.replace(tmp, path)
    return path


def read_checkpoint(path):
    """``(parameters, metadata)`` of a checkpoint file."""
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        params = ms.load_checkpoint(path)
    except (RuntimeError, ValueError, OSError) as exc:
        raise CheckpointError(f"{path} is not a readable MindSpore checkpoint: {exc}") from None
    meta = {}
    for key in META_KEYS:
        if _META_PREFIX + key in params:
            value = params.pop(_META_PREFIX + key)
            meta[key] = value.asnumpy().item() if hasattr(value, "asnumpy") else value
    _join_row_moments(params)
    return params, meta


def _join_row_moments(params):
    """Checkpoints written before lazy Adam kept a row's two moments side by
    side hold them as ``row_moment1`` and ``row_moment2`` (rows x D each):
    joined into ``row_moments`` (rows x 2 x D), so such runs still resume."""
    if "row_moments" in params or not {"row_moment1", "row_moment2"} <= set(params):
        return
    first, second = params.pop("row_moment1").asnumpy(), params.pop("row_moment2").asnumpy()
    params["row_moments"] = ms.Parameter(ms.Tensor(np.stack([first, second], axis=1)),
                                         name="row_moments", requires_grad=False)


def load_into(cell, path, model, allow_missing=(), skip=()):
    """Load ``path`` into ``cell`` after checking model name, names and shapes.

    Every parameter of ``cell`` must be in the checkpoint with the same shape,
    except names starting with a prefix in ``allow_missing``. Extra entries in
    the checkpoint (e.g. optimizer state when loading into a bare network) are
    ignored, and so are the names in ``skip`` (they keep the cell's values).
    Returns the checkpoint's metadata.
    """
    params, meta = read_checkpoint(path)
    for name in skip:
        params.pop(name, None)
    written_by = meta.get("model")
    if written_by is not None and written_by != model:
        raise CheckpointError(f"{path} was written by model '{written_by}', but the config selects "
                              f"'{model}' (set --model {written_by} or pick another checkpoint)")
    missing, mismatched = [], []
    for p in cell.get_parameters():
        if p.name in skip:
            continue
        if p.name not in params:
            if not p.name.startswith(tuple(allow_missing)):
                missing.append(p.name)
        elif tuple(params[p.name].shape) != tuple(p.shape):
            mismatched.append(f"{p.name}: checkpoint {tuple(params[p.name].shape)} vs network "
                              f"{tuple(p.shape)}")
    if mismatched:
        raise CheckpointError(f"{path} does not fit this network (different sizes in the config or "
                              f"the feature map?): " + "; ".join(mismatched[:5]))
    if missing:
        raise CheckpointError(f"{path} lacks {len(missing)} parameters of this network, e.g. "
                              f"{', '.join(missing[:5])} (a checkpoint of another model?)")
    ms.load_param_into_net(cell, params)
    return meta


_PERIODIC = re.compile(r"-(\d+)_(\d+)\.ckpt$")


def periodic_checkpoints(directory, prefix):
    """Periodic checkpoints ``<prefix>-<epoch>_<step>.ckpt``, oldest first."""
    found = []
    for path in glob.glob(os.path.join(directory, f"{glob.escape(prefix)}-*_*.ckpt")):
        match = _PERIODIC.search(path)
        if match:
            found.append((int(match.group(1)), int(match.group(2)), path))
    return [path for _, _, path in sorted(found)]


def rotate(directory, prefix, keep):
    """Delete the oldest periodic checkpoints beyond ``keep`` (0 keeps all)."""
    if keep <= 0:
        return
    for path in periodic_checkpoints(directory, prefix)[:-keep]:
        os.remove(path)


def fingerprint(cell):
    """A short hash of every parameter's name and values (compare ranks or runs)."""
    digest = hashlib.sha256()
    for param in sorted(cell.get_parameters(), key=lambda p: p.name):
        digest.update(param.name.encode())
        digest.update(param.asnumpy().tobytes())
    return digest.hexdigest()[:16]
