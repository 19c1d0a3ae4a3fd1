"""The dataset container and the data directory convention shared by all loaders."""

from __future__ import annotations

import dataclasses
import os
import pathlib

import numpy as np

DATA_DIR_ENV = "DCAN_JAX_DATA"


class DataNotFoundError(FileNotFoundError):
    """Raised when no source of a dataset exists; the message lists where it looked."""


@dataclasses.dataclass(frozen=True)
class Dataset:
    """A feature matrix with optional labels and an optional held-out split.

    Attributes:
      name: dataset name, e.g. "mnist".
      x_train: training features, shape `(n_train, n_features)`, float32.
      y_train: training labels, shape `(n_train,)`, int64, or `None`.
      x_test: held-out features, shape `(n_test, n_features)`, or `None`.
      y_test: held-out labels, shape `(n_test,)`, or `None`.
      source: where the data was read from, for logs and results files.
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray | None
    x_test: np.ndarray | None = None
    y_test: np.ndarray | None = None
    source: str = ""

    @property
    def n_features(self) -> int:
        return int(self.x_train.shape[1])

    @property
    def has_test(self) -> bool:
        return self.x_test is not None

    def merged(self) -> Dataset:
        """Return one split holding train and test together (the "all" protocol)."""
        if self.x_test is None:
            return self
        y = None
        if self.y_train is not None and self.y_test is not None:
            y = np.concatenate([self.y_train, self.y_test])
        x = np.concatenate([self.x_train, self.x_test])
        return dataclasses.replace(self, x_train=x, y_train=y, x_test=None, y_test=None)

    def subset(self, n_train: int, seed: int = 0) -> Dataset:
        """Keep `n_train` training rows drawn without replacement with `seed`."""
        if not 0 < n_train <= self.x_train.shape[0]:
            raise ValueError(
                f"n_train={n_train} should be in [1, {self.x_train.shape[0]}], the "
                "number of training samples."
            )
        rows = np.sort(np.random.default_rng(seed).permutation(self.x_train.shape[0])[:n_train])
        y = None if self.y_train is None else self.y_train[rows]
        return dataclasses.replace(self, x_train=self.x_train[rows], y_train=y)


def resolve_data_dir(data_dir: str | os.PathLike | None) -> pathlib.Path | None:
    """Return the data directory from the argument, else `$DCAN_JAX_DATA`, else `None`.

    Raises:
      DataNotFoundError: when the chosen directory does not exist.
    """
    origin = "data_dir"
    if data_dir is None:
        data_dir = os.environ.get(DATA_DIR_ENV) or None
        origin = f"${DATA_DIR_ENV}"
    if data_dir is None:
        return None
    path = pathlib.Path(data_dir).expanduser()
    if not path.is_dir():
        raise DataNotFoundError(
            f"The data directory {str(path)!r} (from {origin}) does not exist; create it "
            f"or point {origin} at the folder that holds the dataset folders."
        )
    return path
