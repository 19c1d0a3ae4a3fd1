"""CIFAR-10 loaders on small pickle batches and PNG folders written in tmp_path."""

from __future__ import annotations

import os
import pathlib
import pickle

import numpy as np
import pytest
from PIL import Image

from dcan_jax.data import DATA_DIR_ENV, DataNotFoundError, Dataset, cifar


def write_batch(path: pathlib.Path, images: np.ndarray, labels, protocol: int = 2) -> None:
    """Write a CIFAR-10 python batch: channel-major rows under b"data", ids under b"labels"."""
    rows = images.transpose(0, 3, 1, 2).reshape(images.shape[0], 3072)
    batch = {
        b"batch_label": b"fixture batch",
        b"labels": [int(label) for label in labels],
        b"data": np.ascontiguousarray(rows),
        b"filenames": [f"image_{i}.png".encode() for i in range(images.shape[0])],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(batch, protocol=protocol))


def random_images(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)


def write_pickle_folder(folder: pathlib.Path, n_per_batch: int = 4) -> dict[str, np.ndarray]:
    """Write the five training batches and the test batch, and return their contents."""
    train_images, train_labels = [], []
    for i, name in enumerate(cifar.TRAIN_BATCHES):
        images = random_images(n_per_batch, seed=i)
        labels = np.arange(i, i + n_per_batch) % 10
        write_batch(folder / name, images, labels)
        train_images.append(images)
        train_labels.append(labels)
    test_images = random_images(n_per_batch, seed=99)
    test_labels = np.arange(n_per_batch) % 10
    write_batch(folder / cifar.TEST_BATCH, test_images, test_labels)
    return {
        "x_train": np.concatenate(train_images),
        "y_train": np.concatenate(train_labels),
        "x_test": test_images,
        "y_test": test_labels,
    }


def write_png(path: pathlib.Path, pixels: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)


def test_batch_round_trip(tmp_path):
    images = random_images(5, seed=0)
    write_batch(tmp_path / "data_batch_1", images, [3, 1, 4, 1, 5])

    read_images, labels = cifar.read_cifar10_batch(tmp_path / "data_batch_1")

    assert read_images.dtype == np.uint8
    assert read_images.shape == (5, 32, 32, 3)
    np.testing.assert_array_equal(read_images, images)
    assert labels.dtype == np.int64
    np.testing.assert_array_equal(labels, [3, 1, 4, 1, 5])


def test_batch_rows_are_channel_major(tmp_path):
    # One row: 1024 red values, then 1024 green, then 1024 blue.
    row = np.concatenate([np.full(1024, 10), np.full(1024, 20), np.full(1024, 30)])
    batch = {b"data": row.astype(np.uint8)[None, :], b"labels": [7]}
    (tmp_path / "test_batch").write_bytes(pickle.dumps(batch))

    images, labels = cifar.read_cifar10_batch(tmp_path / "test_batch")

    np.testing.assert_array_equal(images[0, 0, 0], [10, 20, 30])
    np.testing.assert_array_equal(images[0, 31, 31], [10, 20, 30])
    np.testing.assert_array_equal(labels, [7])


def test_batch_with_numpy1_module_path(tmp_path):
    # Pickles written under numpy 1 refer to `numpy.core.multiarray`.
    images = random_images(2, seed=1)
    write_batch(tmp_path / "data_batch_1", images, [0, 9], protocol=2)
    raw = (tmp_path / "data_batch_1").read_bytes()
    assert b"numpy._core.multiarray" in raw
    (tmp_path / "data_batch_1").write_bytes(
        raw.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    )

    read_images, labels = cifar.read_cifar10_batch(tmp_path / "data_batch_1")

    np.testing.assert_array_equal(read_images, images)
    np.testing.assert_array_equal(labels, [0, 9])


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_batch_pickle_protocols(tmp_path, protocol):
    images = random_images(3, seed=protocol)
    write_batch(tmp_path / "b", images, [1, 2, 3], protocol=protocol)

    read_images, _ = cifar.read_cifar10_batch(tmp_path / "b")

    np.testing.assert_array_equal(read_images, images)


def test_pickle_folder_layouts(tmp_path):
    nested = tmp_path / "nested" / "cifar10" / cifar.PICKLE_FOLDER
    flat = tmp_path / "flat" / "cifar10"
    expected = write_pickle_folder(nested)
    write_pickle_folder(flat)

    for data_dir in (tmp_path / "nested", tmp_path / "flat"):
        images = cifar.load_cifar10_images(data_dir=data_dir, tfds_dir=tmp_path / "tfds")
        assert images.x_train.shape == (20, 32, 32, 3)
        assert images.x_test.shape == (4, 32, 32, 3)
        np.testing.assert_array_equal(images.x_train, expected["x_train"])
        np.testing.assert_array_equal(images.y_train, expected["y_train"])
        np.testing.assert_array_equal(images.x_test, expected["x_test"])
        np.testing.assert_array_equal(images.y_test, expected["y_test"])
        assert images.class_names == cifar.CIFAR10_CLASSES
        assert "python batches" in images.source


def test_missing_batch_named(tmp_path):
    folder = tmp_path / "cifar10" / cifar.PICKLE_FOLDER
    write_pickle_folder(folder)
    (folder / "data_batch_3").unlink()

    with pytest.raises(DataNotFoundError, match=r"data_batch_3.*cifar-10-batches-py"):
        cifar.load_cifar10_images(data_dir=tmp_path, tfds_dir=tmp_path / "tfds")


def test_missing_batch_file(tmp_path):
    with pytest.raises(DataNotFoundError, match=r"'test_batch' not found in .*extract"):
        cifar.read_cifar10_batch(tmp_path / "test_batch")


def test_truncated_batch(tmp_path):
    write_batch(tmp_path / "data_batch_1", random_images(4, seed=0), [0, 1, 2, 3])
    raw = (tmp_path / "data_batch_1").read_bytes()
    (tmp_path / "data_batch_1").write_bytes(raw[: len(raw) // 2])

    with pytest.raises(ValueError, match=r"data_batch_1.*not a valid CIFAR-10 python batch"):
        cifar.read_cifar10_batch(tmp_path / "data_batch_1")


def test_garbage_batch(tmp_path):
    (tmp_path / "data_batch_1").write_bytes(os.urandom(64))

    with pytest.raises(ValueError, match="not a valid CIFAR-10 python batch.*Extract"):
        cifar.read_cifar10_batch(tmp_path / "data_batch_1")


@pytest.mark.parametrize(
    "batch, message",
    [
        ([1, 2, 3], r"expected a dict with b'data' and b'labels', got list"),
        ({b"data": np.zeros((2, 3072), np.uint8)}, r"got \[b'data'\]"),
        ({b"data": np.zeros((2, 1024), np.uint8), b"labels": [0, 1]}, r"shape \(2, 1024\)"),
        ({b"data": np.zeros((2, 3072), np.float32), b"labels": [0, 1]}, "uint8 array"),
        ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]}, "should hold 2 integer ids"),
        ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 10]}, r"range over \[0, 10\]"),
    ],
)
def test_malformed_batch(tmp_path, batch, message):
    (tmp_path / "data_batch_1").write_bytes(pickle.dumps(batch))

    with pytest.raises(ValueError, match=message):
        cifar.read_cifar10_batch(tmp_path / "data_batch_1")


class _MakesFolder:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (os.mkdir, (self.path,))


def test_batch_with_foreign_code_rejected(tmp_path):
    marker = tmp_path / "created_by_pickle"
    payload = {b"data": _MakesFolder(str(marker)), b"labels": [0]}
    (tmp_path / "data_batch_1").write_bytes(pickle.dumps(payload))

    with pytest.raises(ValueError, match=r"global 'posix.mkdir' is not allowed"):
        cifar.read_cifar10_batch(tmp_path / "data_batch_1")
    assert not marker.exists()


def test_image_folder_sorted_classes(tmp_path):
    root = tmp_path / "images"
    cat = random_images(2, seed=3)
    dog = random_images(1, seed=4)
    # Written out of order: labels follow the sorted class names, not creation order.
    write_png(root / "dog" / "0.png", dog[0])
    write_png(root / "cat" / "1.png", cat[1])
    write_png(root / "cat" / "0.png", cat[0])
    (root / "cat" / "notes.txt").write_text("not an image")

    images, labels, class_names = cifar.read_image_folder(root)

    assert class_names == ("cat", "dog")
    assert images.dtype == np.uint8
    assert images.shape == (3, 32, 32, 3)
    np.testing.assert_array_equal(labels, [0, 0, 1])
    np.testing.assert_array_equal(images, np.concatenate([cat, dog]))


def test_image_folder_modes_become_rgb(tmp_path):
    root = tmp_path / "images"
    gray = np.full((32, 32), 77, np.uint8)
    write_png(root / "a" / "g.png", gray)
    rgba = np.zeros((32, 32, 4), np.uint8)
    rgba[..., :3] = 200
    rgba[..., 3] = 10
    write_png(root / "b" / "t.png", rgba)
    write_png(root / "b" / "j.jpg", np.full((32, 32, 3), 128, np.uint8))

    images, labels, _ = cifar.read_image_folder(root)

    np.testing.assert_array_equal(images[0], np.full((32, 32, 3), 77))
    # JPEG is lossy, so a flat grey comes back within a few levels.
    np.testing.assert_allclose(images[1].astype(int), 128, atol=3, rtol=0)
    np.testing.assert_array_equal(images[2], np.full((32, 32, 3), 200))
    np.testing.assert_array_equal(labels, [0, 1, 1])


def test_image_folder_empty_class(tmp_path):
    root = tmp_path / "images"
    write_png(root / "cat" / "0.png", random_images(1, seed=0)[0])
    (root / "dog").mkdir()

    with pytest.raises(ValueError, match=r"Class folder .*dog' contains no .png/.jpg/.jpeg"):
        cifar.read_image_folder(root)


def test_image_folder_missing_root(tmp_path):
    with pytest.raises(DataNotFoundError, match=r"Image folder .*absent' not found"):
        cifar.read_image_folder(tmp_path / "absent")


def test_image_folder_without_classes(tmp_path):
    write_png(tmp_path / "0.png", random_images(1, seed=0)[0])

    with pytest.raises(DataNotFoundError, match="has no class subfolders"):
        cifar.read_image_folder(tmp_path)


def test_image_folder_wrong_size(tmp_path):
    root = tmp_path / "images"
    write_png(root / "cat" / "small.png", np.zeros((8, 16, 3), np.uint8))

    with pytest.raises(ValueError, match=r"small.png' is 16x8 pixels .* expected 32x32"):
        cifar.read_image_folder(root)

    images, _, _ = cifar.read_image_folder(root, resize=True)
    assert images.shape == (1, 32, 32, 3)


def test_image_folder_unreadable_image(tmp_path):
    root = tmp_path / "images"
    (root / "cat").mkdir(parents=True)
    (root / "cat" / "broken.png").write_bytes(b"\x89PNG not really")

    with pytest.raises(ValueError, match=r"Cannot read image .*broken.png"):
        cifar.read_image_folder(root)


def test_cifar_image_folder_splits(tmp_path):
    folder = tmp_path / "cifar10"
    for split, n in (("train", 2), ("test", 1)):
        for name in ("airplane", "bird"):
            for i in range(n):
                write_png(folder / split / name / f"{i}.png", random_images(1, seed=i)[0])

    images = cifar.load_cifar10_images(data_dir=tmp_path, tfds_dir=tmp_path / "tfds")

    assert images.x_train.shape == (4, 32, 32, 3)
    assert images.x_test.shape == (2, 32, 32, 3)
    np.testing.assert_array_equal(images.y_train, [0, 0, 1, 1])
    assert images.class_names == ("airplane", "bird")
    assert "image files" in images.source


def test_cifar_image_folder_class_mismatch(tmp_path):
    folder = tmp_path / "cifar10"
    write_png(folder / "train" / "cat" / "0.png", random_images(1, seed=0)[0])
    write_png(folder / "test" / "dog" / "0.png", random_images(1, seed=1)[0])

    with pytest.raises(ValueError, match=r"\['dog'\] differ .* \['cat'\]"):
        cifar.read_cifar10_image_folder(folder)


def test_no_source_lists_places(tmp_path):
    (tmp_path / "data").mkdir()

    with pytest.raises(DataNotFoundError, match=r"cifar10 not found; looked in .*data/cifar10"):
        cifar.load_cifar10_images(data_dir=tmp_path / "data", tfds_dir=tmp_path / "tfds")


def test_tfds_source(tmp_path, monkeypatch):
    tfds = pytest.importorskip("tensorflow_datasets")
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)
    with tfds.testing.mock_data(num_examples=6):
        # mock_data replaces the records but still reports the dataset as unprepared.
        monkeypatch.setattr(tfds.core.DatasetBuilder, "is_prepared", lambda self: True)
        images = cifar.load_cifar10_images(data_dir=None, tfds_dir=tmp_path / "tfds")

    assert images.x_train.shape == (6, 32, 32, 3)
    assert images.x_train.dtype == np.uint8
    assert images.y_test.shape == (6,)
    assert images.class_names == cifar.CIFAR10_CLASSES
    assert images.source.startswith("TFDS cifar10")


def test_subset_matches_dataset_subset():
    labels = np.arange(50)
    images = cifar.ImageDataset("toy", random_images(50, seed=0), labels)
    features = Dataset("toy", np.zeros((50, 2), np.float32), labels)

    np.testing.assert_array_equal(images.subset(7).y_train, features.subset(7).y_train)
    with pytest.raises(ValueError, match=r"n_train=51 should be in \[1, 50\]"):
        images.subset(51)


def test_merged_keeps_order():
    images = cifar.ImageDataset(
        "toy", random_images(3, 0), np.array([0, 1, 2]), random_images(2, 1), np.array([3, 4])
    )

    merged = images.merged()

    assert merged.x_test is None
    np.testing.assert_array_equal(merged.y_train, [0, 1, 2, 3, 4])
    np.testing.assert_array_equal(merged.x_train[3:], images.x_test)


@pytest.mark.parametrize(
    "images, message",
    [
        (np.zeros((2, 32, 32, 3), np.float32), "dtype float32, expected uint8"),
        ([[0]], "dtype list, expected uint8"),
        (np.zeros((2, 32, 32), np.uint8), r"shape \(2, 32, 32\), expected \(n_samples"),
        (np.zeros((0, 32, 32, 3), np.uint8), "n_samples >= 1"),
        (np.zeros((2, 32, 32, 4), np.uint8), "RGB channels last"),
    ],
)
def test_check_images_rejects(images, message):
    with pytest.raises(ValueError, match=message):
        cifar.check_images(images, "images")
