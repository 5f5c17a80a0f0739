"""Building the pieces an entry point needs from the config."""
import mindspore as ms

from src.config import require_path
from src.engine import checkpoint
from src.engine.runtime import setup_runtime
from src.data.reader import BlockDataset
from src.models import get_model_spec


def model_and_data(cfg):
    """``(spec, feature_map)`` for the configured model and data_path."""
    require_path(cfg, "data_path", kind="dir")
    spec = get_model_spec(cfg.model)
    return spec, spec.load_feature_map(cfg.data_path)


def split_reader(spec, feature_map, cfg, split, training=False, num_shards=1, shard_id=0,
                 transform=None):
    """A :class:`BlockDataset` over ``split`` with the model's batch transform
    (or ``transform``, e.g. :meth:`ModelSpec.train_transform`)."""
    return BlockDataset(cfg.data_path, split, spec.columns(feature_map),
                        cfg.batch_size if training else cfg.eval_batch_size,
                        shuffle=training, seed=cfg.seed,
                        drop_remainder=training and cfg.drop_remainder,
                        num_shards=num_shards, shard_id=shard_id,
                        transform=transform or spec.transform(feature_map),
                        shuffle_buffer_rows=cfg.shuffle_buffer_rows,
                        equal_shards=training and num_shards > 1)


def build_network(spec, cfg, feature_map):
    """The model's network, cast for mixed precision when amp_level asks."""
    network = spec.build_network(cfg, feature_map)
    if cfg.amp_level in ("O2", "O3"):
        # casts the cells in place; the wrapper it returns (which only casts the
        # output to float32) would hide forward_rows / forward_with_reg / table_ids,
        # and NetWithLoss and Predictor cast the output themselves
        ms.amp.auto_mixed_precision(network, cfg.amp_level)
    elif cfg.amp_level != "O0":
        network = ms.amp.auto_mixed_precision(network, cfg.amp_level)
    return network


def trained_network(cfg, overrides_for=None):
    """``(spec, feature_map, network, checkpoint metadata)`` for ``cfg.ckpt_file``:
    the runtime set up, the network built and the checked checkpoint loaded.
    ``overrides_for="export"`` applies the model's export_overrides to ``cfg``
    first (e.g. the exportable convolution; the weights are the same)."""
    require_path(cfg, "ckpt_file", kind="file")
    setup_runtime(cfg)
    spec, feature_map = model_and_data(cfg)
    if overrides_for == "export":
        for key, value in (spec.export_overrides or {}).items():
            if cfg.get(key) != value:
                print(f"export: using {key}={value} (training used {cfg.get(key)})", flush=True)
                setattr(cfg, key, value)
    network = build_network(spec, cfg, feature_map)
    meta = checkpoint.load_into(network, cfg.ckpt_file, spec.name)
    return spec, feature_map, network, meta
