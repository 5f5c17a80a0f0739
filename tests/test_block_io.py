import os

import numpy as np
import pytest

from src.data.mindrecord_io import BlockWriter, split_file
from src.data.reader import BlockDataset


def _write(directory, n=103, block_rows=10, split="train"):
    ids = np.arange(n)
    with BlockWriter(split_file(directory, split), {"id": (np.int32, 1), "x": (np.float32, 3)},
                     block_rows=block_rows) as writer:
        for lo in range(0, n, 7):                   # chunks unrelated to the block size
            chunk = ids[lo:lo + 7]
            writer.write({"id": chunk[:, None], "x": np.repeat(chunk[:, None], 3, 1) * 0.5})
    return ids


def test_blocks_roundtrip_in_order(tmp_path):
    ids = _write(str(tmp_path))
    data = BlockDataset(str(tmp_path), "train", {"id": 1, "x": 3}, batch_size=16)
    assert data.num_rows == 103 and len(data) == 7
    batches = list(data.epoch(0))
    got = np.concatenate([b["id"] for b in batches]).ravel()
    np.testing.assert_array_equal(got, ids)
    np.testing.assert_array_equal(batches[0]["x"][:, 0], ids[:16] * 0.5)
    assert not [f for f in os.listdir(tmp_path) if f.startswith(".")]   # scratch folder removed


def test_shuffle_mixes_rows_across_blocks(tmp_path):
    _write(str(tmp_path), n=200, block_rows=20)
    data = BlockDataset(str(tmp_path), "train", {"id": 1}, batch_size=20, shuffle=True, seed=3)
    first = next(iter(data.epoch(1)))["id"].ravel()
    assert len(set(first // 20)) > 3            # rows of one batch come from many blocks
    epoch1 = np.concatenate([b["id"] for b in data.epoch(1)]).ravel()
    epoch2 = np.concatenate([b["id"] for b in data.epoch(2)]).ravel()
    assert sorted(epoch1) == list(range(200)) and not np.array_equal(epoch1, epoch2)
    again = BlockDataset(str(tmp_path), "train", {"id": 1}, batch_size=20, shuffle=True, seed=3)
    np.testing.assert_array_equal(epoch1, np.concatenate([b["id"] for b in again.epoch(1)]).ravel())


def test_drop_remainder_and_transform(tmp_path):
    _write(str(tmp_path))
    data = BlockDataset(str(tmp_path), "train", {"id": 1, "x": 3}, batch_size=16,
                        drop_remainder=True, transform=lambda b: (b["x"].sum(1), b["id"]))
    batches = list(data.epoch(0))
    assert len(batches) == len(data) == 6 and all(len(b[0]) == 16 for b in batches)


def test_shards_are_disjoint_and_complete(tmp_path):
    _write(str(tmp_path))
    seen = []
    for shard in range(3):
        data = BlockDataset(str(tmp_path), "train", {"id": 1}, batch_size=8, num_shards=3,
                            shard_id=shard)
        seen.append(set(np.concatenate([b["id"] for b in data.epoch(0)]).ravel()))
    assert not (seen[0] & seen[1]) and not (seen[1] & seen[2]) and not (seen[0] & seen[2])
    assert set.union(*seen) == set(range(103))


def test_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="convert the data first"):
        BlockDataset(str(tmp_path), "val", {"id": 1}, batch_size=4)
    _write(str(tmp_path), n=5)
    with pytest.raises(ValueError, match="fewer than one batch"):
        BlockDataset(str(tmp_path), "train", {"id": 1}, batch_size=8, drop_remainder=True)
    with pytest.raises(ValueError, match="expected 5 rows x 2"):
        BlockDataset(str(tmp_path), "train", {"id": 2}, batch_size=8)


def test_failed_write_leaves_no_split(tmp_path):
    path = split_file(str(tmp_path), "train")
    with pytest.raises(RuntimeError):
        with BlockWriter(path, {"id": (np.int32, 1)}, block_rows=4) as writer:
            writer.write({"id": np.arange(10)[:, None]})
            raise RuntimeError("crash while converting")
    assert os.listdir(tmp_path) == []


def test_transform_errors_surface(tmp_path):
    _write(str(tmp_path))

    def boom(batch):
        raise KeyError("bad column")
    data = BlockDataset(str(tmp_path), "train", {"id": 1}, batch_size=8, transform=boom)
    with pytest.raises(KeyError, match="bad column"):
        list(data.epoch(0))


def test_uint8_columns_roundtrip_with_trailing_zero_bytes(tmp_path):
    # uint8 columns are stored as MindRecord bytes; a block ending in zero
    # pixels must come back at full length (numpy's S dtype strips trailing NULs).
    images = np.zeros((25, 6), np.uint8)
    images[:, 0] = np.arange(25)
    with BlockWriter(split_file(str(tmp_path), "train"), {"image": (np.uint8, 6), "y": (np.int32, 1)},
                     block_rows=10) as writer:
        writer.write({"image": images, "y": np.arange(25)[:, None]})
    data = BlockDataset(str(tmp_path), "train", {"image": 6, "y": 1}, batch_size=25)
    batch = next(iter(data.epoch(0)))
    assert batch["image"].dtype == np.uint8
    np.testing.assert_array_equal(batch["image"], images)


def test_streaming_shuffle_reads_every_row_once_per_epoch(tmp_path):
    _write(str(tmp_path), n=203, block_rows=10)
    data = BlockDataset(str(tmp_path), "train", {"id": 1, "x": 3}, batch_size=16, shuffle=True,
                        seed=2, shuffle_buffer_rows=45)
    assert data.arrays is None and data.num_rows == 203 and len(data) == 13
    batches = list(data.epoch(1))
    assert len(batches) == 13 and all(len(b["id"]) == 16 for b in batches[:-1])
    ids = np.concatenate([b["id"] for b in batches]).ravel()
    assert sorted(ids) == list(range(203)) and not np.array_equal(ids, np.arange(203))
    np.testing.assert_array_equal(batches[0]["x"][:, 0], batches[0]["id"][:, 0] * 0.5)
    assert len(set(batches[0]["id"].ravel() // 10)) > 2          # rows of several blocks mixed
    again = np.concatenate([b["id"] for b in data.epoch(1)]).ravel()
    other = np.concatenate([b["id"] for b in data.epoch(2)]).ravel()
    np.testing.assert_array_equal(ids, again)
    assert not np.array_equal(ids, other)


def test_streaming_in_order_and_sharded(tmp_path):
    _write(str(tmp_path), n=103, block_rows=10)
    plain = BlockDataset(str(tmp_path), "train", {"id": 1}, batch_size=16, shuffle_buffer_rows=30)
    np.testing.assert_array_equal(np.concatenate([b["id"] for b in plain.epoch(0)]).ravel(),
                                  np.arange(103))
    dropped = BlockDataset(str(tmp_path), "train", {"id": 1}, batch_size=16, shuffle=True,
                           drop_remainder=True, shuffle_buffer_rows=30)
    assert len(list(dropped.epoch(0))) == len(dropped) == 6
    seen = [set(np.concatenate([b["id"] for b in BlockDataset(
        str(tmp_path), "train", {"id": 1}, batch_size=8, num_shards=2, shard_id=k,
        shuffle_buffer_rows=20).epoch(0)]).ravel()) for k in range(2)]
    assert not (seen[0] & seen[1]) and seen[0] | seen[1] == set(range(103))


@pytest.mark.parametrize("buffer", [0, 25])
def test_equal_shards_give_every_rank_the_same_steps(tmp_path, buffer):
    _write(str(tmp_path), n=103, block_rows=10)          # 11 blocks: shards of 53 and 50 rows
    lengths = []
    for shard in range(2):
        data = BlockDataset(str(tmp_path), "train", {"id": 1}, batch_size=8, shuffle=True,
                            drop_remainder=True, num_shards=2, shard_id=shard,
                            shuffle_buffer_rows=buffer, equal_shards=True)
        assert len(list(data.epoch(1))) == len(data)
        lengths.append(len(data))
    assert lengths == [6, 6]                              # 50 // 8


@pytest.mark.parametrize("buffer", [0, 40])
def test_splits_read_together_as_one(tmp_path, buffer):
    """A list of splits (train_splits train,val) reads every row of each once
    per epoch, shuffled across the two, in memory or streamed, and sharded
    without overlap."""
    _write(str(tmp_path), n=103)
    with BlockWriter(split_file(str(tmp_path), "val"), {"id": (np.int32, 1), "x": (np.float32, 3)},
                     block_rows=10) as writer:
        writer.write({"id": np.arange(1000, 1050)[:, None],
                      "x": np.repeat(np.arange(1000, 1050)[:, None], 3, 1) * 0.5})
    both = sorted(list(range(103)) + list(range(1000, 1050)))
    data = BlockDataset(str(tmp_path), ["train", "val"], {"id": 1, "x": 3}, batch_size=16,
                        shuffle=True, seed=4, shuffle_buffer_rows=buffer)
    assert data.num_rows == data.total_rows == 153 and data.split == "train+val"
    assert "train.mindrecord + " in data.path and data.path.endswith("val.mindrecord")
    batches = list(data.epoch(1))
    ids = np.concatenate([b["id"] for b in batches]).ravel()
    assert sorted(ids) == both
    assert any(len({i >= 1000 for i in b["id"].ravel()}) == 2 for b in batches)   # mixed
    np.testing.assert_array_equal(batches[0]["x"][:, 0], batches[0]["id"][:, 0] * 0.5)
    seen = [set(np.concatenate([b["id"] for b in BlockDataset(
        str(tmp_path), ["train", "val"], {"id": 1}, batch_size=8, num_shards=2, shard_id=k,
        shuffle_buffer_rows=buffer).epoch(0)]).ravel()) for k in range(2)]
    assert not (seen[0] & seen[1]) and sorted(seen[0] | seen[1]) == both
    with pytest.raises(ValueError, match="must be distinct"):
        BlockDataset(str(tmp_path), ["train", "train"], {"id": 1}, batch_size=8)
    with pytest.raises(FileNotFoundError, match="split 'test'"):
        BlockDataset(str(tmp_path), ["train", "test"], {"id": 1}, batch_size=8)
