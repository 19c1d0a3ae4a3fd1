"""k-means and GMM steps against scikit-learn, seeding, empty clusters, sampling."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.cluster import KMeans
from sklearn.mixture import GaussianMixture

from dcan_jax import cluster


def _blobs(seed=0, n_per=50, n_features=3, n_clusters=4, spread=0.3):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_clusters, n_features)) * 5
    x = np.concatenate([c + spread * rng.normal(size=(n_per, n_features)) for c in centres])
    return x.astype(np.float32), centres.astype(np.float32)


def _state(means, variances=None, weights=None):
    k = means.shape[0]
    return cluster.ClusterState(
        jnp.asarray(means),
        jnp.ones_like(jnp.asarray(means)) if variances is None else jnp.asarray(variances),
        jnp.full((k,), 1.0 / k) if weights is None else jnp.asarray(weights),
    )


def test_kmeans_step_matches_sklearn_one_iteration():
    x, _ = _blobs()
    init = x[[0, 60, 110, 160]] + 0.5
    ours = jax.jit(cluster.kmeans_step)(_state(init), x)
    reference = KMeans(4, init=init, n_init=1, max_iter=1, algorithm="lloyd").fit(x)
    np.testing.assert_allclose(ours.means, reference.cluster_centers_, rtol=1e-5, atol=1e-5)


def test_kmeans_variances_are_assigned_spread():
    x, _ = _blobs()
    init = x[[0, 60, 110, 160]]
    state = cluster.kmeans_step(_state(init), x, covariance_reg=1e-3)
    labels = np.asarray(cluster.predict(_state(init), x, "kmeans"))
    for k in range(4):
        expected = x[labels == k].var(axis=0) + 1e-3
        np.testing.assert_allclose(state.variances[k], expected, rtol=1e-4, atol=1e-5)


def test_gmm_step_matches_sklearn_one_iteration():
    x, _ = _blobs(spread=1.0)
    means = x[[0, 60, 110, 160]]
    variances = np.full_like(means, 2.0)
    weights = np.array([0.1, 0.2, 0.3, 0.4], np.float32)
    ours = jax.jit(cluster.gmm_step)(_state(means, variances, weights), x, 1e-4)
    with pytest.warns(Warning):  # scikit-learn's ConvergenceWarning after one iteration
        reference = GaussianMixture(
            4,
            covariance_type="diag",
            max_iter=1,
            reg_covar=1e-4,
            weights_init=weights,
            means_init=means,
            precisions_init=1.0 / variances,
            tol=0.0,
        ).fit(x)
    np.testing.assert_allclose(ours.means, reference.means_, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(ours.variances, reference.covariances_, rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(ours.weights, reference.weights_, rtol=1e-4, atol=1e-5)


def test_gmm_predict_matches_sklearn():
    x, _ = _blobs(spread=1.0)
    state = _state(x[[0, 60, 110, 160]], np.full((4, 3), 1.5, np.float32))
    reference = GaussianMixture(4, covariance_type="diag")
    reference.weights_ = np.asarray(state.weights, np.float64)
    reference.means_ = np.asarray(state.means, np.float64)
    reference.covariances_ = np.asarray(state.variances, np.float64)
    reference.precisions_cholesky_ = 1.0 / np.sqrt(reference.covariances_)
    np.testing.assert_array_equal(cluster.predict(state, x, "gmm"), reference.predict(x))


def test_empty_clusters_reseeded_without_nan():
    x, _ = _blobs()
    # Two means far from every point receive no points in the E step.
    init = np.concatenate([x[[0, 60]], np.full((2, 3), 1e3, np.float32)])
    for step in (cluster.kmeans_step, cluster.gmm_step):
        state = step(_state(init), x)
        assert np.all(np.isfinite(state.means))
        assert np.all(np.isfinite(state.variances))
        assert np.all(np.asarray(state.variances) > 0)
        # The re-seeded means are distinct data points.
        assert not np.allclose(state.means[2], state.means[3])
        assert np.any(np.all(np.isclose(x, state.means[2]), axis=1))
        assert np.any(np.all(np.isclose(x, state.means[3]), axis=1))


def test_empty_cluster_reseed_is_deterministic():
    x, _ = _blobs()
    init = np.concatenate([x[[0, 60, 110]], np.full((1, 3), 1e3, np.float32)])
    first = cluster.kmeans_step(_state(init), x)
    second = cluster.kmeans_step(_state(init), x)
    np.testing.assert_array_equal(first.means, second.means)


def test_identical_points_give_finite_state():
    x = np.ones((20, 2), np.float32)
    state = cluster.init_cluster_state(jax.random.key(0), jnp.asarray(x), 3, 5, "gmm")
    assert np.all(np.isfinite(state.means))
    assert np.all(np.isfinite(state.variances))
    assert np.all(np.isfinite(state.weights))


def test_warm_start_keeps_cluster_identities():
    x, centres = _blobs(spread=0.2)
    state = _state(centres + 0.3)
    for _ in range(5):
        state = cluster.kmeans_step(state, x, momentum=0.5)
    # Mean k stays nearest to true centre k: no relabelling between steps.
    distances = np.linalg.norm(np.asarray(state.means)[:, None] - centres[None], axis=-1)
    np.testing.assert_array_equal(np.argmin(distances, axis=1), np.arange(4))


def test_momentum_blends_old_and_new():
    x, _ = _blobs()
    old = _state(x[[0, 60, 110, 160]] + 0.5)
    fresh = cluster.kmeans_step(old, x)
    blended = cluster.kmeans_step(old, x, momentum=0.75)
    np.testing.assert_allclose(
        blended.means, 0.75 * old.means + 0.25 * fresh.means, rtol=1e-5, atol=1e-5
    )


def test_kmeans_plusplus_picks_distinct_rows():
    x, _ = _blobs()
    means = np.asarray(cluster.kmeans_plusplus(jax.random.key(3), jnp.asarray(x), 4))
    rows = [np.flatnonzero(np.all(x == mean, axis=1)) for mean in means]
    assert all(len(r) == 1 for r in rows)
    # On well-separated blobs k-means++ seeds one mean in each blob of 50 rows.
    blobs = {int(r[0]) // 50 for r in rows}
    assert blobs == {0, 1, 2, 3}


def test_init_cluster_state_matches_sklearn_inertia():
    x, _ = _blobs(n_per=100, n_clusters=5, spread=1.0)
    state = cluster.init_cluster_state(jax.random.key(0), jnp.asarray(x), 5, 30)
    ours = float(np.sum(np.min(cluster.squared_distances(x, state.means), axis=1)))
    reference = KMeans(5, n_init=10, random_state=0).fit(x).inertia_
    assert ours <= reference * 1.05


def test_sample_positives_moments():
    state = _state(
        np.array([[0.0, 0.0], [10.0, -10.0]], np.float32),
        np.array([[1.0, 4.0], [0.25, 0.25]], np.float32),
    )
    assignments = jnp.array([1] * 20_000)
    samples = np.asarray(cluster.sample_positives(jax.random.key(0), state, assignments, 0.5))
    np.testing.assert_allclose(samples.mean(axis=0), [10.0, -10.0], atol=0.02)
    np.testing.assert_allclose(samples.std(axis=0), [0.25, 0.25], rtol=0.03)


def test_cluster_sizes_counts():
    sizes = cluster.cluster_sizes(jnp.array([0, 2, 2, 2]), 4)
    np.testing.assert_array_equal(sizes, [1, 0, 3, 0])


def test_restarts_keep_lowest_inertia():
    x, _ = _blobs(n_per=40, n_clusters=6, spread=1.5, seed=2)
    z = jnp.asarray(x)
    single = [cluster.init_cluster_state(jax.random.key(s), z, 6, 2) for s in range(4)]
    best = cluster.init_cluster_state(jax.random.key(9), z, 6, 2, n_restarts=8)
    best_inertia = float(cluster.inertia(best, z))
    # The best of eight restarts is at least as good as a typical single seeding.
    assert best_inertia <= np.median([float(cluster.inertia(s, z)) for s in single]) + 1e-3


@pytest.mark.parametrize("method", ["kmeans", "gmm"])
def test_running_rate_one_is_em_step(method):
    x, _ = _blobs(spread=1.0)
    state = _state(x[[0, 60, 110, 160]], np.full((4, 3), 2.0, np.float32))
    running = cluster.running_step(state, x, method, rate=1.0, covariance_reg=1e-3)
    full = cluster.cluster_step(state, x, method, covariance_reg=1e-3)
    for ours, reference in zip(running, full, strict=True):
        np.testing.assert_allclose(ours, reference, rtol=1e-4, atol=1e-5)


def test_running_step_keeps_old_fraction():
    x, _ = _blobs(n_per=5)
    init = x[[0, 5, 10, 15]]
    state = cluster.kmeans_step(_state(init), x, 1e-4)
    # The first five points are cluster 0's.
    batch = x[:5]
    rate = 0.25
    updated = cluster.running_step(state, batch, "kmeans", rate, 1e-4)
    window = batch.shape[0] / rate
    kept_counts = (1 - rate) * np.asarray(state.weights) * window
    expected_mean = (kept_counts[0] * state.means[0] + batch.sum(axis=0)) / (kept_counts[0] + 5)
    np.testing.assert_allclose(updated.means[0], expected_mean, rtol=1e-5)
    # Clusters without points in the minibatch keep their mean and variance, and
    # their weight shrinks by the kept fraction of the window.
    np.testing.assert_allclose(updated.means[1:], state.means[1:], rtol=1e-6)
    np.testing.assert_allclose(updated.variances[1:], state.variances[1:], rtol=1e-5)
    np.testing.assert_allclose(updated.weights[1:], kept_counts[1:] / window, rtol=1e-5)
    np.testing.assert_allclose(np.sum(updated.weights), 1.0, rtol=1e-6)


def test_running_steps_reach_full_kmeans():
    x, _ = _blobs(seed=3, n_per=400, n_clusters=5, spread=0.8)
    init = KMeans(5, n_init=1, max_iter=1, random_state=0).fit(x[:50]).cluster_centers_
    reference = KMeans(5, init=init, n_init=1, algorithm="lloyd").fit(x)
    order = np.random.default_rng(0).permutation(x.shape[0])
    step = jax.jit(cluster.running_step, static_argnums=(2, 3))
    state = _state(init.astype(np.float32))
    for _ in range(5):
        for start in range(0, x.shape[0], 50):
            state = step(state, x[order[start : start + 50]], "kmeans", 0.05, 1e-4)
    np.testing.assert_allclose(state.means, reference.cluster_centers_, atol=0.15)
    # The online means jitter with each minibatch, which moves a few points on
    # the boundaries of the overlapping blobs.
    labels = np.asarray(cluster.predict(state, x, "kmeans"))
    assert np.mean(labels == reference.labels_) > 0.97


def test_running_step_reseeds_a_forgotten_cluster():
    x, _ = _blobs(n_per=20)
    means = np.concatenate([x[[0, 20, 40]], np.full((1, 3), 1e3, np.float32)])
    state = _state(means, weights=np.array([0.3, 0.3, 0.3, 0.1], np.float32))
    for _ in range(3):
        state = cluster.running_step(state, x, "kmeans", 1.0, 1e-4)
    assert np.all(np.isfinite(np.asarray(state.means)))
    assert np.all(np.abs(np.asarray(state.means)) < 100)
    assert np.all(np.asarray(state.weights) > 0)


def test_means_only_iteration_keeps_variances():
    x, _ = _blobs()
    state = _state(x[[0, 60, 110, 160]] + 0.5, np.full((4, 3), 7.0, np.float32))
    full = cluster.kmeans_step(state, x)
    means_only = cluster.kmeans_step(state, x, update_variances=False)
    np.testing.assert_allclose(means_only.means, full.means, rtol=1e-6)
    np.testing.assert_allclose(means_only.variances, 7.0)


@pytest.mark.parametrize("method", ["kmeans", "gmm"])
def test_refine_equals_repeated_steps(method):
    x, _ = _blobs(spread=1.0)
    state = _state(x[[0, 60, 110, 160]] + 0.5, np.full((4, 3), 2.0, np.float32))
    expected = state
    for _ in range(4):
        expected = cluster.cluster_step(expected, x, method, 1e-3)
    refined = jax.jit(cluster.refine, static_argnums=(2, 3))(state, x, method, 4, 1e-3)
    for ours, reference in zip(refined, expected, strict=True):
        np.testing.assert_allclose(ours, reference, rtol=1e-4, atol=1e-6)
    assert cluster.refine(state, x, method, 0) is state
