"""Pretrained-network image features, computed with Keras 3 on JAX and cached on disk.

`resnet50_extractor` builds Keras's ResNet-50 without its classifier and with
global average pooling, so each image becomes the 2048 "avg pool" activations
that DCAN clusters on CIFAR-10. Images are resized to 224x224 (bilinear) by
default, preprocessed with `keras.applications.resnet50.preprocess_input` and
run in fixed-size batches through one jitted stateless call of the model.
`cached_features` stores the result under a key made of the dataset, the split,
the model, the weights, the input size and a digest of the images, and reuses
it while all of them match.

Keras runs on the JAX backend: this module sets `KERAS_BACKEND=jax` before it
first imports keras, and raises when keras was already imported with another
backend. Weights are never downloaded unless `download=True` is passed.

ResNet-18: Keras applications has no ResNet-18. KerasHub (`keras-hub` on PyPI)
ships an ImageNet ResNet-18 preset (`resnet_18_imagenet`), but version 0.32
requires Python >= 3.11 and, except on Windows, `tensorflow-text` and with it
all of TensorFlow, which this project avoids. flaxmodels was last released in 2023
(0.1.3), and jax-resnet in 2021 (0.0.4, its weights loader needs PyTorch). So
only ResNet-50 is provided.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import json
import logging
import os
import pathlib
import random
import re
import sys
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from dcan_jax.data import cache
from dcan_jax.data.base import Dataset
from dcan_jax.data.cifar import ImageDataset, check_images

logger = logging.getLogger(__name__)

DEFAULT_IMAGE_SIZE = 224
MIN_IMAGE_SIZE = 32
CACHE_DIR_ENV = "DCAN_JAX_CACHE"
RESNET50_WEIGHTS_FILE = "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"
RESNET50_WEIGHTS_URL = (
    "https://storage.googleapis.com/tensorflow/keras-applications/resnet/" + RESNET50_WEIGHTS_FILE
)
# The MD5 digest that Keras 3.15 (keras/src/applications/resnet.py) checks for
# RESNET50_WEIGHTS_FILE.
RESNET50_WEIGHTS_MD5 = "4d473c1dd8becc155b73f8504c6f6626"


class WeightsNotFoundError(FileNotFoundError):
    """Raised when a weights file is missing and downloading it was not allowed."""


@dataclasses.dataclass(frozen=True)
class FeatureExtractor:
    """A pretrained network that maps uint8 images to feature vectors.

    Attributes:
      model_name: the network, e.g. "resnet50"; part of the cache key.
      weights_id: the weights, part of the cache key: "imagenet-<md5 prefix>",
        "file-<sha256 prefix>" for a weights file, or "random-<seed>".
      image_size: side in pixels that images are resized to before the network.
      n_features: length of each feature vector.
      batch_size: images per forward pass. The last batch is zero-padded to this
        size, so the pass compiles once per input image shape.
      variables: the model's trainable and non-trainable variable values.
      forward: jitted `forward(variables, images)`; images of shape
        `(batch_size, height, width, 3)`, uint8, give features of shape
        `(batch_size, n_features)`, float32.
    """

    model_name: str
    weights_id: str
    image_size: int
    n_features: int
    batch_size: int
    variables: Any
    forward: Callable[[Any, jax.Array], jax.Array]

    def __call__(self, images: jax.Array) -> jax.Array:
        return self.forward(self.variables, images)


def _import_keras():
    """Import keras on the JAX backend, or raise when another backend is in use."""
    if "keras" not in sys.modules:
        requested = os.environ.get("KERAS_BACKEND", "")
        if requested not in ("", "jax"):
            raise RuntimeError(
                f"KERAS_BACKEND={requested!r}, but the feature extractor runs Keras on JAX; "
                "unset KERAS_BACKEND or set it to 'jax'."
            )
        os.environ["KERAS_BACKEND"] = "jax"
    import keras

    if keras.backend.backend() != "jax":
        raise RuntimeError(
            f"keras was imported with the {keras.backend.backend()!r} backend, but the feature "
            "extractor needs JAX; set KERAS_BACKEND=jax before keras is first imported."
        )
    return keras


def keras_weights_dir() -> pathlib.Path:
    """Return the folder where Keras keeps downloaded weights: `$KERAS_HOME/models`.

    `KERAS_HOME` defaults to `~/.keras`.
    """
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return pathlib.Path(home) / "models"


def _file_digest(path: pathlib.Path, algorithm: str) -> str:
    digest = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for block in iter(functools.partial(f.read, 1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _imagenet_weights_path(download: bool) -> pathlib.Path:
    path = keras_weights_dir() / RESNET50_WEIGHTS_FILE
    if not path.is_file():
        if not download:
            raise WeightsNotFoundError(
                f"ImageNet ResNet-50 weights file {RESNET50_WEIGHTS_FILE} not found in "
                f"{str(path.parent)!r} ($KERAS_HOME/models, default ~/.keras/models). "
                f"Download {RESNET50_WEIGHTS_URL} into that folder, pass its path as weights "
                "(--weights PATH), or pass download=True (--download) on a machine with internet."
            )
        keras = _import_keras()
        keras.utils.get_file(
            RESNET50_WEIGHTS_FILE,
            RESNET50_WEIGHTS_URL,
            cache_dir=str(path.parent.parent),
            cache_subdir=path.parent.name,
            file_hash=RESNET50_WEIGHTS_MD5,
        )
    md5 = _file_digest(path, "md5")
    if md5 != RESNET50_WEIGHTS_MD5:
        raise ValueError(
            f"{str(path)!r} has MD5 {md5}, expected {RESNET50_WEIGHTS_MD5}; the file is "
            "incomplete or corrupt. Delete it and download it again."
        )
    return path


def _resolve_weights(
    weights: str | os.PathLike | None, seed: int, download: bool
) -> tuple[pathlib.Path | None, str]:
    """Return the weights file to load (`None` for random weights) and its weights id."""
    if weights is None or weights == "random":
        return None, f"random-{seed}"
    if weights == "imagenet":
        return _imagenet_weights_path(download), f"imagenet-{RESNET50_WEIGHTS_MD5[:12]}"
    path = pathlib.Path(weights).expanduser()
    if not path.is_file():
        raise WeightsNotFoundError(
            f"Weights file {str(path)!r} not found; pass 'imagenet', 'random' or the path of "
            f"a Keras weights file such as {RESNET50_WEIGHTS_FILE}."
        )
    import h5py

    if not h5py.is_hdf5(path):
        raise ValueError(
            f"{str(path)!r} is not an HDF5 weights file; pass a Keras .h5 or .weights.h5 file "
            f"such as {RESNET50_WEIGHTS_FILE}."
        )
    return path, f"file-{_file_digest(path, 'sha256')[:16]}"


@contextlib.contextmanager
def _seeded(keras, seed: int):
    """Seed Keras's initialisers, restoring the Python and NumPy global generators after."""
    # set_random_seed also reseeds NumPy's legacy global generator, which is
    # the state to put back.
    python_state, numpy_state = random.getstate(), np.random.get_state()  # noqa: NPY002
    keras.utils.set_random_seed(seed)
    try:
        yield
    finally:
        random.setstate(python_state)
        np.random.set_state(numpy_state)  # noqa: NPY002


def _forward(variables, images, *, model, image_size, preprocess):
    x = images.astype(jnp.float32)
    if x.shape[1:3] != (image_size, image_size):
        x = jax.image.resize(x, (x.shape[0], image_size, image_size, 3), method="bilinear")
    trainable, non_trainable = variables
    features, _ = model.stateless_call(trainable, non_trainable, preprocess(x), training=False)
    return features


def _check_positive_int(name: str, value: int, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name}={value!r} should be an int >= {minimum}.")


def resnet50_extractor(
    weights: str | os.PathLike | None = "imagenet",
    *,
    image_size: int = DEFAULT_IMAGE_SIZE,
    batch_size: int = 64,
    seed: int = 0,
    download: bool = False,
) -> FeatureExtractor:
    """Build Keras's ResNet-50 "avg pool" feature extractor (2048 features per image).

    Args:
      weights: "imagenet" (Keras's ImageNet weights, read from
        `keras_weights_dir()`), "random" or `None` (random initialisation seeded
        with `seed`, for tests), or the path of a Keras weights file.
      image_size: side in pixels that images are resized to, at least 32; the
        ImageNet weights were trained at 224.
      batch_size: images per forward pass.
      seed: seed of the random initialisation; ignored for other weights.
      download: download the ImageNet weights when they are missing (needs
        internet).

    Raises:
      WeightsNotFoundError: when the weights file is missing and `download` is
        false; the message names the file and the folder to put it in.
      ValueError: for a bad size or batch size, or a corrupt weights file.
    """
    _check_positive_int("image_size", image_size, MIN_IMAGE_SIZE)
    _check_positive_int("batch_size", batch_size)
    # The weights are found (or found missing) before keras is imported, so an
    # offline run fails at once.
    path, weights_id = _resolve_weights(weights, seed, download)
    keras = _import_keras()
    from keras.applications import resnet50

    with _seeded(keras, seed):
        model = resnet50.ResNet50(
            include_top=False,
            weights=None,
            input_shape=(image_size, image_size, 3),
            pooling="avg",
        )
    if path is not None:
        try:
            model.load_weights(str(path))
        except (ValueError, OSError, KeyError) as error:
            # Keras lists every layer it could not fill, after a first line with the reason.
            reason = str(error).strip().splitlines()[0].rstrip(":")
            raise ValueError(
                f"Cannot load ResNet-50 weights from {str(path)!r} ({reason}); pass a Keras "
                f"weights file of ResNet-50 without its top, such as {RESNET50_WEIGHTS_FILE}."
            ) from error
    variables = (
        [v.value for v in model.trainable_variables],
        [v.value for v in model.non_trainable_variables],
    )
    forward = functools.partial(
        _forward, model=model, image_size=image_size, preprocess=resnet50.preprocess_input
    )
    return FeatureExtractor(
        model_name="resnet50",
        weights_id=weights_id,
        image_size=image_size,
        n_features=int(model.output_shape[-1]),
        batch_size=batch_size,
        variables=variables,
        forward=jax.jit(forward),
    )


def check_finite_features(features: np.ndarray, source: str) -> None:
    """Raise `ValueError` when `features` contains NaN or infinite values."""
    bad_rows = np.flatnonzero(~np.isfinite(features).all(axis=1))
    if bad_rows.size:
        raise ValueError(
            f"{source} has NaN or infinite values in {bad_rows.size} of {features.shape[0]} "
            f"rows (first row {bad_rows[0]}); check the weights file and the images."
        )


def extract_features(
    extractor: FeatureExtractor, images: np.ndarray, progress: bool = True, desc: str = "features"
) -> np.ndarray:
    """Run `images` through `extractor` in batches, with a progress bar.

    The bar is drawn when `progress` is true and stderr is a terminal; otherwise,
    with `progress` true, about ten plain log lines report the count.

    Args:
      extractor: the network.
      images: uint8 images, shape `(n_samples, height, width, 3)`.
      progress: report progress.
      desc: label of the progress bar and log lines.

    Returns:
      float32 features of shape `(n_samples, extractor.n_features)`.

    Raises:
      ValueError: for images of another dtype or shape, and for NaN or infinite
        features.
    """
    check_images(images, "images")
    n, batch_size = images.shape[0], extractor.batch_size
    features = np.empty((n, extractor.n_features), np.float32)
    n_batches = -(-n // batch_size)
    log_every = max(1, n_batches // 10)
    # disable=None turns the bar off when stderr is not a terminal.
    bar = tqdm(total=n, desc=desc, unit="img", disable=None if progress else True)
    for index, start in enumerate(range(0, n, batch_size)):
        batch = images[start : start + batch_size]
        count = batch.shape[0]
        if count < batch_size:
            padding = np.zeros((batch_size - count, *batch.shape[1:]), np.uint8)
            batch = np.concatenate([batch, padding])
        features[start : start + count] = np.asarray(extractor(batch))[:count]
        bar.update(count)
        if progress and bar.disable and ((index + 1) % log_every == 0 or index == n_batches - 1):
            logger.info("%s: %d/%d images", desc, start + count, n)
    bar.close()
    check_finite_features(
        features, f"{extractor.model_name} features ({extractor.weights_id} weights)"
    )
    return features


def default_cache_dir() -> pathlib.Path:
    """Return `$DCAN_JAX_CACHE`, else `$XDG_CACHE_HOME/dcan_jax/features` (`~/.cache` default)."""
    if os.environ.get(CACHE_DIR_ENV):
        return pathlib.Path(os.environ[CACHE_DIR_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return pathlib.Path(base) / "dcan_jax" / "features"


def feature_cache_key(
    extractor: FeatureExtractor, images: np.ndarray, dataset: str, split: str
) -> dict[str, Any]:
    """Return every setting that cached features of `images` depend on."""
    return {
        "dataset": dataset,
        "split": split,
        "model": extractor.model_name,
        "weights": extractor.weights_id,
        "image_size": extractor.image_size,
        "n_images": int(images.shape[0]),
        "images_sha256": hashlib.sha256(np.ascontiguousarray(images).data).hexdigest(),
    }


def feature_cache_path(cache_dir: str | os.PathLike, key: dict[str, Any]) -> pathlib.Path:
    """Return the cache file of `key`: one file per key, named after a digest of it."""
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    readable = "-".join(re.sub(r"[^A-Za-z0-9_.]+", "_", str(key[k])) for k in ("dataset", "split"))
    return pathlib.Path(cache_dir) / f"{readable}-{key['model']}-{digest}.npz"


def cached_features(
    extractor: FeatureExtractor,
    images: np.ndarray,
    dataset: str,
    split: str,
    cache_dir: str | os.PathLike | None = None,
    progress: bool = True,
) -> np.ndarray:
    """Return the features of `images`, from the cache when a valid entry exists.

    A changed key part (dataset, split, model, weights, input size or images)
    selects another cache file, so stale features are never reused. A cache file
    that is truncated, corrupt or does not match its recorded shape, dtype or
    checksum is logged as a warning and rebuilt. Writes are atomic.

    Args:
      extractor: the network.
      images: uint8 images, shape `(n_samples, height, width, 3)`.
      dataset: dataset name, e.g. "cifar10".
      split: split name, e.g. "train".
      cache_dir: cache folder; `None` uses `default_cache_dir()`.
      progress: report progress while computing.

    Returns:
      float32 features of shape `(n_samples, extractor.n_features)`.
    """
    check_images(images, f"{dataset} {split} images")
    key = feature_cache_key(extractor, images, dataset, split)
    path = feature_cache_path(default_cache_dir() if cache_dir is None else cache_dir, key)
    stored = cache.load_arrays(path, key)
    expected_shape = (images.shape[0], extractor.n_features)
    if stored is not None and stored["features"].shape == expected_shape:
        features = stored["features"]
        check_finite_features(features, f"cached features {str(path)!r}")
        logger.info("Reusing cached features %s", path)
        return features
    if stored is not None:
        logger.warning(
            "Ignoring cache file %s: features of shape %s, expected %s; rebuilding.",
            path,
            stored["features"].shape,
            expected_shape,
        )
    features = extract_features(extractor, images, progress, desc=f"{dataset} {split}")
    cache.save_arrays(path, {"features": features}, key)
    logger.info("Cached features in %s", path)
    return features


def image_features_dataset(
    images: ImageDataset,
    extractor: FeatureExtractor,
    cache_dir: str | os.PathLike | None = None,
    progress: bool = True,
) -> Dataset:
    """Turn an `ImageDataset` into a `Dataset` of (cached) pretrained-network features."""
    x_train = cached_features(extractor, images.x_train, images.name, "train", cache_dir, progress)
    x_test = None
    if images.x_test is not None:
        x_test = cached_features(extractor, images.x_test, images.name, "test", cache_dir, progress)
    description = (
        f"{extractor.model_name} features ({extractor.weights_id} weights, "
        f"{extractor.image_size}x{extractor.image_size} input)"
    )
    return Dataset(
        name=images.name,
        x_train=x_train,
        y_train=images.y_train,
        x_test=x_test,
        y_test=images.y_test,
        source=f"{description} of {images.source}",
    )
