"""MNIST-format IDX files (MNIST, Fashion-MNIST), plain or gzip'd.

IDX layout (big-endian): two zero bytes, a type code (0x08 = unsigned byte),
the number of dimensions, one 4-byte size per dimension, then the values in
C order. Images are ``idx3`` ``(N, 28, 28)``, labels ``idx1`` ``(N,)``.
Fashion-MNIST ships the very same file names and layout.
"""
import gzip
import os
import zlib

import numpy as np

IMAGE_SIZE = (28, 28)
NUM_CLASSES = 10
FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"),
           0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}


class IdxFormatError(ValueError):
    """A file is not a valid IDX file, or its contents do not fit together."""


def _read_bytes(path):
    with open(path, "rb") as fh:
        raw = fh.read()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (EOFError, OSError, zlib.error) as exc:
            raise IdxFormatError(f"{path}: damaged or truncated gzip file ({exc})") from None
    return raw


def read_idx(path):
    """The array stored in an IDX file, with its shape from the header."""
    raw = _read_bytes(path)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _DTYPES:
        raise IdxFormatError(f"{path}: not an IDX file (magic number {raw[:4].hex() or 'missing'}; "
                             "expected 0000 followed by a type code such as 08, e.g. 00000803)")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if ndim == 0 or len(raw) < header:
        raise IdxFormatError(f"{path}: IDX header truncated or without dimensions")
    shape = tuple(int(v) for v in np.frombuffer(raw, ">u4", ndim, 4))
    dtype = np.dtype(_DTYPES[raw[2]])
    expected = int(np.prod(shape)) * dtype.itemsize
    body = len(raw) - header
    if body != expected:
        what = "truncated" if body < expected else "longer than its header says"
        raise IdxFormatError(f"{path}: file {what}: header shape {shape} needs {expected} bytes "
                             f"of data, found {body}")
    return np.frombuffer(raw, dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def write_idx(path, array):
    """Write ``array`` (uint8) as an IDX file; gzip'd when ``path`` ends in .gz."""
    array = np.ascontiguousarray(array, np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + np.asarray(array.shape, ">u4").tobytes()
    data = header + array.tobytes()
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "wb") as fh:
        fh.write(data)
    return path


def find_file(raw_dir, stem):
    """``<raw_dir>/<stem>.gz`` or ``<raw_dir>/<stem>`` (also the ``stem.idx3-ubyte`` spelling)."""
    candidates = [stem + ".gz", stem, stem.replace("-idx", ".idx") + ".gz", stem.replace("-idx", ".idx")]
    for name in candidates:
        path = os.path.join(raw_dir, name)
        if os.path.isfile(path):
            return path
    raise FileNotFoundError(f"{raw_dir}: none of {', '.join(candidates[:2])} found "
                            "(download MNIST or Fashion-MNIST, see scripts/download_mnist.sh)")


def load_split(raw_dir, split):
    """``(images (N, 28, 28) uint8, labels (N,) int64)`` of the MNIST ``train`` or ``test`` split."""
    if split not in FILES:
        raise ValueError(f"split must be one of {sorted(FILES)}, got {split!r}")
    image_path, label_path = (find_file(raw_dir, stem) for stem in FILES[split])
    images, labels = read_idx(image_path), read_idx(label_path)
    if images.ndim != 3 or images.shape[1:] != IMAGE_SIZE:
        raise IdxFormatError(f"{image_path}: expected images of shape (N, 28, 28), got {images.shape}")
    if labels.ndim != 1:
        raise IdxFormatError(f"{label_path}: expected a 1-D label file, got shape {labels.shape}")
    if len(images) != len(labels):
        raise IdxFormatError(f"{image_path} holds {len(images)} images but {label_path} holds "
                             f"{len(labels)} labels")
    if images.dtype != np.uint8:
        raise IdxFormatError(f"{image_path}: expected unsigned-byte pixels, got {images.dtype}")
    if labels.size and (labels.min() < 0 or labels.max() >= NUM_CLASSES):
        raise IdxFormatError(f"{label_path}: labels must lie in [0, {NUM_CLASSES}), found "
                             f"{labels.min()}..{labels.max()}")
    return images, labels.astype(np.int64)
