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
             "encoding_fingerprint", "shard_plan", "sharded", "shard_rank")
_JSON_KEYS = ("config", "shard_plan", "sharded")
FORMAT = 2          # 2: CRC, config and fingerprints
# Stored with a prefix: the optimizer has a parameter named global_step.
_META_PREFIX = "zoo_meta_"


def shard_path(path, rank, ranks):
    """The file of rank ``rank``'s shard of the checkpoint ``path``."""
    stem = path[:-len(".ckpt")] if path.endswith(".ckpt") else path
    return f"{stem}.shard{rank}of{ranks}.ckpt"


def save_checkpoint(cell, path, model, epoch, global_step, config=None, data_fingerprint=None,
                    encoding_fingerprint=None, shard=None):
    """Save every parameter of ``cell`` with metadata and a CRC, atomically.

    ``shard``: ``(plan, rank)`` when ``cell`` holds a rank's shard of a table
    (its table-sized parameters, marked ``layerwise_parallel``: see
    src/engine/sharded.py).
    Then every rank writes those parameters to its :func:`shard_path`, and
    rank 0 writes the others to ``path`` with the plan; every file carries the
    epoch and step, so a set written at different times is refused on
    loading."""
    meta = {"model": str(model), "epoch": int(epoch), "global_step": int(global_step),
            "format": FORMAT}
    if config is not None:
        meta["config"] = json.dumps(config, sort_keys=True, default=str)
    for key, value in (("data_fingerprint", data_fingerprint),
                       ("encoding_fingerprint", encoding_fingerprint)):
        if value is not None:
            meta[key] = str(value)
    if shard is None:
        _write(cell, path, meta)
        return path
    plan, rank = shard
    own = [p for p in cell.get_parameters() if p.layerwise_parallel]
    meta["shard_plan"] = json.dumps(plan.to_dict(), sort_keys=True)
    _write([{"name": p.name, "data": p} for p in own], shard_path(path, rank, plan.ranks),
           dict(meta, shard_rank=int(rank)))
    if rank == 0:
        meta["sharded"] = json.dumps(sorted(p.name for p in own))
        _write([{"name": p.name, "data": p} for p in cell.get_parameters()
                if not p.layerwise_parallel], path, meta)
    return path


def _write(save_obj, path, meta):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)

    def write(tmp):
        try:
            with _Quiet():                      # a failure gets our one-line message
                ms.save_checkpoint(save_obj, tmp, crc_check=True,
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


def read_checkpoint(path, reshard=None):
    """``(parameters, metadata)`` of a checkpoint file, its CRC verified.

    A checkpoint of a sharded table (see :func:`save_checkpoint`) comes with
    the table-shaped parameters put together from its shard files: the whole
    table, or with ``reshard`` ``(plan, rank, names)`` rank ``rank``'s rows
    under ``plan`` (another rank count or mode). ``reshard`` also cuts those
    ``names`` of a checkpoint of a whole table to the rank's rows."""
    params, meta = _read_file(path)
    if "shard_plan" in meta or reshard is not None:
        _put_shards_together(path, params, meta, reshard)
    return params, meta


def _read_file(path):
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
    for key in _JSON_KEYS:
        if key in meta:
            meta[key] = json.loads(meta[key])
    _join_row_moments(params)
    return params, meta


def _put_shards_together(path, params, meta, reshard):
    """Replace the table-shaped entries of ``params`` by the rows the reader
    holds (see :func:`read_checkpoint`)."""
    from src.engine.shard_plan import ShardPlan, make_plan
    if "shard_plan" in meta:
        source = ShardPlan.from_dict(meta["shard_plan"])
        names = meta.get("sharded", [])
        shards = {}

        def rows(name):
            def of_rank(r):
                if r not in shards:
                    shards[r] = _read_shard(path, meta, source, r)
                if name not in shards[r]:
                    raise CheckpointError(f"{shard_path(path, r, source.ranks)} lacks {name}")
                return shards[r][name].asnumpy()[:-1]        # without the scratch row
            return of_rank
    else:
        names = [n for n in reshard[2] if n in params]
        source = None
    if reshard is not None:
        target, rank = reshard[0], reshard[1]
    else:
        target, rank = make_plan("data", source.cardinalities, 1), 0
    for name in names:
        if source is None:
            whole = params[name].asnumpy()
            if len(whole) != target.total + 1:
                raise CheckpointError(f"{path}: {name} has {len(whole)} rows, the table "
                                      f"{target.total} plus the scratch row")
            part = target.shard(whole[:-1], rank)
        else:
            try:
                part = target.take(rank, source, rows(name))
            except ValueError as exc:          # another table, or a shard cut short
                raise CheckpointError(f"{path}: {exc}") from None
        scratch = np.zeros((1,) + part.shape[1:], part.dtype)
        params[name] = ms.Parameter(ms.Tensor(np.concatenate([part, scratch])), name=name,
                                    requires_grad=False)


def _read_shard(path, meta, plan, rank):
    """One shard file of a sharded checkpoint, checked against its main file."""
    shard = shard_path(path, rank, plan.ranks)
    if not os.path.isfile(shard):
        raise CheckpointError(f"{path} holds a table sharded over {plan.ranks} ranks, but its "
                              f"shard file {shard} is missing: copy every rank's shard files "
                              f"next to it (each rank writes its own)")
    params, own = _read_file(shard)
    for key in ("model", "epoch", "global_step", "shard_plan"):
        if own.get(key) != meta.get(key):
            raise CheckpointError(f"{shard} does not belong to {path} ({key} {own.get(key)!r} vs "
                                  f"{meta.get(key)!r}): a save was cut short; use another "
                                  "checkpoint, e.g. an earlier periodic one of the run")
    return params


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


def load_into(cell, path, model, allow_missing=(), skip=(), loaded=None, reshard=None):
    """Load ``path`` into ``cell`` after checking model name, names and shapes.

    Every parameter of ``cell`` must be in the checkpoint with the same shape,
    except names starting with a prefix in ``allow_missing``. Extra entries in
    the checkpoint (e.g. optimizer state when loading into a bare network) are
    ignored, and so are the names in ``skip`` (they keep the cell's values).
    ``loaded``: the ``(parameters, metadata)`` of an earlier
    :func:`read_checkpoint` of ``path``. Returns the checkpoint's metadata.
    """
    params, meta = loaded if loaded is not None else read_checkpoint(path, reshard)
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
        for shard in glob.glob(glob.escape(path[:-len(".ckpt")]) + ".shard*of*.ckpt"):
            os.remove(shard)


def fingerprint(cell, skip=()):
    """A short hash of every parameter's name and values but those named in
    ``skip`` (compare ranks or runs)."""
    digest = hashlib.sha256()
    for param in sorted(cell.get_parameters(), key=lambda p: p.name):
        if param.name in skip:
            continue
        digest.update(param.name.encode())
        digest.update(param.asnumpy().tobytes())
    return digest.hexdigest()[:16]
