"""Dataset loaders sharing one data directory convention: `<data_dir>/<dataset>/`."""

from dcan_jax.data.base import DATA_DIR_ENV, DataNotFoundError, Dataset, resolve_data_dir
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
    "load_array_file",
    "load_image_dataset",
    "load_newsgroups",
    "load_reuters10k",
    "preprocess_images",
    "read_idx",
    "resolve_data_dir",
    "tfidf_features",
]
