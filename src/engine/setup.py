"""Engine pieces built from the config for a model spec: its checked split
readers and its network (mixed precision applied). The spec comes from the
caller (src/pipeline.py looks it up in the registry)."""
import os

import mindspore as ms

from src.data.convert.publish import DataSetError, verify_split
from src.data.reader import BlockDataset
from src.fileio import FEATURE_MAP_FILE


def split_reader(spec, feature_map, cfg, split, training=False, num_shards=1, shard_id=0,
                 transform=None):
    """A :class:`BlockDataset` over ``split`` with the model's batch transform
    (or ``transform``, e.g. :meth:`ModelSpec.train_transform`), checked
    against the feature map's record of the split: its files, their sizes and
    its row count (a split cut short or from another conversion is refused).
    ``split`` may be a list of splits, read as one (``train_splits``)."""
    splits = [split] if isinstance(split, str) else list(split)
    expected = sum(verify_split(cfg.data_path, feature_map, name) for name in splits)
    data = BlockDataset(cfg.data_path, split, spec.columns(feature_map),
                        cfg.batch_size if training else cfg.eval_batch_size,
                        shuffle=training, seed=cfg.seed,
                        drop_remainder=training and cfg.drop_remainder,
                        num_shards=num_shards, shard_id=shard_id,
                        transform=transform or spec.transform(feature_map),
                        shuffle_buffer_rows=cfg.shuffle_buffer_rows,
                        equal_shards=training and num_shards > 1,
                        digests=_content_digests(spec, feature_map))
    if data.total_rows != expected:
        raise DataSetError(f"{data.path} holds {data.total_rows} rows but "
                           f"{os.path.join(cfg.data_path, FEATURE_MAP_FILE)} records {expected}: "
                           "the split does not belong to this conversion; convert the data again")
    def guard():
        for name in splits:
            _unchanged(cfg.data_path, feature_map, name)
    data.guard = guard
    return data


def _content_digests(spec, feature_map):
    """``{file: sha256 of its rows}`` when the model reads every written
    column in the written order (what the converter hashed), else None."""
    if list(spec.columns(feature_map)) != list(feature_map.get("columns", {})):
        return None
    files = (feature_map.get("contents") or {}).get("files", {})
    return {name: entry["sha256"] for name, entry in files.items() if "rows" in entry}


def _unchanged(data_dir, feature_map, split):
    """A streamed split must still be the conversion it was opened as."""
    try:
        verify_split(data_dir, feature_map, split)
    except DataSetError as exc:
        raise DataSetError(f"the data set in {data_dir} changed while it was being read (a "
                           f"conversion replaced it?): {exc}. The run stopped rather than mix two "
                           "data sets; train on the new one in a new run (another --output_path "
                           "or --replace_run True)") from None


def build_network(spec, cfg, feature_map):
    """The model's network, cast for mixed precision when amp_level asks."""
    network = spec.build_network(cfg, feature_map)
    spec.check_network(network)
    if cfg.amp_level in ("O2", "O3"):
        # casts the cells in place; the wrapper it returns (which only casts the
        # output to float32) would hide forward_rows / forward_with_reg / table_ids,
        # and NetWithLoss and Predictor cast the output themselves
        ms.amp.auto_mixed_precision(network, cfg.amp_level)
    elif cfg.amp_level != "O0":
        network = ms.amp.auto_mixed_precision(network, cfg.amp_level)
    return network
