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
    assignment_weights: jax.Array,
    misfit: jax.Array,
    covariance_reg: float,
    momentum: float,
    update_variances: bool = True,
) -> ClusterState:
    """Update means, variances and weights from (hard or soft) responsibilities."""
    counts = jnp.sum(assignment_weights, axis=0)
    safe_counts = jnp.maximum(counts, _EMPTY_COUNT)[:, None]
    means = (assignment_weights.T @ z) / safe_counts
    if update_variances:
        second_moments = (assignment_weights.T @ z**2) / safe_counts
        variances = jnp.maximum(second_moments - means**2, 0.0) + covariance_reg
    else:
        variances = state.variances
    empty = counts < _EMPTY_COUNT
    # An empty cluster keeps its previous variance and is moved to a data point.
    variances = jnp.where(empty[:, None], state.variances, variances)
    means = _reseed_empty(means, counts, z, misfit)
    weights = jnp.maximum(counts, _EMPTY_COUNT) / jnp.sum(jnp.maximum(counts, _EMPTY_COUNT))
    new = ClusterState(means, variances, weights)
    blended = _blend(state, new, momentum)
    # Re-seeded clusters jump to their new point instead of blending toward it.
    return blended._replace(means=jnp.where(empty[:, None], means, blended.means))


def responsibilities(state: ClusterState, z: jax.Array, method: str) -> tuple[jax.Array, jax.Array]:
    """Return the E-step of `method` and each point's misfit.

    Returns:
      Responsibilities of shape `(n_samples, n_clusters)` (one-hot for k-means)
      and a misfit per point (squared distance to the nearest mean for k-means,
      negative log-likelihood for a GMM), the order in which empty clusters are
      re-seeded.
    """
    if method == "kmeans":
        distances = squared_distances(z, state.means)
        nearest = jnp.argmin(distances, axis=1)
        one_hot = jax.nn.one_hot(nearest, state.means.shape[0], dtype=z.dtype)
        return one_hot, jnp.min(distances, axis=1)
    joint = log_likelihoods(state, z)
    log_evidence = jax.nn.logsumexp(joint, axis=1)
    return jnp.exp(joint - log_evidence[:, None]), -log_evidence


def kmeans_step(
    state: ClusterState,
    z: jax.Array,
    covariance_reg: float = 1e-4,
    momentum: float = 0.0,
    update_variances: bool = True,
) -> ClusterState:
    """Run one k-means (Lloyd) iteration on `z`, warm-started from `state`.

    Variances are the per-dimension spread of each cluster's assigned points, so a
    k-means state can also be sampled from.

    Args:
      state: current clustering.
      z: points, shape `(n_samples, n_features)`.
      covariance_reg: added to every variance; keeps them positive.
      momentum: weight of `state` in the result, in [0, 1).
      update_variances: False keeps `state.variances` and skips the product
        that sums squares, a temporary of the size of `z`; Lloyd iterations
        that only move the means need no more. Static.

    Returns:
      The updated `ClusterState`.
    """
    one_hot, misfit = responsibilities(state, z, "kmeans")
    return _m_step(state, z, one_hot, misfit, covariance_reg, momentum, update_variances)


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
    soft, misfit = responsibilities(state, z, "gmm")
    return _m_step(state, z, soft, misfit, covariance_reg, momentum)


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


def running_step(
    state: ClusterState,
    z: jax.Array,
    method: str,
    rate: float,
    covariance_reg: float = 1e-4,
) -> ClusterState:
    """Fold one minibatch into running cluster statistics (online E-M).

    The state stands for the sufficient statistics of a window of
    `z.shape[0] / rate` points: counts `weights * window`, and the first and
    second moments those counts, means and variances imply. Each call keeps a
    fraction `1 - rate` of them and adds the minibatch's statistics under the
    current E-step. A cluster that receives no point in the minibatch keeps its
    mean and variance while its weight decays. Once its remembered count falls
    below half a point, it is re-seeded at the minibatch's worst-fitted point. With
    `rate=1` and no empty cluster this is one `kmeans_step` or `gmm_step` on `z`.

    Args:
      state: current clustering.
      z: minibatch of latent points, shape `(batch_size, n_features)`; the
        update builds a `(batch_size, n_clusters, n_features)` temporary, small
        for a minibatch.
      method: "kmeans" or "gmm".
      rate: fraction of the statistics replaced per call, in (0, 1]; static.
      covariance_reg: added to every variance.

    Returns:
      The updated `ClusterState`.
    """
    batch_responsibilities, misfit = responsibilities(state, z, method)
    window = z.shape[0] / rate
    kept_counts = (1.0 - rate) * state.weights * window
    counts = kept_counts + jnp.sum(batch_responsibilities, axis=0)
    safe_counts = jnp.maximum(counts, _EMPTY_COUNT)[:, None]
    means = (kept_counts[:, None] * state.means + batch_responsibilities.T @ z) / safe_counts
    # Spreads about the new means, summed in centred form: raw second moments
    # would cancel badly when the means are large against the spread.
    old_spread = jnp.maximum(state.variances - covariance_reg, 0.0) + (state.means - means) ** 2
    batch_spread = jnp.einsum(
        "bk,bkd->kd", batch_responsibilities, (z[:, None, :] - means[None]) ** 2
    )
    spread = (kept_counts[:, None] * old_spread + batch_spread) / safe_counts
    variances = spread + covariance_reg
    empty = counts < 0.5
    variances = jnp.where(empty[:, None], state.variances, variances)
    means = _reseed_empty(means, jnp.where(empty, 0.0, counts), z, misfit)
    counts = jnp.where(empty, 1.0, counts)
    return ClusterState(means, variances, counts / jnp.sum(counts))


def refine(
    state: ClusterState, z: jax.Array, method: str, n_iters: int, covariance_reg: float = 1e-4
) -> ClusterState:
    """Run `n_iters` warm-started E-M iterations of `method` over all of `z`.

    k-means iterations move only the means until the last one, which also sets
    the variances; the result equals `n_iters` calls of `kmeans_step`.

    Args:
      state: starting clustering.
      z: points, shape `(n_samples, n_features)`.
      method: "kmeans" or "gmm".
      n_iters: number of iterations, 0 for none; static.
      covariance_reg: variance floor.
    """
    if n_iters == 0:
        return state
    if method == "gmm":
        return jax.lax.fori_loop(0, n_iters, lambda _, s: gmm_step(s, z, covariance_reg), state)
    state = jax.lax.fori_loop(
        0,
        n_iters - 1,
        lambda _, s: kmeans_step(s, z, covariance_reg, update_variances=False),
        state,
    )
    return kmeans_step(state, z, covariance_reg)


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
    return refine(state, z, "kmeans", max(n_iters, 1), covariance_reg)


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
