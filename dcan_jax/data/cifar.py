"""CIFAR-10 images from the python pickle batches, a folder per class, or TFDS.

Sources are tried in order, under `<data_dir>/cifar10/` (data_dir from the
argument or `$DCAN_JAX_DATA`):

1. the python pickle batches `data_batch_1` to `data_batch_5` and `test_batch`,
   in `cifar-10-batches-py/` (the folder that `cifar-10-python.tar.gz` extracts
   to) or directly in `cifar10/`;
2. PNG or JPEG files in `train/<class_name>/` and, optionally,
   `test/<class_name>/`, classes sorted by folder name;
3. a prepared TFDS `cifar10` in the TFDS data directory.

Nothing is downloaded unless `download=True` is passed. The loaders return uint8
images of shape `(n_samples, 32, 32, 3)`; `load_cifar10` turns them into
pretrained-network features (see `dcan_jax.features`).
"""

from __future__ import annotations

import dataclasses
import io
import logging
import os
import pathlib
import pickle
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from dcan_jax.data.base import DataNotFoundError, Dataset, resolve_data_dir

if TYPE_CHECKING:
    from dcan_jax.features import FeatureExtractor

logger = logging.getLogger(__name__)

CIFAR10_CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
PICKLE_FOLDER = "cifar-10-batches-py"
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
_IMAGE_SHAPE = (32, 32, 3)

# The only globals a CIFAR-10 batch refers to: numpy array reconstruction (under
# numpy 1 and numpy 2 module paths) and the codec that Python 3 uses for bytes
# in protocol-2 pickles. Anything else is rejected before it can run.
_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): ("numpy._core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"): ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.numeric", "_frombuffer"): ("numpy._core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"): ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"): ("numpy", "ndarray"),
    ("numpy", "dtype"): ("numpy", "dtype"),
    ("_codecs", "encode"): ("_codecs", "encode"),
}


@dataclasses.dataclass(frozen=True)
class ImageDataset:
    """Images with labels and an optional held-out split, before feature extraction.

    Attributes:
      name: dataset name, e.g. "cifar10".
      x_train: training images, shape `(n_train, height, width, 3)`, uint8.
      y_train: training labels, shape `(n_train,)`, int64.
      x_test: held-out images, shape `(n_test, height, width, 3)`, or `None`.
      y_test: held-out labels, shape `(n_test,)`, or `None`.
      class_names: name of each label id, in id order.
      source: where the images were read from, for logs and results files.
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray | None = None
    y_test: np.ndarray | None = None
    class_names: tuple[str, ...] = CIFAR10_CLASSES
    source: str = ""

    def merged(self) -> ImageDataset:
        """Return one split containing train and test together, like `Dataset.merged`."""
        if self.x_test is None:
            return self
        return dataclasses.replace(
            self,
            x_train=np.concatenate([self.x_train, self.x_test]),
            y_train=np.concatenate([self.y_train, self.y_test]),
            x_test=None,
            y_test=None,
        )

    def subset(self, n_train: int, seed: int = 0) -> ImageDataset:
        """Keep the `n_train` training rows that `Dataset.subset(n_train, seed)` keeps."""
        n = self.x_train.shape[0]
        if not 0 < n_train <= n:
            raise ValueError(
                f"n_train={n_train} should be in [1, {n}], the number of training images."
            )
        rows = np.sort(np.random.default_rng(seed).permutation(n)[:n_train])
        return dataclasses.replace(self, x_train=self.x_train[rows], y_train=self.y_train[rows])


class _BatchUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) not in _ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(f"global '{module}.{name}' is not allowed")
        return super().find_class(*_ALLOWED_GLOBALS[module, name])


def _corrupt_batch_error(path: pathlib.Path, problem: str) -> ValueError:
    return ValueError(
        f"{str(path)!r} is not a valid CIFAR-10 python batch: {problem}. Extract "
        f"cifar-10-python.tar.gz again and replace the files in {str(path.parent)!r}."
    )


def check_images(images: np.ndarray, source: str, shape: Sequence[int] | None = None) -> None:
    """Raise `ValueError` unless `images` is a non-empty uint8 `(n, height, width, 3)` array.

    Args:
      images: the array to check.
      source: what the images came from, used in messages.
      shape: the expected `(height, width, 3)`; `None` accepts any height and width.
    """
    if not isinstance(images, np.ndarray) or images.dtype != np.uint8:
        dtype = getattr(images, "dtype", type(images).__name__)
        raise ValueError(
            f"{source} has dtype {dtype}, expected uint8 pixel values in [0, 255]; convert "
            "float images in [0, 1] with (images * 255).round().astype(np.uint8)."
        )
    if images.ndim != 4 or images.shape[-1] != 3 or images.shape[0] == 0:
        raise ValueError(
            f"{source} has shape {images.shape}, expected (n_samples, height, width, 3) "
            "with n_samples >= 1 and RGB channels last."
        )
    if shape is not None and images.shape[1:] != tuple(shape):
        raise ValueError(
            f"{source} has images of shape {images.shape[1:]}, expected {tuple(shape)}."
        )


def read_cifar10_batch(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Read one CIFAR-10 python batch (`data_batch_N` or `test_batch`).

    A batch is a pickled dict whose `b"data"` is a uint8 array of shape
    `(n_samples, 3072)`, each row the red, green and blue 32x32 planes one after
    the other, and whose `b"labels"` lists `n_samples` ids in [0, 9]. Only the
    numpy globals such a file needs are unpickled, so a file carrying other code
    is rejected instead of run.

    Returns:
      Images of shape `(n_samples, 32, 32, 3)`, uint8, and labels of shape
      `(n_samples,)`, int64.

    Raises:
      DataNotFoundError: when the file does not exist.
      ValueError: when the file is truncated, corrupt or not laid out as above.
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise DataNotFoundError(
            f"CIFAR-10 batch {path.name!r} not found in {str(path.parent)!r}; extract "
            "cifar-10-python.tar.gz there."
        )
    try:
        batch = _BatchUnpickler(io.BytesIO(path.read_bytes()), encoding="bytes").load()
    # Truncated or garbled pickles fail with any of these, depending on the byte reached.
    except (
        pickle.UnpicklingError,
        EOFError,
        ValueError,
        TypeError,
        AttributeError,
        KeyError,
        IndexError,
        OverflowError,
    ) as error:
        raise _corrupt_batch_error(path, f"unpickling failed ({error})") from error
    if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
        found = sorted(batch) if isinstance(batch, dict) else type(batch).__name__
        raise _corrupt_batch_error(path, f"expected a dict with b'data' and b'labels', got {found}")
    data = batch[b"data"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2:
        raise _corrupt_batch_error(
            path, f"b'data' should be a uint8 array of shape (n_samples, 3072), got {data!r:.80}"
        )
    if data.shape[1] != 3072:
        raise _corrupt_batch_error(
            path, f"b'data' has shape {data.shape}, expected (n_samples, 3072)"
        )
    labels = np.asarray(batch[b"labels"])
    if labels.shape != (data.shape[0],) or labels.dtype.kind not in "iu":
        raise _corrupt_batch_error(
            path,
            f"b'labels' should hold {data.shape[0]} integer ids, got shape {labels.shape} "
            f"and dtype {labels.dtype}",
        )
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise _corrupt_batch_error(
            path, f"labels range over [{labels.min()}, {labels.max()}], expected [0, 9]"
        )
    # Channel-major rows: (n, 3, 32, 32) to channels-last (n, 32, 32, 3).
    images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), labels.astype(np.int64)


def _find_pickle_folder(folder: pathlib.Path) -> pathlib.Path | None:
    for candidate in (folder / PICKLE_FOLDER, folder):
        if (candidate / TEST_BATCH).is_file() or (candidate / TRAIN_BATCHES[0]).is_file():
            return candidate
    return None


def read_cifar10_pickle_folder(folder: str | os.PathLike) -> ImageDataset:
    """Read the five training batches and the test batch of a CIFAR-10 python folder.

    Args:
      folder: `cifar-10-batches-py/`, or a folder that contains it.

    Raises:
      DataNotFoundError: naming each missing batch file and the folder searched.
      ValueError: for a truncated or corrupt batch.
    """
    folder = pathlib.Path(folder)
    batches_dir = _find_pickle_folder(folder) or folder / PICKLE_FOLDER
    names = (*TRAIN_BATCHES, TEST_BATCH)
    missing = [name for name in names if not (batches_dir / name).is_file()]
    if missing:
        raise DataNotFoundError(
            f"Missing CIFAR-10 batches {missing} in {str(batches_dir)!r}; extract "
            f"cifar-10-python.tar.gz so that {PICKLE_FOLDER}/ holds {list(names)}."
        )
    train = [read_cifar10_batch(batches_dir / name) for name in TRAIN_BATCHES]
    x_test, y_test = read_cifar10_batch(batches_dir / TEST_BATCH)
    return ImageDataset(
        name="cifar10",
        x_train=np.concatenate([images for images, _ in train]),
        y_train=np.concatenate([labels for _, labels in train]),
        x_test=x_test,
        y_test=y_test,
        source=f"python batches in {batches_dir}",
    )


def _read_image(path: pathlib.Path, size: tuple[int, int] | None) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            # Grayscale, palette and RGBA files become RGB; alpha is dropped.
            rgb = image.convert("RGB")
    except (UnidentifiedImageError, OSError) as error:
        raise ValueError(
            f"Cannot read image {str(path)!r} ({error}); replace or remove the file."
        ) from error
    if size is not None and rgb.size != (size[1], size[0]):
        rgb = rgb.resize((size[1], size[0]), Image.Resampling.BILINEAR)
    return np.asarray(rgb, dtype=np.uint8)


def _class_folders(root: pathlib.Path) -> list[pathlib.Path]:
    if not root.is_dir():
        raise DataNotFoundError(
            f"Image folder {str(root)!r} not found; create it with one subfolder of "
            "images per class."
        )
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise DataNotFoundError(
            f"Image folder {str(root)!r} has no class subfolders; put the images of each "
            "class in <root>/<class_name>/."
        )
    return folders


def _image_files(folder: pathlib.Path) -> list[pathlib.Path]:
    files = sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
    )
    if not files:
        raise ValueError(
            f"Class folder {str(folder)!r} contains no {'/'.join(IMAGE_SUFFIXES)} images; "
            "add images or remove the folder."
        )
    return files


def read_image_folder(
    root: str | os.PathLike,
    image_shape: tuple[int, int] = (32, 32),
    resize: bool = False,
) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """Read `<root>/<class_name>/*.png|jpg|jpeg` into arrays, classes sorted by name.

    Args:
      root: folder with one subfolder per class. Hidden entries and files with
        other suffixes are ignored.
      image_shape: the `(height, width)` every image must have.
      resize: resize images of another size to `image_shape` (bilinear) instead
        of raising.

    Returns:
      Images of shape `(n_samples, height, width, 3)`, uint8; labels of shape
      `(n_samples,)`, int64, the index of each image's class in the sorted class
      names; and the class names.

    Raises:
      DataNotFoundError: when `root` is missing or has no class subfolders.
      ValueError: for an empty class folder, an unreadable image, or an image of
        another size when `resize` is false.
    """
    root = pathlib.Path(root)
    class_names, images, labels = [], [], []
    for label, folder in enumerate(_class_folders(root)):
        class_names.append(folder.name)
        for path in _image_files(folder):
            image = _read_image(path, image_shape if resize else None)
            if image.shape[:2] != tuple(image_shape):
                raise ValueError(
                    f"Image {str(path)!r} is {image.shape[1]}x{image.shape[0]} pixels "
                    f"(width x height), expected {image_shape[1]}x{image_shape[0]}; resize the "
                    "images or pass resize=True."
                )
            images.append(image)
            labels.append(label)
    return np.stack(images), np.asarray(labels, np.int64), tuple(class_names)


def read_cifar10_image_folder(folder: str | os.PathLike) -> ImageDataset:
    """Read `<folder>/train/<class_name>/` and, when present, `<folder>/test/<class_name>/`.

    Raises:
      DataNotFoundError: when `train/` is missing or has no class subfolders.
      ValueError: for unreadable or wrongly sized images, an empty class folder, or
        test classes that differ from the training classes.
    """
    folder = pathlib.Path(folder)
    x_train, y_train, class_names = read_image_folder(folder / "train")
    x_test = y_test = None
    if (folder / "test").is_dir():
        x_test, y_test, test_classes = read_image_folder(folder / "test")
        if test_classes != class_names:
            raise ValueError(
                f"The class folders of {str(folder / 'test')!r} {list(test_classes)} differ "
                f"from those of {str(folder / 'train')!r} {list(class_names)}; use the same "
                "class names in both."
            )
    return ImageDataset(
        name="cifar10",
        x_train=x_train,
        y_train=y_train,
        x_test=x_test,
        y_test=y_test,
        class_names=class_names,
        source=f"image files in {folder}",
    )


def _read_tfds_split(builder, split: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        source = builder.as_data_source(split=split)
        records = [source[i] for i in range(len(source))]
        images = np.stack([np.asarray(r["image"], np.uint8) for r in records])
        labels = np.array([r["label"] for r in records], np.int64)
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
        images, labels = arrays["image"].astype(np.uint8), arrays["label"].astype(np.int64)
    check_images(images, f"TFDS cifar10 {split} split", _IMAGE_SHAPE)
    return images, labels


def _tfds_data_dir(tfds_dir: str | os.PathLike | None) -> pathlib.Path:
    if tfds_dir is None:
        tfds_dir = os.environ.get("TFDS_DATA_DIR", "~/tensorflow_datasets")
    return pathlib.Path(tfds_dir).expanduser()


def load_cifar10_tfds(
    tfds_dir: str | os.PathLike | None = None, download: bool = False
) -> ImageDataset | None:
    """Read a prepared TFDS `cifar10`, or return `None` when it is not prepared.

    Args:
      tfds_dir: TFDS data directory; defaults to `$TFDS_DATA_DIR` or
        `~/tensorflow_datasets`.
      download: download and prepare the dataset when it is not prepared (needs
        internet); without it nothing is fetched.
    """
    import tensorflow_datasets as tfds

    tfds_dir = _tfds_data_dir(tfds_dir)
    builder = tfds.builder("cifar10", data_dir=str(tfds_dir))
    if not builder.is_prepared():
        if not download:
            return None
        builder.download_and_prepare(file_format="array_record")
    x_train, y_train = _read_tfds_split(builder, "train")
    x_test, y_test = _read_tfds_split(builder, "test")
    return ImageDataset(
        name="cifar10",
        x_train=x_train,
        y_train=y_train,
        x_test=x_test,
        y_test=y_test,
        source=f"TFDS cifar10 in {tfds_dir}",
    )


def load_cifar10_images(
    data_dir: str | os.PathLike | None = None,
    tfds_dir: str | os.PathLike | None = None,
    download: bool = False,
) -> ImageDataset:
    """Load CIFAR-10 images from the first source that exists (see the module docstring).

    Args:
      data_dir: folder holding `cifar10/`; defaults to `$DCAN_JAX_DATA`.
      tfds_dir: TFDS data directory; defaults to `$TFDS_DATA_DIR` or
        `~/tensorflow_datasets`.
      download: let TFDS download and prepare the dataset when nothing is found.

    Raises:
      DataNotFoundError: when no source exists; the message lists where it looked.
      ValueError: for corrupt batches or images.
    """
    root = resolve_data_dir(data_dir)
    looked = []
    images = None
    if root is not None:
        folder = root / "cifar10"
        looked.append(str(folder))
        if _find_pickle_folder(folder) is not None:
            images = read_cifar10_pickle_folder(folder)
        elif (folder / "train").is_dir():
            images = read_cifar10_image_folder(folder)
    if images is None:
        looked.append(f"TFDS cifar10 in {_tfds_data_dir(tfds_dir)}")
        images = load_cifar10_tfds(tfds_dir, download)
    if images is None:
        raise DataNotFoundError(
            f"cifar10 not found; looked in {looked}. Extract cifar-10-python.tar.gz into "
            f"<data_dir>/cifar10/ (giving {PICKLE_FOLDER}/) or put images in "
            "<data_dir>/cifar10/train/<class_name>/, and pass --data-dir or set "
            "$DCAN_JAX_DATA; or pass download=True (--download) on a machine with internet."
        )
    logger.info("Data: cifar10 from %s (looked in: %s)", images.source, "; ".join(looked))
    return images


def load_cifar10(
    extractor: FeatureExtractor,
    data_dir: str | os.PathLike | None = None,
    tfds_dir: str | os.PathLike | None = None,
    download: bool = False,
    cache_dir: str | os.PathLike | None = None,
    progress: bool = True,
) -> Dataset:
    """Load CIFAR-10 and return the pretrained-network features of every image.

    Args:
      extractor: the network, e.g. `dcan_jax.features.resnet50_extractor()`.
      data_dir, tfds_dir, download: as in `load_cifar10_images`.
      cache_dir: folder of cached features; `None` uses
        `dcan_jax.features.default_cache_dir()`.
      progress: show a progress bar while features are computed.

    Returns:
      A `Dataset` of float32 features, shape `(n_samples, extractor.n_features)`.
    """
    from dcan_jax import features

    images = load_cifar10_images(data_dir, tfds_dir, download)
    return features.image_features_dataset(images, extractor, cache_dir, progress)
