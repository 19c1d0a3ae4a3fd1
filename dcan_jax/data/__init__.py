"""Dataset loaders sharing one data directory convention: `<data_dir>/<dataset>/`."""

from dcan_jax.data.base import DATA_DIR_ENV, DataNotFoundError, Dataset, resolve_data_dir
from dcan_jax.data.mnist import load_image_dataset, preprocess_images, read_idx

__all__ = [
    "DATA_DIR_ENV",
    "DataNotFoundError",
    "Dataset",
    "load_image_dataset",
    "preprocess_images",
    "read_idx",
    "resolve_data_dir",
]
