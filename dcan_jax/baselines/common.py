"""Pieces every baseline run shares: its output, minibatch draws, cluster fits.

Each baseline is a pure function `run(key, x, hyperparameters, config)` of one
PRNG key, the training matrix, a dict of traced scalar hyperparameters and a
static `BaselineConfig`. It returns a `MethodOutput`, so `jax.vmap` over keys
and hyperparameters trains many runs in one compiled program.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from dcan_jax import cluster as clustering
from dcan_jax.config import DCANConfig

# Hyperparameter name -> traced scalar, shape `()` float32.
Hyperparameters = dict[str, jax.Array]

# Independent key streams derived from a run's key with `fold_in`; the stream
# numbers stay clear of those `train.init_run` and `train.run_steps` use.
KMEANS_STREAM = 101
FINE_TUNE_STREAM = 102


class MethodOutput(NamedTuple):
    """Output of one run; under `vmap` every field gains a leading run axis."""

    labels: jax.Array  # (n_samples,) int32, the cluster of each training point
    history: dict[str, jax.Array]  # name -> (n_records,) float32, e.g. one per step


def _kmeans_restart(key, z, n_clusters, n_iters, covariance_reg):
    means = clustering.kmeans_plusplus(key, z, n_clusters)
    uniform = jnp.full((n_clusters,), 1.0 / n_clusters, z.dtype)
    state = clustering.ClusterState(means, jnp.ones_like(means), uniform)

    def lloyd_iteration(state, _):
        return clustering.kmeans_step(state, z, covariance_reg), clustering.inertia(state, z)

    state, history = jax.lax.scan(lloyd_iteration, state, None, length=n_iters)
    return state, history, clustering.inertia(state, z)


def fit_kmeans(
    key: jax.Array,
    z: jax.Array,
    n_clusters: int,
    n_iters: int,
    n_restarts: int,
    covariance_reg: float = 1e-4,
) -> tuple[clustering.ClusterState, jax.Array]:
    """Fit k-means from `n_restarts` k-means++ seedings; keep the lowest inertia.

    The restarts run vmapped, so they cost one program, not a loop.

    Args:
      key: PRNG key of the seedings.
      z: points, shape `(n_samples, n_features)` with `n_samples >= n_clusters`.
      n_clusters: number of clusters; static.
      n_iters: Lloyd iterations per restart; static.
      n_restarts: number of seedings; static.
      covariance_reg: variance floor of the returned state.

    Returns:
      The winning `ClusterState` and its inertia before each iteration, shape
      `(n_iters,)`.
    """
    restart_keys = jax.random.split(key, n_restarts)
    states, histories, final = jax.vmap(
        lambda k: _kmeans_restart(k, z, n_clusters, n_iters, covariance_reg)
    )(restart_keys)
    best = jnp.argmin(final)
    return jax.tree.map(lambda leaf: leaf[best], states), histories[best]


def draw_rows(key: jax.Array, n_rows: int, n_samples: int) -> jax.Array:
    """Draw `n_rows` row indices in `[0, n_samples)` with replacement, int32.

    Drawing with replacement keeps every step's shapes static and needs no sort.
    """
    return jax.random.randint(key, (n_rows,), 0, n_samples)


def draw_step_data(
    key: jax.Array, step: jax.Array, x: jax.Array, network: DCANConfig
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Draw one step's minibatch and clustering sample, with replacement.

    Args:
      key: the run's fine-tuning key; the step's key is `fold_in(key, step)`.
      step: step index, a scalar int.
      x: training inputs, shape `(n_samples, n_features)`.
      network: supplies `batch_size` and `cluster_sample_size`.

    Returns:
      Minibatch rows `(batch_size,)` int32, the minibatch `(batch_size,
      n_features)` and the clustering sample `(cluster_sample_size, n_features)`.
    """
    batch_key, sample_key = jax.random.split(jax.random.fold_in(key, step))
    rows = draw_rows(batch_key, network.batch_size, x.shape[0])
    sample_rows = jax.random.randint(sample_key, (network.cluster_sample_size,), 0, x.shape[0])
    return rows, x[rows], x[sample_rows]


def cluster_fractions(assignments: jax.Array, n_clusters: int) -> dict[str, jax.Array]:
    """Return the smallest and largest share of `assignments` in one cluster."""
    fractions = clustering.cluster_sizes(assignments, n_clusters) / assignments.shape[0]
    return {"min_cluster_fraction": jnp.min(fractions), "max_cluster_fraction": jnp.max(fractions)}
