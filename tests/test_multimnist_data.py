"""MNIST IDX reading, MultiMNIST composition, the pickle release and the
conversion to MindRecord, on files the tests write themselves."""
import gzip
import os
import pickle

import numpy as np
import pytest

from src.data import mnist_idx, multimnist
from src.data.mnist_idx import IdxFormatError, load_split, read_idx, write_idx
from src.synth.mnist import generate_idx
from src.data.multimnist import MultiMnistFormatError
from src.data.reader import BlockDataset

SHARED = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "..", "shared",
                      "data")


# ----------------------------------------------------------------- IDX


@pytest.mark.parametrize("name", ["a-idx3-ubyte", "a-idx3-ubyte.gz"])
def test_idx_roundtrip_plain_and_gzip(tmp_path, name):
    arr = np.random.default_rng(0).integers(0, 256, (5, 28, 28)).astype(np.uint8)
    path = write_idx(str(tmp_path / name), arr)
    got = read_idx(path)
    assert got.dtype == np.uint8 and got.shape == (5, 28, 28)
    np.testing.assert_array_equal(got, arr)


def test_idx_wrong_magic_truncated_and_overlong(tmp_path):
    path = str(tmp_path / "x")
    with open(path, "wb") as fh:
        fh.write(b"\x12\x34\x08\x01" + b"\x00" * 10)
    with pytest.raises(IdxFormatError, match="not an IDX file"):
        read_idx(path)
    good = write_idx(str(tmp_path / "y"), np.zeros((4, 28, 28), np.uint8))
    raw = open(good, "rb").read()
    with open(path, "wb") as fh:
        fh.write(raw[:-5])
    with pytest.raises(IdxFormatError, match="truncated"):
        read_idx(path)
    with open(path, "wb") as fh:
        fh.write(raw + b"\x00")
    with pytest.raises(IdxFormatError, match="longer"):
        read_idx(path)
    with open(path, "wb") as fh:
        fh.write(gzip.compress(raw)[:-12])
    with pytest.raises(IdxFormatError, match="gzip"):
        read_idx(path)


def _write_mnist(directory, images, labels, split="train"):
    image_stem, label_stem = mnist_idx.FILES[split]
    write_idx(os.path.join(directory, image_stem + ".gz"), images)
    write_idx(os.path.join(directory, label_stem + ".gz"), labels)


def test_load_split_checks_counts_sizes_and_labels(tmp_path):
    d = str(tmp_path)
    _write_mnist(d, np.zeros((3, 28, 28), np.uint8), np.array([1, 2], np.uint8))
    with pytest.raises(IdxFormatError, match="3 images but .* 2 labels"):
        load_split(d, "train")
    _write_mnist(d, np.zeros((2, 20, 20), np.uint8), np.array([1, 2], np.uint8))
    with pytest.raises(IdxFormatError, match=r"\(N, 28, 28\)"):
        load_split(d, "train")
    _write_mnist(d, np.zeros((2, 28, 28), np.uint8), np.array([1, 12], np.uint8))
    with pytest.raises(IdxFormatError, match="labels must lie"):
        load_split(d, "train")
    with pytest.raises(FileNotFoundError, match="t10k-images"):
        load_split(d, "test")


# ----------------------------------------------------------------- composing


def test_partners_have_another_class():
    labels = np.random.default_rng(1).integers(0, 3, 500)
    partner = multimnist.partners(labels, np.random.default_rng(2))
    assert np.all(labels[partner] != labels)
    with pytest.raises(ValueError, match="two classes"):
        multimnist.partners(np.zeros(5), np.random.default_rng(0))


def test_compose_without_shift_is_the_max_of_two_placed_digits():
    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, (20, 28, 28)).astype(np.uint8)
    labels = np.arange(20) % 10
    out, pair_labels = multimnist.compose(images, labels, np.random.default_rng(4), max_shift=0)
    assert out.shape == (20, 36, 36) and pair_labels.shape == (20, 2)
    np.testing.assert_array_equal(pair_labels[:, 0], labels)
    for i in range(20):
        j = np.flatnonzero(labels == pair_labels[i, 1])   # a partner of that class
        canvas = np.zeros((36, 36), np.uint8)
        canvas[:28, :28] = images[i]
        matches = []
        for cand in j:
            c = canvas.copy()
            c[8:, 8:] = np.maximum(c[8:, 8:], images[cand])
            matches.append(np.array_equal(c, out[i]))
        assert any(matches), i


def test_compose_shifts_stay_in_their_corners_and_pairs_repeat():
    images = np.full((10, 28, 28), 255, np.uint8)
    labels = np.arange(10)
    out, pair_labels = multimnist.compose(images, labels, np.random.default_rng(5),
                                          pairs_per_image=3, max_shift=2)
    assert out.shape == (30, 36, 36)
    np.testing.assert_array_equal(pair_labels[:, 0], np.tile(labels, 3))
    assert np.all(pair_labels[:, 0] != pair_labels[:, 1])
    assert np.all(out[:, 2:28, 2:28] == 255)         # the top-left digit always covers this
    assert np.all(out[:, 8:34, 8:34] == 255)         # the bottom-right one this
    assert np.all(out[:, 0:6, 30:36] == 0)           # the top-right corner stays empty
    again, _ = multimnist.compose(images, labels, np.random.default_rng(5), pairs_per_image=3)
    np.testing.assert_array_equal(out, again)
    with pytest.raises(ValueError, match="max_shift"):
        multimnist.compose(images, labels, np.random.default_rng(5), max_shift=5)


# ----------------------------------------------------------------- conversion


def test_convert_idx_split_sizes_and_reader(tmp_path):
    raw, out = str(tmp_path / "raw"), str(tmp_path / "mr")
    generate_idx(raw, train=120, test=30, seed=2)
    fmap = multimnist.convert(raw, out, source="idx", val_fraction=0.25, pairs_per_image=2, seed=3,
                              block_rows=16)
    assert fmap["splits"] == {"train": 180, "val": 60, "test": 60}
    assert fmap["image_shape"] == [1, 36, 36] and fmap["tasks"] == ["left", "right"]
    assert multimnist.load_feature_map(out)["splits"] == fmap["splits"]
    data = BlockDataset(out, "val", {"image": 1296, "label": 2}, batch_size=60)
    batch = next(iter(data.epoch(0)))
    assert batch["image"].dtype == np.uint8 and batch["image"].max() > 100
    assert np.all(batch["label"][:, 0] != batch["label"][:, 1])


def _pair(n, seed, dtype=np.uint8):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, 36, 36)).astype(dtype)
    labels = rng.integers(0, 10, (n, 2)).astype(np.int32)
    return images, labels


def test_convert_paddlerec_pickles(tmp_path):
    raw, out = tmp_path / "raw", str(tmp_path / "mr")
    raw.mkdir()
    train, test = _pair(50, 1), _pair(12, 2)
    for name, data in (("train.pickle", train), ("test.pickle", test)):
        with open(raw / name, "wb") as fh:
            pickle.dump(data, fh)
    fmap = multimnist.convert(str(raw), out, source="pickle", val_fraction=0.2, seed=1)
    assert fmap["splits"] == {"train": 40, "val": 10, "test": 12}
    got = next(iter(BlockDataset(out, "test", {"image": 1296, "label": 2}, batch_size=12).epoch(0)))
    np.testing.assert_array_equal(got["image"].reshape(12, 36, 36), test[0])
    np.testing.assert_array_equal(got["label"], test[1])


def test_pareto_mtl_pickle_with_float_images(tmp_path):
    (train_x, train_y), (test_x, test_y) = _pair(8, 3), _pair(4, 4)
    with open(tmp_path / "multi_mnist.pickle", "wb") as fh:
        pickle.dump((train_x / 255.0, train_y, test_x / 255.0, test_y), fh)
    release = multimnist.read_pickle_release(str(tmp_path))
    np.testing.assert_array_equal(release["train"][0], train_x)
    np.testing.assert_array_equal(release["test"][1], test_y)


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


@pytest.mark.parametrize("payload,match", [
    ((np.zeros((3, 28, 28), np.uint8), np.zeros((3, 2), np.int32)), r"\(N, 36, 36\)"),
    ((np.zeros((3, 36, 36), np.uint8), np.zeros((2, 2), np.int32)), "3 images but 2 labels"),
    ((np.zeros((3, 36, 36), np.uint8), np.zeros((3,), np.int32)), r"\(N, 2\)"),
    ((np.zeros((3, 36, 36), np.uint8),), "pair"),
    (_Evil(), "refusing to load"),
])
def test_bad_pickles_are_refused_clearly(tmp_path, payload, match):
    path = tmp_path / "train.pickle"
    with open(path, "wb") as fh:
        pickle.dump(payload, fh)
    with pytest.raises(MultiMnistFormatError, match=match):
        multimnist.read_pickle_pair(str(path))


def test_feature_map_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="prepare_data.py"):
        multimnist.load_feature_map(str(tmp_path))
    (tmp_path / "feature_map.json").write_text('{"dataset": "census-income", "format_version": 1}')
    with pytest.raises(ValueError, match="not multimnist"):
        multimnist.load_feature_map(str(tmp_path))


# ----------------------------------------------------------------- real files, when present


@pytest.mark.skipif(not os.path.isdir(os.path.join(SHARED, "mnist")), reason="no ../shared/data")
def test_real_mnist_test_split_parses():
    images, labels = load_split(os.path.join(SHARED, "mnist"), "test")
    assert images.shape == (10000, 28, 28) and sorted(set(labels.tolist())) == list(range(10))


@pytest.mark.skipif(not os.path.isdir(os.path.join(SHARED, "multimnist")), reason="no ../shared/data")
def test_real_multimnist_pickle_sample_parses():
    images, labels = multimnist.read_pickle_pair(os.path.join(SHARED, "multimnist",
                                                              "sample_data.pickle"))
    assert images.shape == (32, 36, 36) and labels.shape == (32, 2) and images.max() > 200
