"""Criteo click logs (Kaggle display advertising or Terabyte days): one click
task on 13 dense and 26 categorical fields, the categorical ids offset into
one table shared by the fields."""
import numpy as np

from src.datasets.base import DataSet


def _convert(cfg):
    from src.data import criteo
    return criteo.convert(cfg.raw_data_path, cfg.data_path, min_count=cfg.min_count,
                          max_ind_range=cfg.max_ind_range, dense_transform=cfg.dense_transform,
                          split=cfg.split, val_fraction=cfg.val_fraction,
                          test_fraction=cfg.test_fraction, days=cfg.days, seed=cfg.seed,
                          shard_rows=cfg.shard_rows, block_rows=cfg.block_rows,
                          skip_malformed=cfg.skip_malformed, parser=cfg.parser)


def _load(data_dir):
    from src.data import criteo
    return criteo.load_feature_map(data_dir)


def _make_batch(batch, fmap):
    offsets = np.asarray(fmap["offsets"], np.int32)
    cat = batch["cat"].astype(np.int32) + offsets
    return cat, batch["dense"].astype(np.float32), batch["label"].astype(np.float32)


def _synthetic(raw_dir, seed=1, scale=1.0):
    """A Kaggle-format train.txt of 100,000 lines times ``scale``."""
    from src.synth import criteo
    criteo.generate(raw_dir, max(1000, int(100_000 * scale)), seed=seed)


CRITEO = DataSet(
    name="criteo", title="Criteo",
    convert=_convert, load_feature_map=_load, make_batch=_make_batch,
    input_signature=lambda fmap: [("cat", np.int32, (fmap["num_cat"],)),
                                  ("dense", np.float32, (fmap["num_dense"],))],
    task_names=lambda fmap: ["click"],
    synthetic=_synthetic,
    convert_keys=("min_count", "max_ind_range", "dense_transform", "split",
                  "val_fraction", "test_fraction", "days", "shard_rows", "block_rows",
                  "skip_malformed"))
