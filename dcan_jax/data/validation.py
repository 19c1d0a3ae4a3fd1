"""Checks shared by the loaders: feature matrices, labels and cluster counts.

Every check raises `ValueError` or `TypeError` with the offending value and the
fix, so a bad file fails at load time rather than as a NaN loss inside training.
"""

from __future__ import annotations

import warnings

import numpy as np
import scipy.sparse
from numpy.typing import ArrayLike


class ConstantFeatureWarning(UserWarning):
    """Some features take one value in every sample, so they cannot separate clusters."""


def _is_sparse(x) -> bool:
    return scipy.sparse.issparse(x)


def _check_numeric(x, source: str) -> None:
    kind = x.dtype.kind
    if kind in "biuf":
        return
    if kind == "c":
        raise TypeError(
            f"{source} has complex values (dtype {x.dtype}); pass real features, e.g. the "
            "magnitude or the real and imaginary parts as separate columns."
        )
    raise TypeError(
        f"{source} has non-numeric values (dtype {x.dtype}); features must be numbers. "
        "Encode or drop non-numeric columns before loading."
    )


def _count_non_finite(x) -> tuple[int, tuple[int, int] | None]:
    """Return the number of NaN or infinite entries and the (row, column) of the first."""
    if _is_sparse(x):
        coo = x.tocoo()
        bad = ~np.isfinite(coo.data)
        if not bad.any():
            return 0, None
        first = int(np.flatnonzero(bad)[0])
        return int(bad.sum()), (int(coo.row[first]), int(coo.col[first]))
    bad = ~np.isfinite(x)
    if not bad.any():
        return 0, None
    row, column = np.argwhere(bad)[0]
    return int(bad.sum()), (int(row), int(column))


def constant_feature_mask(x) -> np.ndarray:
    """Mark features with one value in every sample; shape `(n_features,)`, bool.

    For a sparse matrix the implicit zeros count as values.
    """
    if _is_sparse(x):
        low = x.min(axis=0).toarray().ravel()
        high = x.max(axis=0).toarray().ravel()
        return low == high
    return np.ptp(x, axis=0) == 0


def check_features(x, source: str):
    """Validate a feature matrix and return it as float32 (dense, or sparse CSR).

    Args:
      x: array or scipy sparse matrix, shape `(n_samples, n_features)`.
      source: what `x` came from, used in messages (e.g. the file name).

    Returns:
      `x` as a C-contiguous float32 array, or a float32 CSR matrix when `x` is sparse.

    Raises:
      TypeError: for non-numeric or complex values.
      ValueError: for a wrong rank, fewer than 2 samples, NaN or infinite values,
        or features that are all constant.

    Warns:
      ConstantFeatureWarning: when some (not all) features are constant; the
        message gives their count and the first indices.
    """
    if not _is_sparse(x):
        x = np.asarray(x)
    _check_numeric(x, source)
    if x.ndim != 2:
        raise ValueError(
            f"{source} has shape {x.shape}, expected (n_samples, n_features); reshape a "
            "single feature to one column with x.reshape(-1, 1) and flatten each sample "
            "of a higher-rank array to one row."
        )
    n_samples, n_features = x.shape
    if n_samples < 2 or n_features < 1:
        raise ValueError(
            f"{source} has shape {x.shape}; clustering needs at least 2 samples and 1 feature."
        )
    n_bad, first = _count_non_finite(x)
    if n_bad:
        raise ValueError(
            f"{source} contains {n_bad} NaN or infinite values (first at row {first[0]}, "
            f"column {first[1]}); impute or drop them before loading."
        )
    # Overflow to inf is reported below with the fix, so numpy's warning is redundant.
    with np.errstate(over="ignore"):
        x = scipy.sparse.csr_matrix(x, dtype=np.float32) if _is_sparse(x) else x.astype(np.float32)
    n_overflow, first = _count_non_finite(x)
    if n_overflow:
        raise ValueError(
            f"{source} has {n_overflow} values beyond the float32 range of +-3.4e38 (first at "
            f"row {first[0]}, column {first[1]}); rescale the features before loading."
        )
    constant = constant_feature_mask(x)
    if constant.all():
        raise ValueError(
            f"All {n_features} features of {source} are constant, so no sample differs from "
            "another; check that the file contains the intended data."
        )
    if constant.any():
        indices = np.flatnonzero(constant)
        warnings.warn(
            f"{indices.size} of {n_features} features of {source} are constant and carry no "
            f"information for clustering (first indices {indices[:10].tolist()}); drop them "
            "to save memory and time.",
            ConstantFeatureWarning,
            stacklevel=2,
        )
    return x if _is_sparse(x) else np.ascontiguousarray(x)


def check_labels(y: ArrayLike, n_samples: int, source: str) -> np.ndarray:
    """Validate class labels and return them as int64 ids.

    Integer labels are kept as they are. Whole-number floats become ints. Strings
    and booleans are mapped to 0..n_classes-1 in sorted order.

    Args:
      y: labels, shape `(n_samples,)`; `(n_samples, 1)` and `(1, n_samples)` are
        flattened, as MATLAB stores vectors that way.
      n_samples: number of rows of the feature matrix.
      source: what `y` came from, used in messages.

    Raises:
      ValueError: for a length other than `n_samples`, NaN, or fractional values.
    """
    y = np.asarray(y)
    if y.ndim == 2 and 1 in y.shape:
        y = y.ravel()
    if y.ndim != 1:
        raise ValueError(
            f"Labels of {source} have shape {y.shape}; pass one label per sample as a 1-D array."
        )
    if y.shape[0] != n_samples:
        raise ValueError(
            f"{source} has {n_samples} samples but {y.shape[0]} labels; pass one label per "
            "sample, in the order of the feature rows."
        )
    if y.dtype.kind in "iu":
        return y.astype(np.int64)
    if y.dtype.kind == "f":
        if not np.all(np.isfinite(y)):
            row = int(np.flatnonzero(~np.isfinite(y))[0])
            raise ValueError(
                f"Labels of {source} contain NaN or infinite values (first at row {row}); "
                "give every sample a class or drop unlabelled samples."
            )
        fractional = y != np.round(y)
        if fractional.any():
            row = int(np.flatnonzero(fractional)[0])
            raise ValueError(
                f"Labels of {source} should be class ids, got {y[row]} at row {row}; "
                "check that the label column or key is the right one."
            )
        return y.astype(np.int64)
    _, ids = np.unique(y.astype(str) if y.dtype.kind == "O" else y, return_inverse=True)
    return ids.astype(np.int64)


def check_n_clusters(n_clusters: int | None, n_samples: int, source: str) -> None:
    """Raise `ValueError` unless `2 <= n_clusters <= n_samples` (skipped for `None`)."""
    if n_clusters is None:
        return
    if isinstance(n_clusters, bool) or not isinstance(n_clusters, (int, np.integer)):
        raise TypeError(f"n_clusters={n_clusters!r} should be an int.")
    if n_clusters < 2:
        raise ValueError(f"n_clusters={n_clusters} should be >= 2.")
    if n_clusters > n_samples:
        raise ValueError(
            f"n_clusters={n_clusters} is more than the n_samples={n_samples} of {source}; "
            "lower n_clusters or pass more samples."
        )
