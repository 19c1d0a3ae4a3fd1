"""DC-GMM: the KL-divergence form of deep clustering that the DCAN paper derives.

The encoder is Gaussian: the pretrained encoder's hidden layers feed its last
layer, which gives the mean `mu`, and a new linear head, which gives the
log-variance `log sigma**2`. The decoder reconstructs `x` from the draw
`z = mu + sigma * eps`. The clustering loss is, per latent dimension and summed,

    KL(N(eta_k, v_k) || N(mu, sigma**2))
      = 0.5 * (log sigma**2 - log v_k + (v_k + (eta_k - mu)**2) / sigma**2 - 1),

where `eta_k` and `v_k` are the mean and diagonal variance of the cluster the
mean `mu` is assigned to. This is the direction of equation (5) in K.-L. Lim,
"Deep clustering using adversarial net based clustering loss" (the DCAN
paper). With unit variances it reduces to ABC's `0.5 * (eta_k - mu)**2`. The clustering
is `network.cluster_method`, k-means (whose clusters carry their per-dimension
spread) or a diagonal GMM, updated before every step as in DCAN.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import optax

from dcan_jax import cluster as clustering
from dcan_jax import losses, nets
from dcan_jax.baselines.autoencoder import FineTuneState, PretrainedStart, fine_tune
from dcan_jax.baselines.common import Hyperparameters, MethodOutput
from dcan_jax.baselines.config import BaselineConfig
from dcan_jax.config import DCANConfig

HYPERPARAMETERS = ("learning_rate", "cluster_weight")


def default_hyperparameters(config: BaselineConfig) -> dict[str, float]:
    return {"learning_rate": config.learning_rate, "cluster_weight": config.kl_weight}


def _layers(encoder_params: dict, first: int, stop: int) -> dict:
    """Re-index the encoder's Dense layers `first..stop-1` as `Dense_0...`."""
    return {f"Dense_{i - first}": encoder_params[f"Dense_{i}"] for i in range(first, stop)}


def encode_gaussian(params: dict, x: jax.Array, network: DCANConfig) -> tuple[jax.Array, jax.Array]:
    """Return the encoder's mean and log-variance, each `(n_samples, latent_size)`.

    Args:
      params: `{"encoder": ..., "log_variance": {"kernel", "bias"}}`; the mean
        equals `nets.apply_encoder(params["encoder"], x, network)`.
      x: inputs, shape `(n_samples, n_features)`.
      network: the autoencoder's settings.
    """
    n_layers = len(network.encoder_widths)
    hidden = x
    if n_layers > 1:
        trunk = nets.MLP(network.encoder_widths[:-1], network.activation, network.activation)
        hidden = trunk.apply({"params": _layers(params["encoder"], 0, n_layers - 1)}, x)
    mean_head = nets.MLP((network.latent_size,), network.activation, network.latent_activation)
    last_layer = _layers(params["encoder"], n_layers - 1, n_layers)
    mean = mean_head.apply({"params": last_layer}, hidden)
    log_variance_head = nets.MLP((network.latent_size,), network.activation, "linear")
    log_variance = log_variance_head.apply({"params": {"Dense_0": params["log_variance"]}}, hidden)
    return mean, log_variance


def init_log_variance_head(network: DCANConfig, n_features: int, log_variance: jax.Array) -> dict:
    """Initialise the log-variance head to output `log_variance` for every input.

    Args:
      network: the autoencoder's settings.
      n_features: input size, used when the encoder has no hidden layer.
      log_variance: initial output, shape `(latent_size,)`.
    """
    widths = network.encoder_widths
    fan_in = widths[-2] if len(widths) > 1 else n_features
    return {
        "kernel": jnp.zeros((fan_in, network.latent_size)),
        "bias": jnp.asarray(log_variance, jnp.float32),
    }


def gaussian_kl(
    cluster_mean: jax.Array, cluster_variance: jax.Array, mean: jax.Array, log_variance: jax.Array
) -> jax.Array:
    """Return `KL(N(cluster_mean, cluster_variance) || N(mean, exp(log_variance)))`.

    All arguments have shape `(n_samples, latent_size)`; the result, summed over
    the latent dimensions, has shape `(n_samples,)`.
    """
    terms = (
        log_variance
        - jnp.log(cluster_variance)
        + (cluster_variance + (cluster_mean - mean) ** 2) * jnp.exp(-log_variance)
        - 1.0
    )
    return 0.5 * jnp.sum(terms, axis=1)


def dc_gmm_objective(params, batch, cluster, noise_key, *, cluster_weight, config):
    """Return reconstruction of a draw from the encoder plus the weighted KL."""
    network = config.network
    mean, log_variance = encode_gaussian(params, batch, network)
    if config.kl_decode == "sample":
        noise = jax.random.normal(noise_key, mean.shape)
        z = mean + jnp.exp(0.5 * log_variance) * noise
    else:
        z = mean
    reconstruction = losses.reconstruction_loss(
        batch, nets.apply_decoder(params["decoder"], z, network)
    )
    assignments = clustering.predict(cluster, jax.lax.stop_gradient(mean), network.cluster_method)
    kl = jnp.mean(
        gaussian_kl(cluster.means[assignments], cluster.variances[assignments], mean, log_variance)
    )
    metrics = {
        "reconstruction_loss": reconstruction,
        "cluster_loss": kl,
        "mean_encoder_variance": jnp.mean(jnp.exp(log_variance)),
    }
    return reconstruction + cluster_weight * kl, metrics


def run_dc_gmm(
    start: PretrainedStart,
    key: jax.Array,
    x: jax.Array,
    hyperparameters: Hyperparameters,
    config: BaselineConfig,
) -> MethodOutput:
    """Fine-tune a Gaussian encoder with the KL clustering loss, then cluster.

    The log-variance head starts at the mean cluster variance of the initial
    clustering, so the encoder's spread starts at the clusters' spread.

    Args:
      start: the pretrained autoencoder and its k-means fit.
      key: the run's PRNG key.
      x: training inputs, shape `(n_samples, n_features)`.
      hyperparameters: traced scalars `learning_rate` (Adam) and
        `cluster_weight` (the KL term's weight).
      config: baseline settings (static).

    Returns:
      Labels of the encoder means after `network.final_cluster_iters`
      full-data iterations of the clustering, and per-step
      `reconstruction_loss`, `cluster_loss`, `mean_encoder_variance`,
      `min_cluster_fraction` and `max_cluster_fraction`, each `(n_steps,)`.
    """
    network = config.network
    method = network.cluster_method
    cluster = start.cluster
    if method == "gmm":
        z = nets.apply_encoder(start.params["encoder"], x, network)
        cluster = clustering.gmm_step(cluster, z, network.covariance_reg)
    head = init_log_variance_head(network, x.shape[1], jnp.log(jnp.mean(cluster.variances, axis=0)))
    params = {**start.params, "log_variance": head}
    tx = optax.adam(hyperparameters["learning_rate"])
    state = FineTuneState(params, tx.init(params), cluster)
    objective = functools.partial(
        dc_gmm_objective, cluster_weight=hyperparameters["cluster_weight"], config=config
    )

    def encode_mean(params, inputs):
        return encode_gaussian(params, inputs, network)[0]

    state, history = fine_tune(state, key, x, objective, encode_mean, tx, method, config)
    means = encode_mean(state.params, x)
    cluster = clustering.refine(
        state.cluster, means, method, network.final_cluster_iters, network.covariance_reg
    )
    return MethodOutput(clustering.predict(cluster, means, method), history)
