"""DEC and IDEC: Student-t soft assignments sharpened toward a target distribution.

DEC (Xie et al., 2016) starts from the pretrained encoder and k-means centres,
makes the centres trainable and descends `KL(P || Q)`, where

    q_ij  proportional to  (1 + |z_i - mu_j|**2 / alpha) ** (-(alpha + 1) / 2)
    p_ij  proportional to  q_ij**2 / sum_i q_ij

and `P` is recomputed over all training points every `target_update_interval`
steps and held fixed between. IDEC (Guo et al., 2017) keeps the decoder and
descends `reconstruction + gamma * KL(P || Q)`. Both run a fixed number of
steps: DEC's stopping rule (fewer than a set share of labels changing between
target updates) is recorded in the history as `label_change` but not applied.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import jax.scipy.special
import optax

from dcan_jax import cluster as clustering
from dcan_jax import losses, nets
from dcan_jax.baselines import autoencoder
from dcan_jax.baselines.autoencoder import PretrainedStart
from dcan_jax.baselines.common import FINE_TUNE_STREAM, Hyperparameters, MethodOutput, draw_rows
from dcan_jax.baselines.config import BaselineConfig

DEC_HYPERPARAMETERS = ("learning_rate",)
IDEC_HYPERPARAMETERS = ("learning_rate", "cluster_weight")


def default_dec_hyperparameters(config: BaselineConfig) -> dict[str, float]:
    return {"learning_rate": config.dec_learning_rate}


def default_idec_hyperparameters(config: BaselineConfig) -> dict[str, float]:
    return {"learning_rate": config.dec_learning_rate, "cluster_weight": config.idec_gamma}


class DECState(NamedTuple):
    """Carry of a DEC or IDEC scan from one step to the next."""

    params: dict  # {"encoder", "centres" (n_clusters, latent_size)} and IDEC's "decoder"
    opt_state: optax.OptState  # Adam state over `params`
    target: jax.Array  # (n_samples, n_clusters) float32, the target distribution P
    labels: jax.Array  # (n_samples,) int32, argmax of Q at the last target update
    label_change: jax.Array  # () float32, share of labels changed at the last update


def log_soft_assignments(z: jax.Array, centres: jax.Array, alpha: float) -> jax.Array:
    """Return `log q`, the log Student-t soft assignments, `(n_samples, n_clusters)`."""
    distances = clustering.squared_distances(z, centres)
    logits = -0.5 * (alpha + 1.0) * jnp.log1p(distances / alpha)
    return jax.nn.log_softmax(logits, axis=1)


def target_distribution(q: jax.Array) -> jax.Array:
    """Return DEC's sharpened target `P` from soft assignments `q`, same shape.

    Squaring raises confident assignments; dividing by each cluster's total
    soft count keeps large clusters from absorbing the others.
    """
    weights = q**2 / jnp.sum(q, axis=0)
    return weights / jnp.sum(weights, axis=1, keepdims=True)


def kl_to_target(target: jax.Array, log_q: jax.Array) -> jax.Array:
    """Return `mean_i sum_j p_ij log(p_ij / q_ij)`, a scalar; `0 log 0` counts as 0."""
    return jnp.mean(jnp.sum(jax.scipy.special.xlogy(target, target) - target * log_q, axis=1))


def _refresh_target(state: DECState, x: jax.Array, config: BaselineConfig) -> DECState:
    z = nets.apply_encoder(state.params["encoder"], x, config.network)
    log_q = log_soft_assignments(z, state.params["centres"], config.dec_alpha)
    labels = jnp.argmax(log_q, axis=1).astype(jnp.int32)
    change = jnp.mean((labels != state.labels).astype(jnp.float32))
    return state._replace(
        target=target_distribution(jnp.exp(log_q)), labels=labels, label_change=change
    )


def _dec_objective(params, batch, target, *, cluster_weight, reconstruct, config):
    network = config.network
    z = nets.apply_encoder(params["encoder"], batch, network)
    kl = kl_to_target(target, log_soft_assignments(z, params["centres"], config.dec_alpha))
    if not reconstruct:
        return kl, {"cluster_loss": kl}
    reconstruction = losses.reconstruction_loss(
        batch, nets.apply_decoder(params["decoder"], z, network)
    )
    metrics = {"reconstruction_loss": reconstruction, "cluster_loss": kl}
    return reconstruction + cluster_weight * kl, metrics


def _dec_step(state, step, *, key, x, objective, tx, config):
    # `step` comes from the scan's unbatched xs, so under vmap this stays a
    # conditional instead of computing both branches.
    state = jax.lax.cond(
        step % config.target_update_interval == 0,
        lambda s: _refresh_target(s, x, config),
        lambda s: s,
        state,
    )
    rows = draw_rows(jax.random.fold_in(key, step), config.network.batch_size, x.shape[0])
    (_, metrics), grads = jax.value_and_grad(objective, has_aux=True)(
        state.params, x[rows], state.target[rows]
    )
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics = {**metrics, "label_change": state.label_change}
    return state._replace(params=params, opt_state=opt_state), metrics


def _run(start, key, x, hyperparameters, config, reconstruct: bool) -> MethodOutput:
    network = config.network
    params = {"encoder": start.params["encoder"], "centres": start.cluster.means}
    if reconstruct:
        params["decoder"] = start.params["decoder"]

    tx = optax.adam(hyperparameters["learning_rate"])
    n_clusters = network.n_clusters
    state = DECState(
        params=params,
        opt_state=tx.init(params),
        target=jnp.full((x.shape[0], n_clusters), 1.0 / n_clusters),
        labels=clustering.predict(
            start.cluster, autoencoder.encode(start.params, x, config), "kmeans"
        ),
        label_change=jnp.ones(()),
    )
    objective = functools.partial(
        _dec_objective,
        cluster_weight=hyperparameters.get("cluster_weight", 0.0),
        reconstruct=reconstruct,
        config=config,
    )
    step = functools.partial(
        _dec_step,
        key=jax.random.fold_in(key, FINE_TUNE_STREAM),
        x=x,
        objective=objective,
        tx=tx,
        config=config,
    )
    state, history = jax.lax.scan(step, state, jnp.arange(network.n_steps))

    z = nets.apply_encoder(state.params["encoder"], x, network)
    log_q = log_soft_assignments(z, state.params["centres"], config.dec_alpha)
    return MethodOutput(jnp.argmax(log_q, axis=1).astype(jnp.int32), history)


def run_dec(
    start: PretrainedStart,
    key: jax.Array,
    x: jax.Array,
    hyperparameters: Hyperparameters,
    config: BaselineConfig,
) -> MethodOutput:
    """Train DEC from the pretrained encoder and its k-means centres.

    Args:
      start: the pretrained autoencoder and its k-means fit.
      key: the run's PRNG key.
      x: training inputs, shape `(n_samples, n_features)`.
      hyperparameters: traced scalar `learning_rate` (Adam).
      config: baseline settings (static).

    Returns:
      Labels `argmax_j q_ij` after the last step, and per-step `cluster_loss`
      (KL to the target) and `label_change`, each of shape `(n_steps,)`.
    """
    return _run(start, key, x, hyperparameters, config, reconstruct=False)


def run_idec(
    start: PretrainedStart,
    key: jax.Array,
    x: jax.Array,
    hyperparameters: Hyperparameters,
    config: BaselineConfig,
) -> MethodOutput:
    """Train IDEC: DEC's loss weighted by gamma beside the reconstruction error.

    Args:
      start: the pretrained autoencoder and its k-means fit.
      key: the run's PRNG key.
      x: training inputs, shape `(n_samples, n_features)`.
      hyperparameters: traced scalars `learning_rate` (Adam) and
        `cluster_weight` (gamma).
      config: baseline settings (static).

    Returns:
      As `run_dec`, with `reconstruction_loss` added to the history.
    """
    return _run(start, key, x, hyperparameters, config, reconstruct=True)
