"""The pretrained autoencoder every deep baseline starts from, and AE + k-means.

`pretrained_start` runs `train.init_run` with the run's key, so for the same
seed and `network` config a baseline starts from the very autoencoder that
`train.fit` pretrains for DCAN. It then fits k-means with restarts on all
encoded points, and AE + k-means stops there. ABC and DC-GMM continue with
`fine_tune`, which updates the clustering once per step as DCAN's
`train_step` does: one warm-started iteration on a fresh encoded sample, with
moving-average statistics. So cluster `k` keeps its identity across steps.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from dcan_jax import cluster as clustering
from dcan_jax import nets, train
from dcan_jax.baselines.common import (
    FINE_TUNE_STREAM,
    KMEANS_STREAM,
    Hyperparameters,
    MethodOutput,
    cluster_fractions,
    draw_step_data,
    fit_kmeans,
)
from dcan_jax.baselines.config import BaselineConfig

# objective(params, batch, cluster, noise_key) -> (loss, dict of scalar metrics)
Objective = Callable[..., tuple[jax.Array, dict[str, jax.Array]]]
# encode(params, x) -> the coordinates the clustering lives in, (n_samples, latent_size)
EncodeFn = Callable[[dict, jax.Array], jax.Array]


class PretrainedStart(NamedTuple):
    """A pretrained autoencoder with k-means fitted on its encoding of all points."""

    params: dict  # {"encoder": ..., "decoder": ...}, the pretrained networks
    cluster: clustering.ClusterState  # the k-means fit, (n_clusters, latent_size)
    pretrain_losses: jax.Array  # (pretrain_epochs,) float32, mean loss per epoch
    inertia: jax.Array  # (kmeans_iters,) float32, k-means inertia per iteration


class FineTuneState(NamedTuple):
    """Carry of a fine-tuning scan from one step to the next."""

    params: dict  # {"encoder": ..., "decoder": ...} plus a method's own parameters
    opt_state: optax.OptState  # Adam state over `params`
    cluster: clustering.ClusterState  # means and variances, (n_clusters, latent_size)


def pretrained_start(key: jax.Array, x: jax.Array, config: BaselineConfig) -> PretrainedStart:
    """Pretrain the autoencoder of `config.network` and cluster its encoding of `x`.

    Args:
      key: the run's PRNG key; `train.fit` with the same seed pretrains the
        same autoencoder.
      x: training inputs, shape `(n_samples, n_features)`.
      config: baseline settings (static).
    """
    state, pretrain_losses = train.init_run(key, x, config.network)
    return _cluster_encoding(state.autoencoder_params, key, x, config, pretrain_losses)


def start_from_autoencoder(
    params: dict, key: jax.Array, x: jax.Array, config: BaselineConfig
) -> PretrainedStart:
    """Cluster the encoding of `x` by an autoencoder pretrained elsewhere.

    With the parameters `pretrained_start` would pretrain for `key`, the result
    equals its result, except that the pretraining losses are unknown (NaN).

    Args:
      params: `{"encoder": ..., "decoder": ...}` of `config.network`'s shape.
      key: the run's PRNG key.
      x: training inputs, shape `(n_samples, n_features)`.
      config: baseline settings (static).
    """
    unknown_losses = jnp.full((config.network.pretrain_epochs,), jnp.nan, jnp.float32)
    return _cluster_encoding(params, key, x, config, unknown_losses)


def _cluster_encoding(params, key, x, config, pretrain_losses) -> PretrainedStart:
    network = config.network
    cluster, inertia = fit_kmeans(
        jax.random.fold_in(key, KMEANS_STREAM),
        nets.apply_encoder(params["encoder"], x, network),
        network.n_clusters,
        config.kmeans_iters,
        config.kmeans_restarts,
        network.covariance_reg,
    )
    return PretrainedStart(params, cluster, pretrain_losses, inertia)


def encode(params: dict, x: jax.Array, config: BaselineConfig) -> jax.Array:
    """Encode `x` of shape `(n_samples, n_features)` with `params["encoder"]`."""
    return nets.apply_encoder(params["encoder"], x, config.network)


def run_ae_kmeans(
    start: PretrainedStart,
    key: jax.Array,
    x: jax.Array,
    hyperparameters: Hyperparameters,
    config: BaselineConfig,
) -> MethodOutput:
    """Label `x` by the k-means fit on the pretrained autoencoder's encoding.

    `key` and `hyperparameters` are unused. The history contains `pretrain_loss`,
    shape `(pretrain_epochs,)`, and `inertia`, shape `(kmeans_iters,)`.
    """
    del key, hyperparameters
    labels = clustering.predict(start.cluster, encode(start.params, x, config), "kmeans")
    return MethodOutput(labels, {"pretrain_loss": start.pretrain_losses, "inertia": start.inertia})


def _fine_tune_step(state, step, *, key, x, objective, encode, tx, cluster_method, config):
    network = config.network
    _, batch, sample = draw_step_data(key, step, x, network)
    z_sample = jax.lax.stop_gradient(encode(state.params, sample))
    cluster = clustering.cluster_step(
        state.cluster, z_sample, cluster_method, network.covariance_reg, network.cluster_momentum
    )
    noise_key = jax.random.fold_in(jax.random.fold_in(key, step), 1)
    (_, metrics), grads = jax.value_and_grad(objective, has_aux=True)(
        state.params, batch, cluster, noise_key
    )
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    sample_assignments = clustering.predict(cluster, z_sample, cluster_method)
    metrics = {**metrics, **cluster_fractions(sample_assignments, network.n_clusters)}
    return FineTuneState(params, opt_state, cluster), metrics


def fine_tune(
    state: FineTuneState,
    key: jax.Array,
    x: jax.Array,
    objective: Objective,
    encode: EncodeFn,
    tx: optax.GradientTransformation,
    cluster_method: str,
    config: BaselineConfig,
) -> tuple[FineTuneState, dict[str, jax.Array]]:
    """Run `config.network.n_steps` steps of clustering update then gradient step.

    Args:
      state: parameters, optimizer state and the starting clustering.
      key: the run's key; step keys derive from it with `fold_in`.
      x: training inputs, shape `(n_samples, n_features)`.
      objective: the loss and its metrics, given parameters, the minibatch, the
        updated clustering and a noise key.
      encode: maps parameters and inputs to the clustering's coordinates.
      tx: optimizer over `state.params`.
      cluster_method: "kmeans" or "gmm".
      config: baseline settings (static).

    Returns:
      The final state and the metrics of every step, each of shape `(n_steps,)`.
    """
    step = functools.partial(
        _fine_tune_step,
        key=jax.random.fold_in(key, FINE_TUNE_STREAM),
        x=x,
        objective=objective,
        encode=encode,
        tx=tx,
        cluster_method=cluster_method,
        config=config,
    )
    return jax.lax.scan(step, state, jnp.arange(config.network.n_steps))
