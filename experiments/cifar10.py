"""DCAN on CIFAR-10 ResNet-50 features: `python -m experiments.cifar10 [--data-dir DIR]`.

Reads the CIFAR-10 python batches or per-class image folders from
`<data-dir>/cifar10/` (or `$DCAN_JAX_DATA/cifar10/`), else a prepared TFDS copy,
computes the 2048 "avg pool" features of an ImageNet-pretrained ResNet-50 for
every image (cached on disk, reused on the next run) and trains DCAN on them
with the `paper_cifar10` config (2048-1024-512-128 encoder, 128-16-1
discriminator). Features and training use a GPU or TPU when JAX sees one.
`--subset` and `--split all` are applied to the images, so features are only
computed for the images that are clustered.
"""

from __future__ import annotations

import argparse

from dcan_jax import features
from dcan_jax.data import Dataset
from dcan_jax.data.cifar import load_cifar10_images
from experiments import common


def add_feature_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--weights",
        default="imagenet",
        help="ResNet-50 weights: imagenet (Keras's file, read from $KERAS_HOME/models or "
        "~/.keras/models, downloaded with --download), random (random initialisation, for "
        "tests) or the path of a weights file",
    )
    parser.add_argument(
        "--weights-seed", type=int, default=0, help="seed of the random initialisation"
    )
    parser.add_argument(
        "--image-size",
        type=int,
        default=features.DEFAULT_IMAGE_SIZE,
        help="side in pixels that images are resized to before ResNet-50, at least 32",
    )
    parser.add_argument(
        "--feature-batch-size", type=int, default=64, help="images per ResNet-50 forward pass"
    )
    parser.add_argument(
        "--feature-cache",
        default=None,
        help=f"folder of cached features; defaults to ${features.CACHE_DIR_ENV} or "
        "~/.cache/dcan_jax/features",
    )


def load(args: argparse.Namespace) -> Dataset:
    images = load_cifar10_images(args.data_dir, args.tfds_dir, args.download)
    # The same rows that `common.run` would keep, so that its own merge and subset
    # leave this dataset unchanged.
    if args.split == "all":
        images = images.merged()
    if args.subset is not None:
        images = images.subset(args.subset)
    extractor = features.resnet50_extractor(
        args.weights,
        image_size=args.image_size,
        batch_size=args.feature_batch_size,
        seed=args.weights_seed,
        download=args.download,
    )
    return features.image_features_dataset(images, extractor, args.feature_cache)


def main(argv=None) -> dict:
    return common.main(
        load,
        "Train DCAN on ResNet-50 features of CIFAR-10.",
        "paper_cifar10",
        argv,
        add_arguments=add_feature_arguments,
    )


if __name__ == "__main__":
    main()
