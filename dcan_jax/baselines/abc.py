"""ABC: autoencoder-based clustering with a squared-distance clustering loss.

The encoder (and decoder) descend the reconstruction error plus lambda times
the squared Euclidean distance from each latent point to the centre of its
assigned k-means cluster, equation (2) of the DCAN paper (K.-L. Lim, "Deep
clustering using adversarial net based clustering loss"). The k-means
clustering is updated before every step as in DCAN, and the gradient does not
flow into the centres or the assignments.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import optax

from dcan_jax import cluster as clustering
from dcan_jax import losses, nets
from dcan_jax.baselines import autoencoder
from dcan_jax.baselines.autoencoder import FineTuneState, PretrainedStart
from dcan_jax.baselines.common import Hyperparameters, MethodOutput
from dcan_jax.baselines.config import BaselineConfig

HYPERPARAMETERS = ("learning_rate", "cluster_weight")


def default_hyperparameters(config: BaselineConfig) -> dict[str, float]:
    return {"learning_rate": config.learning_rate, "cluster_weight": config.abc_weight}


def abc_objective(params, batch, cluster, noise_key, *, cluster_weight, config):
    """Return the ABC loss of `batch` and its two terms as metrics."""
    del noise_key
    network = config.network
    z = nets.apply_encoder(params["encoder"], batch, network)
    reconstruction = losses.reconstruction_loss(
        batch, nets.apply_decoder(params["decoder"], z, network)
    )
    assignments = clustering.predict(cluster, jax.lax.stop_gradient(z), "kmeans")
    distance = jnp.mean(jnp.sum((z - cluster.means[assignments]) ** 2, axis=1))
    loss = reconstruction + cluster_weight * distance
    return loss, {"reconstruction_loss": reconstruction, "cluster_loss": distance}


def run_abc(
    start: PretrainedStart,
    key: jax.Array,
    x: jax.Array,
    hyperparameters: Hyperparameters,
    config: BaselineConfig,
) -> MethodOutput:
    """Fine-tune the pretrained autoencoder with the ABC loss, then cluster.

    Args:
      start: the pretrained autoencoder and its k-means fit.
      key: the run's PRNG key.
      x: training inputs, shape `(n_samples, n_features)`.
      hyperparameters: traced scalars `learning_rate` (Adam) and
        `cluster_weight` (lambda).
      config: baseline settings (static).

    Returns:
      Labels after `network.final_cluster_iters` full-data k-means iterations,
      and per-step `reconstruction_loss`, `cluster_loss`, `min_cluster_fraction`
      and `max_cluster_fraction`, each of shape `(n_steps,)`.
    """
    network = config.network
    tx = optax.adam(hyperparameters["learning_rate"])
    state = FineTuneState(start.params, tx.init(start.params), start.cluster)
    objective = functools.partial(
        abc_objective, cluster_weight=hyperparameters["cluster_weight"], config=config
    )
    encode = functools.partial(autoencoder.encode, config=config)
    state, history = autoencoder.fine_tune(state, key, x, objective, encode, tx, "kmeans", config)
    z = encode(state.params, x)
    cluster = clustering.refine(
        state.cluster, z, "kmeans", network.final_cluster_iters, network.covariance_reg
    )
    return MethodOutput(clustering.predict(cluster, z, "kmeans"), history)
