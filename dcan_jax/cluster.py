"""Jit-compatible k-means and diagonal-covariance GMM on device.

Both methods share one state, `ClusterState`: per-cluster means, diagonal
variances and mixing weights. One call of `kmeans_step` or `gmm_step` is one E-M
iteration warm-started from the previous state, so cluster `k` keeps its identity
from one step to the next. A cluster that receives no points is re-seeded at a
data point chosen deterministically (the worst-fitted points, in order), so no
step produces NaN.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

# Soft counts below this are treated as an empty cluster.
_EMPTY_COUNT = 1e-6


class ClusterState(NamedTuple):
    """Parameters of a clustering of the latent space."""

    means: jax.Array  # (n_clusters, n_features) float32
    variances: jax.Array  # (n_clusters, n_features) float32, diagonal covariances
    weights: jax.Array  # (n_clusters,) float32, mixing weights summing to 1


def squared_distances(z: jax.Array, means: jax.Array) -> jax.Array:
    """Return squared Euclidean distances, shape `(n_samples, n_clusters)`."""
    cross = z @ means.T
    distances = jnp.sum(z**2, axis=1)[:, None] - 2.0 * cross + jnp.sum(means**2, axis=1)[None]
    # The expanded form can round slightly below zero.
    return jnp.maximum(distances, 0.0)


def kmeans_plusplus(key: jax.Array, z: jax.Array, n_clusters: int) -> jax.Array:
    """Choose `n_clusters` initial means from `z` by k-means++ seeding.

    Args:
      key: PRNG key.
      z: points, shape `(n_samples, n_features)`.
      n_clusters: number of means to choose; static.

    Returns:
      Means of shape `(n_clusters, n_features)`, each a row of `z`.
    """
    first_key, rest_key = jax.random.split(key)
    first = jax.random.randint(first_key, (), 0, z.shape[0])
    means = jnp.zeros((n_clusters, z.shape[1]), z.dtype).at[0].set(z[first])
    closest = jnp.sum((z - z[first]) ** 2, axis=1)

    def choose_next(i, carry):
        means, closest = carry
        # Points already chosen have zero weight; a uniform draw covers the case
        # where every point coincides with a chosen mean.
        total = jnp.sum(closest)
        probs = jnp.where(total > 0, closest / jnp.where(total > 0, total, 1.0), 1.0 / z.shape[0])
        index = jax.random.choice(jax.random.fold_in(rest_key, i), z.shape[0], p=probs)
        means = means.at[i].set(z[index])
        closest = jnp.minimum(closest, jnp.sum((z - z[index]) ** 2, axis=1))
        return means, closest

    means, _ = jax.lax.fori_loop(1, n_clusters, choose_next, (means, closest))
    return means


def _reseed_empty(
    means: jax.Array, counts: jax.Array, z: jax.Array, misfit: jax.Array
) -> jax.Array:
    """Move each empty cluster's mean to a distinct worst-fitted point.

    The j-th empty cluster (in index order) takes the point with the j-th largest
    `misfit`, so the choice is deterministic and no two clusters share a point.
    """
    n_clusters = means.shape[0]
    empty = counts < _EMPTY_COUNT
    rank_among_empty = jnp.cumsum(empty) - 1
    _, worst = jax.lax.top_k(misfit, min(n_clusters, z.shape[0]))
    rank = jnp.clip(rank_among_empty, 0, worst.shape[0] - 1)
    return jnp.where(empty[:, None], z[worst[rank]], means)


def _blend(old: ClusterState, new: ClusterState, momentum: float) -> ClusterState:
    if momentum == 0.0:
        return new
    return jax.tree.map(lambda a, b: momentum * a + (1.0 - momentum) * b, old, new)


def _m_step(
    state: ClusterState,
    z: jax.Array,
    responsibilities: jax.Array,
    misfit: jax.Array,
    covariance_reg: float,
    momentum: float,
) -> ClusterState:
    """Update means, variances and weights from (hard or soft) responsibilities."""
    counts = jnp.sum(responsibilities, axis=0)
    safe_counts = jnp.maximum(counts, _EMPTY_COUNT)[:, None]
    means = (responsibilities.T @ z) / safe_counts
    second_moments = (responsibilities.T @ z**2) / safe_counts
    variances = jnp.maximum(second_moments - means**2, 0.0) + covariance_reg
    empty = counts < _EMPTY_COUNT
    # An empty cluster keeps its previous variance and is moved to a data point.
    variances = jnp.where(empty[:, None], state.variances, variances)
    means = _reseed_empty(means, counts, z, misfit)
    weights = jnp.maximum(counts, _EMPTY_COUNT) / jnp.sum(jnp.maximum(counts, _EMPTY_COUNT))
    new = ClusterState(means, variances, weights)
    blended = _blend(state, new, momentum)
    # Re-seeded clusters jump to their new point instead of blending toward it.
    return blended._replace(means=jnp.where(empty[:, None], means, blended.means))


def kmeans_step(
    state: ClusterState, z: jax.Array, covariance_reg: float = 1e-4, momentum: float = 0.0
) -> ClusterState:
    """Run one k-means (Lloyd) iteration on `z`, warm-started from `state`.

    Variances are the per-dimension spread of each cluster's assigned points, so a
    k-means state can also be sampled from.

    Args:
      state: current clustering.
      z: points, shape `(n_samples, n_features)`.
      covariance_reg: added to every variance; keeps them positive.
      momentum: weight of `state` in the result, in [0, 1).

    Returns:
      The updated `ClusterState`.
    """
    distances = squared_distances(z, state.means)
    assignments = jnp.argmin(distances, axis=1)
    one_hot = jax.nn.one_hot(assignments, state.means.shape[0], dtype=z.dtype)
    misfit = jnp.min(distances, axis=1)
    return _m_step(state, z, one_hot, misfit, covariance_reg, momentum)


def log_likelihoods(state: ClusterState, z: jax.Array) -> jax.Array:
    """Return `log w_k + log N(z | mean_k, diag(var_k))`, shape `(n_samples, n_clusters)`."""
    precisions = 1.0 / state.variances
    mahalanobis = (
        (z**2) @ precisions.T
        - 2.0 * z @ (state.means * precisions).T
        + jnp.sum(state.means**2 * precisions, axis=1)[None]
    )
    log_det = jnp.sum(jnp.log(state.variances), axis=1)
    n_features = z.shape[1]
    log_norm = -0.5 * (n_features * jnp.log(2.0 * jnp.pi) + log_det)
    return jnp.log(state.weights)[None] + log_norm[None] - 0.5 * mahalanobis


def gmm_step(
    state: ClusterState, z: jax.Array, covariance_reg: float = 1e-4, momentum: float = 0.0
) -> ClusterState:
    """Run one E-M iteration of a diagonal-covariance GMM, warm-started from `state`.

    Args:
      state: current mixture.
      z: points, shape `(n_samples, n_features)`.
      covariance_reg: added to every variance, as `reg_covar` in scikit-learn.
      momentum: weight of `state` in the result, in [0, 1).

    Returns:
      The updated `ClusterState`.
    """
    joint = log_likelihoods(state, z)
    log_evidence = jax.nn.logsumexp(joint, axis=1)
    responsibilities = jnp.exp(joint - log_evidence[:, None])
    return _m_step(state, z, responsibilities, -log_evidence, covariance_reg, momentum)


def cluster_step(
    state: ClusterState,
    z: jax.Array,
    method: str,
    covariance_reg: float = 1e-4,
    momentum: float = 0.0,
) -> ClusterState:
    """Run one iteration of `method` ("kmeans" or "gmm")."""
    step = {"kmeans": kmeans_step, "gmm": gmm_step}[method]
    return step(state, z, covariance_reg, momentum)


def predict(state: ClusterState, z: jax.Array, method: str) -> jax.Array:
    """Assign each row of `z` to a cluster; returns int32 of shape `(n_samples,)`."""
    if method == "kmeans":
        return jnp.argmin(squared_distances(z, state.means), axis=1).astype(jnp.int32)
    return jnp.argmax(log_likelihoods(state, z), axis=1).astype(jnp.int32)


def inertia(state: ClusterState, z: jax.Array) -> jax.Array:
    """Return the k-means objective: summed squared distance to the nearest mean."""
    return jnp.sum(jnp.min(squared_distances(z, state.means), axis=1))


def _seeded_kmeans(key, z, n_clusters, n_iters, covariance_reg) -> ClusterState:
    means = kmeans_plusplus(key, z, n_clusters)
    uniform = jnp.full((n_clusters,), 1.0 / n_clusters, z.dtype)
    state = ClusterState(means, jnp.ones_like(means), uniform)
    # At least one iteration, so the variances describe the data.
    return jax.lax.fori_loop(
        0, max(n_iters, 1), lambda _, s: kmeans_step(s, z, covariance_reg), state
    )


def init_cluster_state(
    key: jax.Array,
    z: jax.Array,
    n_clusters: int,
    n_iters: int,
    method: str = "kmeans",
    covariance_reg: float = 1e-4,
    n_restarts: int = 1,
) -> ClusterState:
    """Seed with k-means++, run `n_iters` k-means iterations, then one `method` step.

    With several restarts the one with the lowest inertia is kept, as
    scikit-learn's `KMeans(n_init=...)` does; the choice uses no labels. With
    `method="kmeans"` no extra step is run.

    Args:
      key: PRNG key for the seeding.
      z: points, shape `(n_samples, n_features)`, with `n_samples >= n_clusters`.
      n_clusters: number of clusters; static.
      n_iters: k-means iterations after seeding; static.
      method: "kmeans" or "gmm".
      covariance_reg: variance floor.
      n_restarts: independent k-means++ seedings; static.
    """
    keys = jax.random.split(key, n_restarts)
    candidates = jax.vmap(lambda k: _seeded_kmeans(k, z, n_clusters, n_iters, covariance_reg))(keys)
    best = jnp.argmin(jax.vmap(inertia, in_axes=(0, None))(candidates, z))
    state = jax.tree.map(lambda leaf: leaf[best], candidates)
    return cluster_step(state, z, method, covariance_reg) if method == "gmm" else state


def sample_positives(
    key: jax.Array, state: ClusterState, assignments: jax.Array, scale: float = 1.0
) -> jax.Array:
    """Draw one point per assignment from `N(mean_k, scale**2 * diag(var_k))`.

    Args:
      key: PRNG key.
      state: clustering to sample from.
      assignments: cluster indices, shape `(n_samples,)`.
      scale: multiplies each cluster's standard deviation.

    Returns:
      Points of shape `(n_samples, n_features)`.
    """
    noise = jax.random.normal(key, (assignments.shape[0], state.means.shape[1]))
    std = jnp.sqrt(state.variances[assignments])
    return state.means[assignments] + scale * std * noise


def cluster_sizes(assignments: jax.Array, n_clusters: int) -> jax.Array:
    """Count points per cluster; int32 of shape `(n_clusters,)`."""
    return jnp.bincount(assignments, length=n_clusters).astype(jnp.int32)
