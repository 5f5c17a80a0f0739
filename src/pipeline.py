"""Assembling an entry point's run from the config: the registry's model
spec and its data, the runtime, and for a checkpoint the network built with
the checkpoint's sizes. The engine (src/engine/) gets the spec from here and
never looks a model up itself."""
import os

from src.config import config_for_model, require_path
from src.engine import checkpoint
from src.engine.runtime import setup_runtime
from src.engine.setup import build_network
from src.fileio import FEATURE_MAP_FILE
from src.registry import get_model_spec


def model_and_data(cfg):
    """``(spec, feature_map)`` for the configured model and data_path."""
    require_path(cfg, "data_path", kind="dir")
    spec = get_model_spec(cfg.model)
    return spec, spec.load_feature_map(cfg.data_path)


class _FromCheckpoint:
    """The config as the network build sees it when loading a checkpoint:
    every key the build reads comes from the checkpoint's own run config
    unless the command line set it (``forced`` keys win over both), so
    ``--ckpt_file`` needs no repetition of the training's sizes. Where and
    how this process computes (the runtime keys and the model's
    ``compute_keys``, e.g. a CPU kernel) is always this config's: a
    checkpoint trained on CPU runs with the GPU config's operators.
    ``changed`` lists the keys where the checkpoint differed from the config."""

    # where and how this process runs: always this config's
    _RUNTIME = ("amp_level", "device_target", "device_id", "mode", "cpu_threads", "data_path")

    def __init__(self, cfg, stored, forced, compute_keys=()):
        self._cfg, self._stored, self._forced = cfg, stored or {}, forced
        self._own = frozenset(self._RUNTIME) | frozenset(compute_keys) | cfg.cli_keys
        self.changed = {}

    def get(self, key, default=None):
        if key in self._forced:
            return self._forced[key]
        value = self._cfg.get(key, default)
        if key in self._stored and key not in self._own:
            stored = self._stored[key]
            if stored != value:
                self.changed[key] = stored
            return stored
        return value

    def __getattr__(self, key):
        if key.startswith("_"):
            raise AttributeError(key)
        if key not in self._cfg and key not in self._forced:
            return getattr(self._cfg, key)          # the config's own error
        return self.get(key)

    def __contains__(self, key):
        return key in self._cfg


def checkpoint_config(cfg):
    """``(cfg, loaded checkpoint)`` for ``cfg.ckpt_file``: the config resolved
    for the model the checkpoint was trained as; ``--model`` naming another is
    refused."""
    require_path(cfg, "ckpt_file", kind="file")
    loaded = checkpoint.read_checkpoint(cfg.ckpt_file)
    written_by = loaded[1].get("model")
    if written_by and written_by != cfg.model and "model" in cfg.cli_keys:
        # before the data set is read: its mismatch would name the wrong culprit
        raise checkpoint.CheckpointError(
            f"{cfg.ckpt_file} was written by model '{written_by}', but --model says "
            f"'{cfg.model}' (leave --model out: the checkpoint names its model)")
    if written_by and written_by != cfg.model:
        print(f"{cfg.ckpt_file} is a {written_by} checkpoint: using model {written_by}", flush=True)
        cfg = config_for_model(cfg, written_by)
    return cfg, loaded


def trained_network(cfg, overrides_for=None):
    """``(cfg, spec, feature_map, network, checkpoint metadata)`` for ``cfg.ckpt_file``:
    the runtime set up, the network built with the checkpoint's sizes and the
    checked checkpoint loaded. ``overrides_for="export"`` applies the model's
    export_overrides (e.g. the exportable convolution; the weights are the
    same)."""
    cfg, loaded = checkpoint_config(cfg)
    params, meta = loaded
    setup_runtime(cfg)
    spec, feature_map = model_and_data(cfg)
    checkpoint.check_data(meta, cfg.ckpt_file, feature_map,
                          os.path.join(cfg.data_path, FEATURE_MAP_FILE))
    forced = dict(spec.export_overrides or {}) if overrides_for == "export" else {}
    for key, value in forced.items():
        if cfg.get(key) != value:
            print(f"export: using {key}={value} (training used {cfg.get(key)})", flush=True)
    view = _FromCheckpoint(cfg, meta.get("config"), forced, spec.compute_keys)
    network = build_network(spec, view, feature_map)
    if view.changed:
        print(f"{cfg.ckpt_file}: built with the checkpoint's " + ", ".join(
            f"{k}={v}" for k, v in sorted(view.changed.items())), flush=True)
    meta = checkpoint.load_into(network, cfg.ckpt_file, spec.name, loaded=(params, meta))
    return cfg, spec, feature_map, network, meta
