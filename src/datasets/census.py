"""Census-Income (KDD 1994/1995 extract): two binary tasks on one-hot plus
numeric features."""
import numpy as np

from src.datasets.base import DataSet


def _convert(cfg):
    from src.data import census
    return census.convert(cfg.raw_data_path, cfg.data_path,
                          keep_instance_weight=cfg.keep_instance_weight,
                          val_fraction=cfg.val_fraction, seed=cfg.seed, block_rows=cfg.block_rows)


def _load(data_dir):
    from src.data import census
    return census.load_feature_map(data_dir)


def _make_batch(batch, fmap):
    from src.data.census import to_dense
    x = to_dense(batch["cat"], batch["num"], fmap["input_dim"])
    return x, batch["label"].astype(np.float32)


def _synthetic(raw_dir, seed=1, scale=1.0):
    """Train and test files of 40,000 and 20,000 rows times ``scale``."""
    from src.synth import census
    rows = max(100, int(40_000 * scale))
    census.generate_dataset(raw_dir, rows, rows // 2, seed=seed)


CENSUS = DataSet(
    name="census", title="Census-Income",
    convert=_convert, load_feature_map=_load, make_batch=_make_batch,
    input_signature=lambda fmap: [("x", np.float32, (fmap["input_dim"],))],
    task_names=lambda fmap: list(fmap["tasks"]),
    synthetic=_synthetic,
    convert_keys=("keep_instance_weight", "val_fraction", "block_rows"))
