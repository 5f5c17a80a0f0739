"""MultiMNIST: two overlaid digits per 36x36 image, one ten-class task per
digit (left, right)."""
import numpy as np

from src.datasets.base import DataSet


def _convert(cfg):
    from src.data import multimnist
    return multimnist.convert(cfg.raw_data_path, cfg.data_path, source=cfg.source,
                              val_fraction=cfg.val_fraction, pairs_per_image=cfg.pairs_per_image,
                              max_shift=cfg.max_shift, seed=cfg.seed, block_rows=cfg.block_rows)


def _load(data_dir):
    from src.data import multimnist
    return multimnist.load_feature_map(data_dir)


def _make_batch(batch, fmap):
    images = batch["image"].astype(np.float32) * np.float32(1.0 / 255.0)
    return images.reshape((-1,) + tuple(fmap["image_shape"])), batch["label"].astype(np.int32)


def _synthetic(raw_dir, seed=1, scale=1.0):
    """MNIST-format IDX files of 6,000 training and 1,000 test digits times ``scale``."""
    from src.synth import mnist
    mnist.generate_idx(raw_dir, train=max(100, int(6000 * scale)),
                       test=max(50, int(1000 * scale)), seed=seed)


MULTIMNIST = DataSet(
    name="multimnist", title="MultiMNIST",
    convert=_convert, load_feature_map=_load, make_batch=_make_batch,
    input_signature=lambda fmap: [("image", np.float32, tuple(fmap["image_shape"]))],
    task_names=lambda fmap: list(fmap["tasks"]),
    synthetic=_synthetic, task_type="multiclass",
    output_shape=lambda fmap: (len(fmap["tasks"]), fmap["num_classes"]),
    convert_keys=("source", "val_fraction", "pairs_per_image", "max_shift",
                  "block_rows"))
