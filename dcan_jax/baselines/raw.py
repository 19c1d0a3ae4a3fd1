"""k-means and a diagonal-covariance GMM on the input features themselves.

Both use the jitted steps of `dcan_jax.cluster`. k-means keeps the best of
`config.kmeans_restarts` k-means++ seedings by inertia. The GMM starts from that
k-means solution, as scikit-learn's `GaussianMixture(init_params="kmeans")`
does, and runs `config.kmeans_iters` E-M iterations.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from dcan_jax import cluster as clustering
from dcan_jax.baselines.common import Hyperparameters, MethodOutput, fit_kmeans
from dcan_jax.baselines.config import BaselineConfig


def run_kmeans(
    key: jax.Array, x: jax.Array, hyperparameters: Hyperparameters, config: BaselineConfig
) -> MethodOutput:
    """Cluster `x` of shape `(n_samples, n_features)` with k-means.

    `hyperparameters` is unused. The history contains the winning restart's
    `inertia` before each Lloyd iteration, shape `(kmeans_iters,)`.
    """
    del hyperparameters
    network = config.network
    state, history = fit_kmeans(
        key,
        x,
        network.n_clusters,
        config.kmeans_iters,
        config.kmeans_restarts,
        network.covariance_reg,
    )
    return MethodOutput(clustering.predict(state, x, "kmeans"), {"inertia": history})


def mean_log_likelihood(state: clustering.ClusterState, x: jax.Array) -> jax.Array:
    """Average log-density of the rows of `x` under the mixture, a scalar."""
    return jnp.mean(jax.nn.logsumexp(clustering.log_likelihoods(state, x), axis=1))


def em_iterations(
    state: clustering.ClusterState, x: jax.Array, n_iters: int, covariance_reg: float
) -> tuple[clustering.ClusterState, jax.Array]:
    """Run `n_iters` diagonal-GMM E-M iterations from `state`.

    Returns:
      The final mixture and the `mean_log_likelihood` of `x` before each
      iteration, shape `(n_iters,)`.
    """

    def em_iteration(state, _):
        next_state = clustering.gmm_step(state, x, covariance_reg)
        return next_state, mean_log_likelihood(state, x)

    return jax.lax.scan(em_iteration, state, None, length=n_iters)


def run_gmm(
    key: jax.Array, x: jax.Array, hyperparameters: Hyperparameters, config: BaselineConfig
) -> MethodOutput:
    """Cluster `x` of shape `(n_samples, n_features)` with a diagonal GMM.

    The first E step uses the k-means clusters' spreads and shares as the
    mixture. `hyperparameters` is unused. The history contains the
    `mean_log_likelihood` before each E-M iteration, shape `(kmeans_iters,)`.
    """
    del hyperparameters
    network = config.network
    state, _ = fit_kmeans(
        key,
        x,
        network.n_clusters,
        config.kmeans_iters,
        config.kmeans_restarts,
        network.covariance_reg,
    )
    state, history = em_iterations(state, x, config.kmeans_iters, network.covariance_reg)
    labels = clustering.predict(state, x, "gmm")
    return MethodOutput(labels, {"mean_log_likelihood": history})
