"""End-to-end runs of the CIFAR-10 and Fashion-MNIST experiments on tiny inputs."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest

from dcan_jax.data import cifar
from experiments import cifar10, fashion_mnist, mnist

FEW_STEPS = [
    "--set",
    "n_steps=5",
    "--set",
    "log_every=5",
    "--set",
    "batch_size=8",
    "--set",
    "cluster_sample_size=16",
    "--set",
    "init_cluster_sample_size=16",
]


def write_cifar_batches(folder, n_per_batch: int = 4) -> None:
    """Write the six CIFAR-10 python batches with random 32x32 images."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in (*cifar.TRAIN_BATCHES, cifar.TEST_BATCH):
        rows = rng.integers(0, 256, (n_per_batch, 3072), dtype=np.uint8)
        labels = rng.integers(0, 10, n_per_batch).tolist()
        (folder / name).write_bytes(pickle.dumps({b"data": rows, b"labels": labels}, protocol=2))


def test_cifar10_end_to_end(tmp_path):
    write_cifar_batches(tmp_path / "data" / "cifar10" / cifar.PICKLE_FOLDER)
    out = tmp_path / "run"
    cache = tmp_path / "cache"

    payload = cifar10.main(
        [
            "--data-dir",
            str(tmp_path / "data"),
            "--tfds-dir",
            str(tmp_path / "tfds"),
            "--weights",
            "random",
            "--image-size",
            "32",
            "--feature-batch-size",
            "8",
            "--feature-cache",
            str(cache),
            "--subset",
            "12",
            "--out",
            str(out),
            *FEW_STEPS,
        ]
    )

    results = json.loads((out / "results.json").read_text())
    assert results == json.loads(json.dumps(payload))
    assert results["dataset"] == "cifar10"
    assert results["config_name"] == "paper_cifar10"
    assert results["config"]["encoder_widths"] == [1024, 512, 128]
    assert results["config"]["n_steps"] == 5
    assert results["n_train"] == 12
    assert results["n_test"] == 4
    assert "resnet50 features (random-0 weights, 32x32 input)" in results["data_source"]
    for split in ("train_before", "train", "test"):
        assert 0.0 <= results["summary"][split]["acc"]["mean"] <= 1.0
    # --subset is applied to the images, so only the 12 kept training images were run.
    (train_file,) = cache.glob("cifar10-train-resnet50-*.npz")
    (test_file,) = cache.glob("cifar10-test-resnet50-*.npz")
    with np.load(train_file) as stored:
        assert stored["features"].shape == (12, 2048)
    with np.load(test_file) as stored:
        assert stored["features"].shape == (4, 2048)
    assert (out / "history.npz").is_file()


def test_cifar10_weights_missing_offline(tmp_path, monkeypatch, capsys):
    write_cifar_batches(tmp_path / "cifar10")
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))

    with pytest.raises(SystemExit) as exit_info:
        cifar10.main(["--data-dir", str(tmp_path), "--out", str(tmp_path / "run")])

    assert exit_info.value.code == 2
    message = capsys.readouterr().err
    assert "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5" in message
    assert str(tmp_path / "keras" / "models") in message
    assert not (tmp_path / "run").exists()


def test_cifar10_data_missing(tmp_path, capsys):
    (tmp_path / "data").mkdir()

    with pytest.raises(SystemExit) as exit_info:
        cifar10.main(["--data-dir", str(tmp_path / "data"), "--tfds-dir", str(tmp_path / "tfds")])

    assert exit_info.value.code == 2
    assert "cifar10 not found" in capsys.readouterr().err


def test_fashion_mnist_end_to_end(real_data_dir, tmp_path):
    out = tmp_path / "run"

    fashion_mnist.main(
        [
            "--data-dir",
            str(real_data_dir),
            "--image-size",
            "28",
            "--subset",
            "300",
            "--out",
            str(out),
            *FEW_STEPS,
        ]
    )

    results = json.loads((out / "results.json").read_text())
    assert results["dataset"] == "fashion-mnist"
    assert results["n_train"] == 300
    assert results["n_test"] == 10_000
    assert "IDX files" in results["data_source"]
    assert 0.0 <= results["summary"]["test"]["acc"]["mean"] <= 1.0


@pytest.mark.parametrize("module", [mnist, fashion_mnist])
def test_image_size_option(real_data_dir, module):
    from experiments import common

    parser = common.build_parser("test", "paper")
    mnist.add_image_size_argument(parser)
    assert parser.parse_args([]).image_size == 14

    dataset = module.load(
        parser.parse_args(["--data-dir", str(real_data_dir), "--image-size", "28"])
    )

    assert dataset.n_features == 784
    assert dataset.x_test.shape == (10_000, 784)


def test_image_size_rejects_other_values(capsys):
    with pytest.raises(SystemExit):
        fashion_mnist.main(["--image-size", "20"])

    assert "invalid choice: 20" in capsys.readouterr().err


def test_fashion_mnist_folder_missing(tmp_path, capsys):
    (tmp_path / "data").mkdir()

    with pytest.raises(SystemExit) as exit_info:
        fashion_mnist.main(
            ["--data-dir", str(tmp_path / "data"), "--tfds-dir", str(tmp_path / "tfds")]
        )

    assert exit_info.value.code == 2
    message = capsys.readouterr().err
    assert "fashion-mnist not found" in message
    assert str(tmp_path / "data" / "fashion-mnist") in message
