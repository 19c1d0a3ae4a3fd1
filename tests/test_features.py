"""ResNet-50 features with randomly initialised weights on a few small generated images.

The library resizes images to 224x224 by default. To stay fast on a CPU, these
tests resize 16x16 images to 32x32, the smallest input Keras's ResNet-50
accepts, so every forward pass here also goes through the resize.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import pickle

import jax
import numpy as np
import pytest

from dcan_jax import features
from dcan_jax.data import cifar
from dcan_jax.data.cifar import ImageDataset


@pytest.fixture(scope="module")
def extractor() -> features.FeatureExtractor:
    return features.resnet50_extractor("random", image_size=32, batch_size=4, seed=0)


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (6, 16, 16, 3), dtype=np.uint8)


class CountingForward:
    """Wraps an extractor's forward pass and counts its calls."""

    def __init__(self, forward):
        self.forward = forward
        self.calls = 0

    def __call__(self, variables, batch):
        self.calls += 1
        return self.forward(variables, batch)


def counting(extractor: features.FeatureExtractor):
    counter = CountingForward(extractor.forward)
    return dataclasses.replace(extractor, forward=counter), counter


def test_extractor_output(extractor, images):
    out = features.extract_features(extractor, images, progress=False)

    assert extractor.n_features == 2048
    assert extractor.weights_id == "random-0"
    assert out.shape == (6, 2048)
    assert out.dtype == np.float32
    assert np.all(np.isfinite(out))
    assert np.ptp(out, axis=0).max() > 0, "features do not depend on the image"


def test_padding_does_not_change_rows(extractor, images):
    # Six images make one full batch of 4 and one batch of 2 padded to 4.
    together = features.extract_features(extractor, images, progress=False)
    alone = features.extract_features(extractor, images[4:], progress=False)

    np.testing.assert_allclose(together[4:], alone, rtol=1e-5, atol=1e-5)


def test_random_weights_are_seeded(extractor):
    # Equal seeds must give equal weights, or "random-<seed>" would be a wrong cache key.
    again = features.resnet50_extractor("random", image_size=32, batch_size=4, seed=0)

    for built, rebuilt in zip(
        jax.tree.leaves(extractor.variables), jax.tree.leaves(again.variables), strict=True
    ):
        np.testing.assert_array_equal(np.asarray(rebuilt), np.asarray(built))
    assert again.weights_id == "random-0"


def test_cache_reused(extractor, images, tmp_path):
    counted, counter = counting(extractor)

    first = features.cached_features(counted, images, "toy", "train", tmp_path, progress=False)
    assert counter.calls == 2
    (path,) = tmp_path.glob("*.npz")
    mtime = path.stat().st_mtime_ns

    second = features.cached_features(counted, images, "toy", "train", tmp_path, progress=False)

    assert counter.calls == 2, "the second call recomputed the features"
    assert path.stat().st_mtime_ns == mtime
    np.testing.assert_array_equal(second, first)
    assert list(tmp_path.glob("*.tmp")) == []


@pytest.mark.parametrize(
    "change",
    ["dataset", "split", "weights", "image_size", "model", "images"],
)
def test_cache_key_parts(extractor, images, change):
    base = features.feature_cache_key(extractor, images, "toy", "train")
    other_extractor, other_images, dataset, split = extractor, images, "toy", "train"
    if change == "dataset":
        dataset = "toy2"
    elif change == "split":
        split = "test"
    elif change == "weights":
        other_extractor = dataclasses.replace(extractor, weights_id="random-1")
    elif change == "image_size":
        other_extractor = dataclasses.replace(extractor, image_size=64)
    elif change == "model":
        other_extractor = dataclasses.replace(extractor, model_name="resnet101")
    else:
        other_images = images.copy()
        other_images[0, 0, 0, 0] ^= 1
    changed = features.feature_cache_key(other_extractor, other_images, dataset, split)

    assert changed != base
    assert features.feature_cache_path("c", changed) != features.feature_cache_path("c", base)


def test_cache_invalidated_by_weights_and_images(extractor, images, tmp_path):
    counted, counter = counting(extractor)
    features.cached_features(counted, images, "toy", "train", tmp_path, progress=False)

    reseeded = dataclasses.replace(counted, weights_id="random-1")
    features.cached_features(reseeded, images, "toy", "train", tmp_path, progress=False)
    assert counter.calls == 4

    changed = images.copy()
    changed[0, 0, 0, 0] ^= 1
    features.cached_features(counted, changed, "toy", "train", tmp_path, progress=False)
    assert counter.calls == 6
    assert len(list(tmp_path.glob("*.npz"))) == 3


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_corrupt_cache_rebuilt(extractor, images, tmp_path, caplog, damage):
    counted, counter = counting(extractor)
    first = features.cached_features(counted, images, "toy", "train", tmp_path, progress=False)
    (path,) = tmp_path.glob("*.npz")
    raw = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(raw[: len(raw) // 2])
    elif damage == "garbage":
        path.write_bytes(os.urandom(len(raw)))
    else:
        path.write_bytes(b"")

    with caplog.at_level(logging.WARNING, logger="dcan_jax"):
        rebuilt = features.cached_features(
            counted, images, "toy", "train", tmp_path, progress=False
        )

    assert counter.calls == 4
    assert any(r.levelno == logging.WARNING and str(path) in r.message for r in caplog.records)
    np.testing.assert_allclose(rebuilt, first, rtol=1e-6, atol=1e-6)
    # The rewritten file is valid again: a third call reads it.
    features.cached_features(counted, images, "toy", "train", tmp_path, progress=False)
    assert counter.calls == 4


def test_tampered_cache_rebuilt(extractor, images, tmp_path, caplog):
    from dcan_jax.data import cache

    counted, counter = counting(extractor)
    first = features.cached_features(counted, images, "toy", "train", tmp_path, progress=False)
    (path,) = tmp_path.glob("*.npz")
    key = features.feature_cache_key(extractor, images, "toy", "train")
    # A well-formed file whose features no longer match the recorded checksum.
    with np.load(path) as stored:
        record = stored["__record__"]
    np.savez(path, features=first + 1.0, __record__=record)
    assert cache.load_arrays(path, key) is None

    with caplog.at_level(logging.WARNING, logger="dcan_jax"):
        rebuilt = features.cached_features(
            counted, images, "toy", "train", tmp_path, progress=False
        )

    assert counter.calls == 4
    np.testing.assert_allclose(rebuilt, first, rtol=1e-6, atol=1e-6)


def test_nan_features_rejected(extractor, images):
    trainable, non_trainable = extractor.variables
    poisoned = [np.full(v.shape, np.nan, np.float32) for v in non_trainable]
    broken = dataclasses.replace(extractor, variables=(trainable, poisoned))

    with pytest.raises(ValueError, match=r"NaN or infinite values in 6 of 6 rows.*weights"):
        features.extract_features(broken, images, progress=False)


def test_check_finite_features_names_row():
    x = np.ones((4, 3), np.float32)
    x[2, 1] = np.inf

    with pytest.raises(ValueError, match=r"in 1 of 4 rows \(first row 2\)"):
        features.check_finite_features(x, "features")


def test_progress_lines_without_terminal(extractor, images, caplog):
    with caplog.at_level(logging.INFO, logger="dcan_jax.features"):
        features.extract_features(extractor, images, progress=True, desc="toy train")

    lines = [r.message for r in caplog.records if r.message.startswith("toy train")]
    assert lines == ["toy train: 4/6 images", "toy train: 6/6 images"]


def test_image_features_dataset(extractor, images, tmp_path):
    data = ImageDataset("toy", images[:4], np.array([0, 1, 0, 1]), images[4:], np.array([1, 0]))

    dataset = features.image_features_dataset(data, extractor, tmp_path, progress=False)

    assert dataset.x_train.shape == (4, 2048)
    assert dataset.x_test.shape == (2, 2048)
    np.testing.assert_array_equal(dataset.y_test, [1, 0])
    assert "resnet50 features (random-0 weights, 32x32 input)" in dataset.source
    assert len(list(tmp_path.glob("toy-train-resnet50-*.npz"))) == 1
    assert len(list(tmp_path.glob("toy-test-resnet50-*.npz"))) == 1


def test_load_cifar10_features(extractor, tmp_path):
    folder = tmp_path / "data" / "cifar10" / cifar.PICKLE_FOLDER
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in (*cifar.TRAIN_BATCHES, cifar.TEST_BATCH):
        rows = rng.integers(0, 256, (2, 3072), dtype=np.uint8)
        (folder / name).write_bytes(pickle.dumps({b"data": rows, b"labels": [0, 1]}))

    dataset = cifar.load_cifar10(
        extractor, tmp_path / "data", cache_dir=tmp_path / "cache", progress=False
    )

    assert dataset.name == "cifar10"
    assert dataset.x_train.shape == (10, 2048)
    assert dataset.x_test.shape == (2, 2048)
    np.testing.assert_array_equal(dataset.y_train, [0, 1] * 5)
    assert dataset.source.endswith(f"python batches in {folder}")


def test_default_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv(features.CACHE_DIR_ENV, str(tmp_path / "mine"))
    assert features.default_cache_dir() == tmp_path / "mine"

    monkeypatch.delenv(features.CACHE_DIR_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert features.default_cache_dir() == tmp_path / "xdg" / "dcan_jax" / "features"


def test_imagenet_weights_missing_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_BACKEND", "jax")
    import keras

    def no_download(*args, **kwargs):
        raise AssertionError("a download was attempted")

    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.setattr(keras.utils, "get_file", no_download)

    with pytest.raises(
        features.WeightsNotFoundError,
        match=r"resnet50_weights_tf_dim_ordering_tf_kernels_notop\.h5 not found in "
        r".*keras/models.*--download",
    ):
        features.resnet50_extractor("imagenet", image_size=32)


def test_imagenet_weights_corrupt(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / features.RESNET50_WEIGHTS_FILE).write_bytes(b"partial download")

    with pytest.raises(ValueError, match=r"has MD5 [0-9a-f]{32}, expected 4d473c1d.*Delete it"):
        features.resnet50_extractor("imagenet", image_size=32)


def test_weights_path_missing(tmp_path):
    with pytest.raises(
        features.WeightsNotFoundError, match=r"Weights file .*absent\.h5' not found"
    ):
        features.resnet50_extractor(tmp_path / "absent.h5", image_size=32)


def test_weights_path_not_weights(tmp_path):
    path = tmp_path / "notes.weights.h5"
    path.write_bytes(b"not an HDF5 file")

    with pytest.raises(ValueError, match=r"notes\.weights\.h5' is not an HDF5 weights file"):
        features.resnet50_extractor(path, image_size=32)


@pytest.mark.filterwarnings("ignore:Skipping nested container:UserWarning")
def test_weights_file_of_another_model(tmp_path):
    import h5py

    path = tmp_path / "other.weights.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("unrelated", data=np.zeros(3))

    with pytest.raises(
        ValueError,
        match=r"Cannot load ResNet-50 weights from .*other\.weights\.h5' \(A total of 106 ",
    ):
        features.resnet50_extractor(path, image_size=32)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"image_size": 16}, "image_size=16 should be an int >= 32"),
        ({"batch_size": 0}, "batch_size=0 should be an int >= 1"),
        ({"image_size": 32.0}, r"image_size=32.0 should be an int"),
    ],
)
def test_bad_settings(kwargs, message):
    with pytest.raises(ValueError, match=message):
        features.resnet50_extractor("random", **kwargs)


def test_bad_images(extractor):
    with pytest.raises(ValueError, match="dtype float32, expected uint8"):
        features.extract_features(extractor, np.zeros((2, 32, 32, 3), np.float32))
    with pytest.raises(ValueError, match=r"shape \(2, 32, 32, 1\)"):
        features.extract_features(extractor, np.zeros((2, 32, 32, 1), np.uint8))
