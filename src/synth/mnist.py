"""Synthetic digits in the MNIST IDX format, for tests and the quick start.

Each of the 10 classes is a fixed glyph of a few thick strokes (drawn from
``glyph_seed``, the same for every split); an image is its class glyph shifted
by up to 2 pixels, with random stroke intensity and background noise. The
class is fully determined by the glyph, so a model that learns reaches high
accuracy; MultiMNIST composites of these digits keep that property for both
tasks. The files are real IDX files (gzip'd), read by the same code as MNIST.

    python -m src.synth.mnist --output_dir data/mnist_synth --train 6000 --test 1000
"""
import argparse
import os
import sys

import numpy as np

from src.data.mnist_idx import FILES, IMAGE_SIZE, NUM_CLASSES, write_idx


def glyphs(glyph_seed=7, strokes=4):
    """``(10, 28, 28)`` float templates in [0, 1], one per class."""
    rng = np.random.default_rng(glyph_seed)
    yy, xx = np.mgrid[0:IMAGE_SIZE[0], 0:IMAGE_SIZE[1]]
    out = np.zeros((NUM_CLASSES,) + IMAGE_SIZE)
    for c in range(NUM_CLASSES):
        for _ in range(strokes):
            (y0, x0), (y1, x1) = rng.uniform(5, 22, (2, 2))
            t = np.clip(((yy - y0) * (y1 - y0) + (xx - x0) * (x1 - x0))
                        / max((y1 - y0) ** 2 + (x1 - x0) ** 2, 1e-6), 0, 1)
            dist = np.hypot(yy - (y0 + t * (y1 - y0)), xx - (x0 + t * (x1 - x0)))
            out[c] = np.maximum(out[c], np.clip(2.0 - dist, 0, 1))
    return out


def synthetic_digits(n, rng, glyph_seed=7):
    """``(images (n, 28, 28) uint8, labels (n,) uint8)`` with balanced classes."""
    templates = glyphs(glyph_seed)
    labels = rng.permutation(np.arange(n) % NUM_CLASSES).astype(np.uint8)
    images = np.zeros((n,) + IMAGE_SIZE, np.float64)
    shifts = rng.integers(-2, 3, (n, 2))
    for i in range(n):
        images[i] = np.roll(templates[labels[i]], tuple(shifts[i]), axis=(0, 1))
    images *= rng.uniform(0.6, 1.0, (n, 1, 1))
    images += rng.uniform(0, 0.15, images.shape) * (rng.random(images.shape) < 0.1)
    return np.clip(np.rint(images * 255), 0, 255).astype(np.uint8), labels


def generate_idx(out_dir, train=6000, test=1000, seed=1, glyph_seed=7):
    """Write the four MNIST IDX files (gzip'd) of synthetic digits into ``out_dir``."""
    os.makedirs(out_dir, exist_ok=True)
    rng = np.random.default_rng(seed)
    for split, n in (("train", train), ("test", test)):
        images, labels = synthetic_digits(n, rng, glyph_seed)
        image_stem, label_stem = FILES[split]
        write_idx(os.path.join(out_dir, image_stem + ".gz"), images)
        write_idx(os.path.join(out_dir, label_stem + ".gz"), labels)
    return out_dir


def main(argv=None):
    from src.engine.cli import ArgumentParser
    parser = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output_dir", "--out_dir", dest="out_dir", required=True,
                        help="folder for the four .gz IDX files (as the other generators)")
    parser.add_argument("--train", type=int, default=6000, help="training digits")
    parser.add_argument("--test", type=int, default=1000, help="test digits")
    parser.add_argument("--seed", type=int, default=1, help="seed of shifts, intensities and noise")
    args = parser.parse_args(argv)
    if args.train < NUM_CLASSES or args.test < NUM_CLASSES:
        parser.error("--train and --test need at least 10 digits (one per class)")
    generate_idx(args.out_dir, args.train, args.test, args.seed)
    print(f"wrote {args.train} train and {args.test} test synthetic digits to {args.out_dir}")
    return 0


if __name__ == "__main__":
    from src.engine.cli import run_main     # one-line errors: exit 2 for bad input
    sys.exit(run_main(main))
