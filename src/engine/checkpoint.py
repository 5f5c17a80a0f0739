"""Checkpoints: atomic writes, self-description, verified loading, rotation.

Every checkpoint carries metadata: ``model``, ``epoch``, ``global_step``, the
run's effective ``config`` (JSON) and the fingerprints of the data set it was
trained on (``data_fingerprint``, ``encoding_fingerprint``: see
src/data/convert/publish.py). Loading a checkpoint of another model, of other sizes
or for another feature encoding fails with a message that says so instead of
a shape error deep inside MindSpore (or, worse, wrong results). Each file is
written with MindSpore's CRC and read with it checked, so a damaged file is
refused. Files are written under a temporary name and renamed: a run killed
while saving never leaves a truncated ``.ckpt`` behind, and the temporary
file is removed when the next run claims the folder.
"""
import hashlib
import glob
import json
import logging
import os
import re

import mindspore as ms
import numpy as np

from src import faults
from src.fileio import replace_atomic
from src.engine.errors import CheckpointError

META_KEYS = ("model", "epoch", "global_step", "config", "data_fingerprint",
             "encoding_fingerprint")
FORMAT = 2          # 2: CRC, config and fingerprints
# Stored with a prefix: the optimizer has a parameter named global_step.
_META_PREFIX = "zoo_meta_"


def save_checkpoint(cell, path, model, epoch, global_step, config=None, data_fingerprint=None,
                    encoding_fingerprint=None):
    """Save every parameter of ``cell`` with metadata and a CRC, atomically."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    meta = {"model": str(model), "epoch": int(epoch), "global_step": int(global_step),
            "format": FORMAT}
    if config is not None:
        meta["config"] = json.dumps(config, sort_keys=True, default=str)
    for key, value in (("data_fingerprint", data_fingerprint),
                       ("encoding_fingerprint", encoding_fingerprint)):
        if value is not None:
            meta[key] = str(value)

    def write(tmp):
        try:
            with _Quiet():                      # a failure gets our one-line message
                ms.save_checkpoint(cell, tmp, crc_check=True,
                                   append_dict={_META_PREFIX + k: v for k, v in meta.items()})
        except BaseException:
            own = os.path.splitext(tmp)[0] + ".tmp"        # MindSpore's own scratch file
            if os.path.exists(own):
                os.remove(own)
            raise
        if not tmp.endswith(".ckpt"):                      # MindSpore added the suffix
            os.replace(tmp + ".ckpt", tmp)
        faults.point("checkpoint.tmp_written")
    replace_atomic(path, write)
    faults.point("checkpoint.saved")
    return path


class _Quiet:
    """Silence MindSpore's own error log while it reads or writes a checkpoint
    (a damaged file or a full disk gets our one-line message, not two)."""

    def __enter__(self):
        self.logger = logging.getLogger(ms.log._get_logger().name)   # pylint: disable=protected-access
        self.level = self.logger.level
        self.logger.setLevel(logging.CRITICAL + 1)

    def __exit__(self, *exc):
        self.logger.setLevel(self.level)
        return False


def read_checkpoint(path):
    """``(parameters, metadata)`` of a checkpoint file, its CRC verified."""
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint {path} does not exist"
                              + (" (it is a folder)" if os.path.isdir(path) else ""))
    if not os.access(path, os.R_OK):
        raise CheckpointError(f"checkpoint {path} is not readable (permission denied)")
    try:
        with _Quiet():
            params = ms.load_checkpoint(path, crc_check=True)
    except (RuntimeError, ValueError, OSError, TypeError) as exc:
        raise CheckpointError(f"{path} is damaged or not a MindSpore checkpoint (its CRC or "
                              "content check failed); use another checkpoint, e.g. an earlier "
                              "periodic one of the run") from None
    meta = {}
    for key in META_KEYS + ("format",):
        if _META_PREFIX + key in params:
            value = params.pop(_META_PREFIX + key)
            meta[key] = value.asnumpy().item() if hasattr(value, "asnumpy") else value
    if "config" in meta:
        meta["config"] = json.loads(meta["config"])
    _join_row_moments(params)
    return params, meta


def check_data(meta, path, fmap, fmap_path):
    """Refuse a checkpoint trained for another feature encoding than the
    feature map's (another vocabulary, scaling or layout: same width or not)."""
    want = meta.get("encoding_fingerprint")
    have = fmap.get("encoding_fingerprint")
    if want and have and want != have:
        raise CheckpointError(
            f"{path} was trained on data encoded differently from {fmap_path} (encoding "
            f"fingerprint {want} vs {have}): the feature ids and scaling would not match; use "
            "the data set the checkpoint was trained on (or a conversion of the same raw data "
            "with the same options)")


def _join_row_moments(params):
    """Checkpoints written before lazy Adam kept a row's two moments side by
    side hold them as ``row_moment1`` and ``row_moment2`` (rows x D each):
    joined into ``row_moments`` (rows x 2 x D), so such runs still resume."""
    if "row_moments" in params or not {"row_moment1", "row_moment2"} <= set(params):
        return
    first, second = params.pop("row_moment1").asnumpy(), params.pop("row_moment2").asnumpy()
    params["row_moments"] = ms.Parameter(ms.Tensor(np.stack([first, second], axis=1)),
                                         name="row_moments", requires_grad=False)


def load_into(cell, path, model, allow_missing=(), skip=(), loaded=None):
    """Load ``path`` into ``cell`` after checking model name, names and shapes.

    Every parameter of ``cell`` must be in the checkpoint with the same shape,
    except names starting with a prefix in ``allow_missing``. Extra entries in
    the checkpoint (e.g. optimizer state when loading into a bare network) are
    ignored, and so are the names in ``skip`` (they keep the cell's values).
    ``loaded``: the ``(parameters, metadata)`` of an earlier
    :func:`read_checkpoint` of ``path``. Returns the checkpoint's metadata.
    """
    params, meta = loaded if loaded is not None else read_checkpoint(path)
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


def fingerprint(cell, shared_only=False):
    """A short hash of every parameter's name and values (compare ranks or
    runs); ``shared_only``: of the parameters every rank holds alike (not a
    rank's shard of a table, marked ``layerwise_parallel``)."""
    digest = hashlib.sha256()
    for param in sorted(cell.get_parameters(), key=lambda p: p.name):
        if shared_only and param.layerwise_parallel:
            continue
        digest.update(param.name.encode())
        digest.update(param.asnumpy().tobytes())
    return digest.hexdigest()[:16]
