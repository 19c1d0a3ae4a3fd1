"""External clustering metrics: accuracy, NMI and ARI.

All three work from the contingency table of true classes against predicted
clusters, so the number of clusters may differ from the number of classes.
"""

from __future__ import annotations

import numpy as np
import scipy.optimize
from numpy.typing import ArrayLike

NMI_AVERAGES = ("arithmetic", "geometric", "min", "max")


def _as_label_pair(labels_true: ArrayLike, labels_pred: ArrayLike) -> tuple[np.ndarray, ...]:
    labels_true = np.asarray(labels_true)
    labels_pred = np.asarray(labels_pred)
    if labels_true.ndim != 1 or labels_pred.ndim != 1:
        raise ValueError(
            f"Labels should be 1-D, got shapes {labels_true.shape} and {labels_pred.shape}."
        )
    if labels_true.shape != labels_pred.shape:
        raise ValueError(
            f"labels_true has {labels_true.shape[0]} entries but labels_pred has "
            f"{labels_pred.shape[0]}; pass one label per sample to both."
        )
    if labels_true.size == 0:
        raise ValueError("Labels are empty; pass at least one sample.")
    return labels_true, labels_pred


def contingency_matrix(labels_true: ArrayLike, labels_pred: ArrayLike) -> np.ndarray:
    """Count samples per (class, cluster); shape `(n_classes, n_clusters)`.

    Labels may be any hashable values; rows and columns follow their sorted order.
    """
    labels_true, labels_pred = _as_label_pair(labels_true, labels_pred)
    _, class_index = np.unique(labels_true, return_inverse=True)
    _, cluster_index = np.unique(labels_pred, return_inverse=True)
    table = np.zeros((class_index.max() + 1, cluster_index.max() + 1), np.int64)
    np.add.at(table, (class_index, cluster_index), 1)
    return table


def cluster_accuracy(labels_true: ArrayLike, labels_pred: ArrayLike) -> float:
    """Return the accuracy under the best one-to-one map of clusters to classes.

    The contingency table is zero-padded to a square, so with more clusters than
    classes the surplus clusters match no class and count as errors, and with
    fewer clusters some classes stay unmatched. The map is found by the Hungarian
    method (`scipy.optimize.linear_sum_assignment`).
    """
    table = contingency_matrix(labels_true, labels_pred)
    size = max(table.shape)
    square = np.zeros((size, size), np.int64)
    square[: table.shape[0], : table.shape[1]] = table
    rows, cols = scipy.optimize.linear_sum_assignment(square, maximize=True)
    return float(square[rows, cols].sum() / table.sum())


def _entropy(counts: np.ndarray) -> float:
    p = counts[counts > 0] / counts.sum()
    return float(-np.sum(p * np.log(p)))


def _mutual_information(table: np.ndarray) -> float:
    n = table.sum()
    joint = table / n
    outer = np.outer(table.sum(axis=1), table.sum(axis=0)) / n**2
    nonzero = joint > 0
    return float(np.sum(joint[nonzero] * np.log(joint[nonzero] / outer[nonzero])))


def normalized_mutual_info(
    labels_true: ArrayLike, labels_pred: ArrayLike, average: str = "arithmetic"
) -> float:
    """Return the mutual information normalised by a mean of the two entropies.

    Args:
      labels_true: classes, shape `(n_samples,)`.
      labels_pred: clusters, shape `(n_samples,)`.
      average: "arithmetic" (scikit-learn's default), "geometric" (used by
        DEC-era papers), "min" or "max".

    Returns:
      NMI in [0, 1]; 1.0 when both labelings are a single identical group.
    """
    if average not in NMI_AVERAGES:
        raise ValueError(f"average={average!r} is not supported; choose one of {NMI_AVERAGES}.")
    table = contingency_matrix(labels_true, labels_pred)
    h_true = _entropy(table.sum(axis=1))
    h_pred = _entropy(table.sum(axis=0))
    if h_true == 0.0 and h_pred == 0.0:
        return 1.0
    normaliser = {
        "arithmetic": (h_true + h_pred) / 2.0,
        "geometric": np.sqrt(h_true * h_pred),
        "min": min(h_true, h_pred),
        "max": max(h_true, h_pred),
    }[average]
    if normaliser == 0.0:
        return 0.0
    return float(np.clip(_mutual_information(table) / normaliser, 0.0, 1.0))


def _pairs(counts: np.ndarray) -> float:
    counts = counts.astype(np.float64)
    return float(np.sum(counts * (counts - 1.0)) / 2.0)


def adjusted_rand_index(labels_true: ArrayLike, labels_pred: ArrayLike) -> float:
    """Return the Rand index adjusted for chance (Hubert and Arabie, 1985)."""
    table = contingency_matrix(labels_true, labels_pred)
    total_pairs = _pairs(np.array([table.sum()]))
    same_both = _pairs(table)
    same_true = _pairs(table.sum(axis=1))
    same_pred = _pairs(table.sum(axis=0))
    if total_pairs == 0.0:
        return 1.0
    expected = same_true * same_pred / total_pairs
    maximum = (same_true + same_pred) / 2.0
    if maximum == expected:
        # Both labelings are trivial (one group each, or all singletons).
        return 1.0
    return float((same_both - expected) / (maximum - expected))


def evaluate(labels_true: ArrayLike, labels_pred: ArrayLike) -> dict[str, float]:
    """Return ACC, NMI (arithmetic and geometric) and ARI in one dict."""
    return {
        "acc": cluster_accuracy(labels_true, labels_pred),
        "nmi": normalized_mutual_info(labels_true, labels_pred, "arithmetic"),
        "nmi_geometric": normalized_mutual_info(labels_true, labels_pred, "geometric"),
        "ari": adjusted_rand_index(labels_true, labels_pred),
    }
