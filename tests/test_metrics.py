"""ACC, NMI and ARI against hand-computed cases and scikit-learn."""

import numpy as np
import pytest
from sklearn import metrics as skm

from dcan_jax import metrics


def test_accuracy_permuted_labels_is_one():
    assert metrics.cluster_accuracy([0, 0, 1, 1, 2], [2, 2, 0, 0, 1]) == 1.0


def test_accuracy_hand_case():
    # Best map: cluster 0 -> class 0 (2 right), cluster 1 -> class 1 (2 right).
    y = [0, 0, 0, 1, 1, 1]
    p = [0, 0, 1, 1, 1, 0]
    assert metrics.cluster_accuracy(y, p) == pytest.approx(4 / 6, abs=1e-12)


def test_accuracy_more_clusters_than_classes():
    # Four clusters on two classes: only two clusters can be matched.
    y = [0, 0, 1, 1]
    p = [0, 1, 2, 3]
    assert metrics.cluster_accuracy(y, p) == pytest.approx(0.5, abs=1e-12)


def test_accuracy_fewer_clusters_than_classes():
    y = [0, 1, 2, 3]
    p = [0, 0, 0, 0]
    assert metrics.cluster_accuracy(y, p) == pytest.approx(0.25, abs=1e-12)


def test_accuracy_arbitrary_label_values():
    assert metrics.cluster_accuracy(["a", "a", "b"], [7, 7, -1]) == 1.0


@pytest.mark.parametrize("average", ["arithmetic", "geometric", "min", "max"])
def test_nmi_matches_sklearn(average):
    rng = np.random.default_rng(0)
    y = rng.integers(0, 5, 500)
    p = np.where(rng.random(500) < 0.6, y, rng.integers(0, 7, 500))
    expected = skm.normalized_mutual_info_score(y, p, average_method=average)
    assert metrics.normalized_mutual_info(y, p, average) == pytest.approx(expected, abs=1e-10)


def test_ari_matches_sklearn():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 4, 300)
    p = np.where(rng.random(300) < 0.5, y, rng.integers(0, 6, 300))
    expected = skm.adjusted_rand_score(y, p)
    assert metrics.adjusted_rand_index(y, p) == pytest.approx(expected, abs=1e-10)


def test_ari_trivial_labelings_match_sklearn():
    for y, p in (([0, 0, 0], [1, 1, 1]), ([0, 1, 2], [0, 1, 2]), ([0, 1, 2], [0, 0, 0])):
        assert metrics.adjusted_rand_index(y, p) == pytest.approx(
            skm.adjusted_rand_score(y, p), abs=1e-12
        )


def test_nmi_single_cluster_is_zero():
    assert metrics.normalized_mutual_info([0, 1, 0, 1], [0, 0, 0, 0]) == pytest.approx(0.0)


def test_length_mismatch_raises():
    with pytest.raises(ValueError, match="labels_true has 3 entries but labels_pred has 2"):
        metrics.cluster_accuracy([0, 1, 2], [0, 1])


def test_empty_labels_raise():
    with pytest.raises(ValueError, match="empty"):
        metrics.evaluate([], [])


def test_two_dimensional_labels_raise():
    with pytest.raises(ValueError, match="1-D"):
        metrics.adjusted_rand_index(np.zeros((2, 2)), np.zeros((2, 2)))


def test_unknown_nmi_average_raises():
    with pytest.raises(ValueError, match="average='median'"):
        metrics.normalized_mutual_info([0, 1], [0, 1], "median")
