"""DCAN on Fashion-MNIST: `python -m experiments.fashion_mnist [--data-dir DIR] [--seeds N]`.

Reads the four IDX files from `<data-dir>/fashion-mnist/` (or
`$DCAN_JAX_DATA/fashion-mnist/`), else a prepared TFDS copy. When neither
exists, the run stops with an error that lists where it looked. Images are mean-pooled to
14x14 (196 values in [0, 1]) or kept at 28x28 (784 values) with `--image-size 28`.
"""

from __future__ import annotations

import argparse

from dcan_jax.data import Dataset, load_image_dataset
from experiments import common
from experiments.mnist import add_image_size_argument


def load(args: argparse.Namespace) -> Dataset:
    return load_image_dataset(
        "fashion-mnist",
        data_dir=args.data_dir,
        tfds_dir=args.tfds_dir,
        image_size=args.image_size,
        download=args.download,
    )


def main(argv=None) -> dict:
    return common.main(
        load,
        "Train DCAN on Fashion-MNIST.",
        "paper",
        argv,
        add_arguments=add_image_size_argument,
    )


if __name__ == "__main__":
    main()
