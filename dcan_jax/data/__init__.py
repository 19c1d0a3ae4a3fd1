"""Dataset loaders sharing one data directory convention: `<data_dir>/<dataset>/`."""

from dcan_jax.data.base import DATA_DIR_ENV, DataNotFoundError, Dataset, resolve_data_dir
from dcan_jax.data.cifar import (
    ImageDataset,
    load_cifar10,
    load_cifar10_images,
    read_cifar10_batch,
    read_image_folder,
)
from dcan_jax.data.files import load_array_file
from dcan_jax.data.mnist import load_image_dataset, preprocess_images, read_idx
from dcan_jax.data.newsgroups import load_newsgroups
from dcan_jax.data.reuters import load_reuters10k
from dcan_jax.data.text import tfidf_features
from dcan_jax.data.validation import ConstantFeatureWarning

__all__ = [
    "DATA_DIR_ENV",
    "ConstantFeatureWarning",
    "DataNotFoundError",
    "Dataset",
    "ImageDataset",
    "load_array_file",
    "load_cifar10",
    "load_cifar10_images",
    "load_image_dataset",
    "load_newsgroups",
    "load_reuters10k",
    "preprocess_images",
    "read_cifar10_batch",
    "read_idx",
    "read_image_folder",
    "resolve_data_dir",
    "tfidf_features",
]
