"""MultiMNIST (and Multi-Fashion) to MindRecord splits for DSelect-k.

Two sources (``source`` in the config):

- ``idx``: build MultiMNIST from MNIST or Fashion-MNIST IDX files in
  ``raw_dir`` (:mod:`src.data.mnist_idx`). Every image is paired
  ``pairs_per_image`` times with a random partner *of a different class*
  from the same split; the first digit goes to the top-left of a 36x36
  canvas at an offset of ``0..max_shift`` pixels in each direction, the
  partner to the bottom-right (offset ``36-28-max_shift .. 8``), and
  overlapping pixels take the maximum. Labels: ``(top-left digit,
  bottom-right digit)``. ``val_fraction`` of the MNIST training *images*
  (not composites) are held out first, so no digit image appears in both
  train and validation. With the defaults (pairs 2, val 1/6) this gives
  100,000 / 20,000 / 20,000 composites, the split sizes of PaddleRec.
- ``pickle``: the Pareto-MTL / PaddleRec release. Either ``train.pickle`` and
  ``test.pickle`` (PaddleRec: each a pickled ``(images (N, 36, 36) uint8,
  labels (N, 2))``) or one ``multi_mnist.pickle`` / ``multi_fashion.pickle``
  (Pareto-MTL: ``(train images, train labels, test images, test labels)``)
  in ``raw_dir``. ``val_fraction`` of the training rows (seeded) become the
  validation split. Pickles are read with an unpickler that only builds numpy
  arrays, so a tampered file cannot run code.

Stored form: ``image`` uint8 ``(n, 1296)`` (36x36, row-major), ``label`` int32
``(n, 2)``; ``feature_map.json`` records the image shape, the tasks, the
classes, the source and the split sizes.
"""
import io
import os
import pickle

import numpy as np

from src.data import mnist_idx
from src import faults
from src.data.convert.shards import SplitWriter
from src.data.convert.publish import StagedConversion
from src.fileio import read_feature_map

CANVAS = 36
DIGIT = 28
TASKS = ("left", "right")
FORMAT_VERSION = 2        # 2: integrity record and fingerprints (src/data/convert/publish.py)
PADDLE_FILES = ("train.pickle", "test.pickle")
PARETO_FILES = ("multi_mnist.pickle", "multi_fashion.pickle", "multi_fashion_and_mnist.pickle")


class MultiMnistFormatError(ValueError):
    """A MultiMNIST pickle does not hold what the format promises."""


# ----------------------------------------------------------------- composing


def partners(labels, rng):
    """For every row, the index of a random row with a different label."""
    labels = np.asarray(labels)
    if len(np.unique(labels)) < 2:
        raise ValueError("MultiMNIST needs digits of at least two classes to pair")
    partner = rng.integers(0, len(labels), len(labels))
    same = labels[partner] == labels
    while same.any():
        partner[same] = rng.integers(0, len(labels), int(same.sum()))
        same = labels[partner] == labels
    return partner


def compose(images, labels, rng, pairs_per_image=1, max_shift=2):
    """``(composites (N*pairs, 36, 36) uint8, labels (N*pairs, 2) int32)``.

    Row ``r*N + i`` puts image ``i`` top-left and its ``r``-th random partner
    (of another class) bottom-right, both shifted by up to ``max_shift`` px.
    """
    slack = CANVAS - DIGIT
    if not 0 <= max_shift <= slack // 2:
        raise ValueError(f"max_shift must lie in [0, {slack // 2}], got {max_shift}")
    if pairs_per_image < 1:
        raise ValueError(f"pairs_per_image must be positive, got {pairs_per_image}")
    n = len(images)
    out = np.zeros((n * pairs_per_image, CANVAS, CANVAS), np.uint8)
    out_labels = np.zeros((n * pairs_per_image, 2), np.int32)
    for r in range(pairs_per_image):
        rows = slice(r * n, (r + 1) * n)
        partner = partners(labels, rng)
        out_labels[rows, 0], out_labels[rows, 1] = labels, labels[partner]
        block = out[rows]
        for source, low in ((np.arange(n), 0), (partner, slack - max_shift)):
            dy = rng.integers(low, low + max_shift + 1, n)
            dx = rng.integers(low, low + max_shift + 1, n)
            for oy in range(low, low + max_shift + 1):
                for ox in range(low, low + max_shift + 1):
                    sel = np.flatnonzero((dy == oy) & (dx == ox))
                    if sel.size:
                        region = block[sel, oy:oy + DIGIT, ox:ox + DIGIT]
                        block[sel, oy:oy + DIGIT, ox:ox + DIGIT] = np.maximum(region, images[source[sel]])
    return out, out_labels


# ----------------------------------------------------------------- pickles


class _ArrayUnpickler(pickle.Unpickler):
    """Builds numpy arrays and plain containers only."""

    _ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
                ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
                ("numpy._core.multiarray", "scalar"), ("builtins", "tuple"), ("builtins", "list")}

    def find_class(self, module, name):
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}: a MultiMNIST pickle holds "
                                     "numpy arrays only")


def _load_pickle(path):
    with open(path, "rb") as fh:
        raw = fh.read()
    try:
        return _ArrayUnpickler(io.BytesIO(raw), encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as exc:
        raise MultiMnistFormatError(f"{path}: not a readable MultiMNIST pickle ({exc})") from None


def _check_pair(path, images, labels, what=""):
    """Validated ``(images (N, 36, 36) uint8, labels (N, 2) int32)``; ``what``
    names the part of a file holding several (e.g. ``train``)."""
    what = what + " " if what else ""
    images, labels = np.asarray(images), np.asarray(labels)
    if images.ndim == 4 and images.shape[1] == 1:
        images = images[:, 0]
    if images.ndim != 3 or images.shape[1:] != (CANVAS, CANVAS):
        raise MultiMnistFormatError(f"{path}: {what}images must have shape (N, 36, 36), "
                                    f"got {images.shape}")
    if labels.ndim != 2 or labels.shape[1] != 2:
        raise MultiMnistFormatError(f"{path}: {what}labels must have shape (N, 2), got {labels.shape}")
    if len(images) != len(labels):
        raise MultiMnistFormatError(f"{path}: {len(images)} {what}images but {len(labels)} labels")
    if labels.dtype.kind not in "iu" and not (
            labels.dtype.kind == "f" and np.isfinite(labels).all() and (labels == np.rint(labels)).all()):
        raise MultiMnistFormatError(f"{path}: {what}labels must be whole numbers, got "
                                    f"{labels.dtype} values that are not")
    if labels.size and (labels.min() < 0 or labels.max() >= mnist_idx.NUM_CLASSES):
        raise MultiMnistFormatError(f"{path}: {what}labels must lie in [0, 10)")
    if images.dtype != np.uint8:
        if images.dtype.kind not in "iuf":
            raise MultiMnistFormatError(f"{path}: {what}images hold {images.dtype} values, "
                                        "not numbers")
        images = images.astype(np.float64)
        if not np.isfinite(images).all():
            raise MultiMnistFormatError(f"{path}: {what}images hold NaN or infinite pixel values")
        if images.size and (images.min() < 0 or images.max() > 255):
            raise MultiMnistFormatError(f"{path}: pixel values outside [0, 255]")
        if images.size and images.max() <= 1.0:          # scaled to [0, 1]
            images = images * 255.0
        images = np.rint(images).astype(np.uint8)
    return images, labels.astype(np.int32)


def read_pickle_pair(path):
    """``(images, labels)`` of a PaddleRec-style ``(images, labels)`` pickle."""
    data = _load_pickle(path)
    if not isinstance(data, (tuple, list)) or len(data) != 2:
        raise MultiMnistFormatError(f"{path}: expected a pickled (images, labels) pair, got "
                                    f"{type(data).__name__}"
                                    + (f" of {len(data)} items" if isinstance(data, (tuple, list)) else ""))
    return _check_pair(path, data[0], data[1])


def read_pickle_release(raw_dir):
    """``{"train": (images, labels), "test": (images, labels)}`` from ``raw_dir``."""
    paddle = [os.path.join(raw_dir, name) for name in PADDLE_FILES]
    if all(os.path.isfile(p) for p in paddle):
        return {"train": read_pickle_pair(paddle[0]), "test": read_pickle_pair(paddle[1])}
    for name in PARETO_FILES:
        path = os.path.join(raw_dir, name)
        if os.path.isfile(path):
            data = _load_pickle(path)
            if not isinstance(data, (tuple, list)) or len(data) != 4:
                raise MultiMnistFormatError(f"{path}: expected (train images, train labels, test "
                                            "images, test labels)")
            return {"train": _check_pair(path, data[0], data[1], "train"),
                    "test": _check_pair(path, data[2], data[3], "test")}
    raise FileNotFoundError(f"{raw_dir}: expected {' and '.join(PADDLE_FILES)} (PaddleRec) or one of "
                            f"{', '.join(PARETO_FILES)} (Pareto-MTL)")


# ----------------------------------------------------------------- conversion


def _holdout(n, fraction, rng):
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"val_fraction must lie in (0, 1), got {fraction}")
    order = rng.permutation(n)
    cut = int(round(n * fraction))
    return np.sort(order[cut:]), np.sort(order[:cut])


def _write_split(stage, split, images, labels, block_rows):
    columns = {"image": (np.uint8, CANVAS * CANVAS), "label": (np.int32, 2)}
    with SplitWriter(stage.path, split, columns, block_rows, description=f"multimnist {split}",
                     on_close=stage.record) as writer:
        step = 10000
        for lo in range(0, len(images), step):
            writer.write({"image": images[lo:lo + step].reshape(-1, CANVAS * CANVAS),
                          "label": labels[lo:lo + step]})
    print(f"  {split}: {len(images)} images written", flush=True)
    faults.point("convert.split_written")
    return len(images)


def convert(raw_dir, out_dir, source="idx", val_fraction=1 / 6, pairs_per_image=2, max_shift=2,
            seed=1, block_rows=1024):
    """Write ``train``/``val``/``test`` MindRecord splits and ``feature_map.json``; returns the map."""
    if source not in ("idx", "pickle"):
        raise ValueError(f"source must be 'idx' or 'pickle', got {source!r}")
    if not os.path.isdir(raw_dir):
        raise FileNotFoundError(f"raw data folder {raw_dir} not found")
    with StagedConversion(out_dir) as stage:
        fmap = _convert_into(stage, raw_dir, source, val_fraction, pairs_per_image, max_shift, seed,
                             block_rows)
        stage.publish(fmap, ENCODING_KEYS)
    print(f"published {stage.target} (fingerprint {fmap['fingerprint']})", flush=True)
    return fmap


# what decides the model inputs (a checkpoint must agree with these)
ENCODING_KEYS = ("image_shape", "tasks", "num_classes", "columns")


def _convert_into(stage, raw_dir, source, val_fraction, pairs_per_image, max_shift, seed,
                  block_rows):
    rng = np.random.default_rng(seed)
    splits = {}
    if source == "idx":
        train_images, train_labels = mnist_idx.load_split(raw_dir, "train")
        test_images, test_labels = mnist_idx.load_split(raw_dir, "test")
        print(f"read {len(train_images)} train and {len(test_images)} test digits from {raw_dir}",
              flush=True)
        keep, held = _holdout(len(train_images), val_fraction, rng)
        parts = {"train": (train_images[keep], train_labels[keep]),
                 "val": (train_images[held], train_labels[held]),
                 "test": (test_images, test_labels)}
        for split, (images, labels) in parts.items():
            composites, pair_labels = compose(images, labels, rng, pairs_per_image, max_shift)
            splits[split] = _write_split(stage, split, composites, pair_labels, block_rows)
    else:
        release = read_pickle_release(raw_dir)
        images, labels = release["train"]
        keep, held = _holdout(len(images), val_fraction, rng)
        print(f"read {len(images)} train and {len(release['test'][0])} test composites from "
              f"{raw_dir}", flush=True)
        splits["train"] = _write_split(stage, "train", images[keep], labels[keep], block_rows)
        splits["val"] = _write_split(stage, "val", images[held], labels[held], block_rows)
        splits["test"] = _write_split(stage, "test", *release["test"], block_rows)
    fmap = {
        "format_version": FORMAT_VERSION, "dataset": "multimnist", "source": source,
        "raw_dir": os.path.abspath(raw_dir), "image_shape": [1, CANVAS, CANVAS],
        "tasks": list(TASKS), "num_classes": mnist_idx.NUM_CLASSES,
        "columns": {"image": {"dtype": "uint8", "width": CANVAS * CANVAS},
                    "label": {"dtype": "int32", "width": 2}},
        "splits": splits, "seed": seed, "val_fraction": val_fraction,
        "pairs_per_image": pairs_per_image if source == "idx" else None,
        "max_shift": max_shift if source == "idx" else None,
    }
    return fmap


def load_feature_map(data_dir):
    """The feature map written by :func:`convert`, checked."""
    return read_feature_map(data_dir, "multimnist", FORMAT_VERSION,
                            "python prepare_data.py --model <a model on multimnist> --raw_data_path <MNIST IDX "
                            f"folder> --data_path {data_dir}", required=ENCODING_KEYS + ("splits",))

