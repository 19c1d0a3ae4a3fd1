"""The DCAN training state and its jitted training step.

`train_step` is the public entry point for other JAX code: it is pure, compiled
once per configuration and input shape, and works under `jax.vmap` and inside
`jax.lax.scan`.

Example:
  >>> import jax, jax.numpy as jnp
  >>> from dcan_jax import get_config, step
  >>> config = get_config("paper", n_steps=1)
  >>> x = jax.random.uniform(jax.random.key(0), (700, 196))
  >>> state = step.create_train_state(jax.random.key(1), config, x)
  >>> state, metrics = step.train_step(state, x[:16], x[:600])
  >>> int(state.step)
  1
"""

from __future__ import annotations

import functools

import flax.struct
import jax
import jax.numpy as jnp
import optax

from dcan_jax import cluster as clustering
from dcan_jax import losses, nets
from dcan_jax.config import DCANConfig


@flax.struct.dataclass
class TrainState:
    """Everything a DCAN run carries from one step to the next; immutable.

    Update it with `.replace(...)`. Under `jax.vmap` over seeds every array field
    gains a leading seed axis.
    """

    encoder_params: dict  # pytree of the encoder's Dense layers
    decoder_params: dict  # pytree of the decoder's Dense layers; {} without a decoder
    discriminator_params: dict  # pytree of the discriminator's Dense layers
    encoder_opt_state: optax.OptState  # over {"encoder": ..., "decoder": ...}
    discriminator_opt_state: optax.OptState
    cluster: clustering.ClusterState  # means and variances (n_clusters, latent_size)
    step: jax.Array  # () int32, DCAN steps taken
    key: jax.Array  # PRNG key; step keys are fold_in(key, step)
    config: DCANConfig = flax.struct.field(pytree_node=False)

    @property
    def autoencoder_params(self) -> dict:
        return {"encoder": self.encoder_params, "decoder": self.decoder_params}


@functools.lru_cache(maxsize=64)
def make_optimizers(config: DCANConfig) -> tuple[optax.GradientTransformation, ...]:
    """Return the (encoder, discriminator) optimizers of `config`.

    Equal configs return the same objects, so jitted functions are not retraced.
    """

    def build(learning_rate: float) -> optax.GradientTransformation:
        if config.optimizer == "sgd":
            return optax.sgd(learning_rate, momentum=config.momentum)
        return optax.adam(learning_rate)

    discriminator_lr = config.discriminator_learning_rate or config.learning_rate
    return build(config.learning_rate), build(discriminator_lr)


def init_train_state(key: jax.Array, config: DCANConfig, n_features: int) -> TrainState:
    """Initialise networks and optimizers; the clustering is all zeros until set.

    Args:
      key: PRNG key.
      config: run settings.
      n_features: input size of the encoder.
    """
    encoder_key, decoder_key, discriminator_key, train_key = jax.random.split(key, 4)
    encoder_params = nets.init_encoder(encoder_key, config, n_features)
    decoder_params = (
        nets.init_decoder(decoder_key, config, n_features) if config.uses_decoder else {}
    )
    discriminator_params = nets.init_discriminator(discriminator_key, config)
    encoder_tx, discriminator_tx = make_optimizers(config)
    latent = (config.n_clusters, config.latent_size)
    empty_clusters = clustering.ClusterState(
        means=jnp.zeros(latent),
        variances=jnp.ones(latent),
        weights=jnp.full((config.n_clusters,), 1.0 / config.n_clusters),
    )
    return TrainState(
        encoder_params=encoder_params,
        decoder_params=decoder_params,
        discriminator_params=discriminator_params,
        encoder_opt_state=encoder_tx.init({"encoder": encoder_params, "decoder": decoder_params}),
        discriminator_opt_state=discriminator_tx.init(discriminator_params),
        cluster=empty_clusters,
        step=jnp.zeros((), jnp.int32),
        key=train_key,
        config=config,
    )


def init_clustering(state: TrainState, x: jax.Array, key: jax.Array) -> TrainState:
    """Cluster the encoded `x` (k-means++ then k-means) and store it in `state`.

    Args:
      state: a state whose encoder is ready (after any pretraining).
      x: inputs, shape `(n_samples, n_features)` with `n_samples >= n_clusters`.
      key: PRNG key of the k-means++ seeding.
    """
    config = state.config
    z = nets.apply_encoder(state.encoder_params, x, config)
    cluster = clustering.init_cluster_state(
        key,
        z,
        config.n_clusters,
        config.init_cluster_iters,
        config.cluster_method,
        config.covariance_reg,
        config.init_cluster_restarts,
    )
    return state.replace(cluster=cluster)


def create_train_state(key: jax.Array, config: DCANConfig, x: jax.Array) -> TrainState:
    """Initialise a state and its clustering from `x`, without pretraining.

    Args:
      key: PRNG key.
      config: run settings.
      x: inputs used to initialise the clustering, shape `(n_samples, n_features)`.
    """
    params_key, cluster_key = jax.random.split(key)
    state = init_train_state(params_key, config, x.shape[1])
    return init_clustering(state, x, cluster_key)


def total_variance(cluster: clustering.ClusterState) -> jax.Array:
    """Return the latent space's total variance per dimension implied by the mixture.

    It is `sum_k w_k (var_k + (mean_k - m)**2)` with `m` the mixture mean, shape
    `(latent_size,)`.
    """
    weights = cluster.weights[:, None]
    centre = jnp.sum(weights * cluster.means, axis=0)
    return jnp.sum(weights * (cluster.variances + (cluster.means - centre) ** 2), axis=0)


def discriminate(
    params: dict,
    z: jax.Array,
    cluster: clustering.ClusterState,
    assignments: jax.Array,
    config: DCANConfig,
) -> jax.Array:
    """Return discriminator logits for latent points `z` assigned to `assignments`.

    `config.discriminator_input` sets the discriminator's input: "raw" gives it
    `z`; "cluster" gives `(z - mean_k) / std_k` for the assigned cluster `k`;
    "total" gives `(z - mean_k) / std` with the latent space's total standard
    deviation. The statistics are held constant for the gradient. With "total",
    rescaling the whole latent space changes nothing the discriminator sees, so
    the encoder can fool it only by making clusters compact relative to the
    spread of the whole space, which is what k-means rewards.
    """
    if config.discriminator_input == "raw":
        return nets.apply_discriminator(params, z, config, assignments)
    if config.discriminator_input == "cluster":
        variances = cluster.variances[assignments]
    else:
        variances = total_variance(cluster)[None]
    means = jax.lax.stop_gradient(cluster.means[assignments])
    scales = jax.lax.stop_gradient(jnp.sqrt(variances))
    return nets.apply_discriminator(params, (z - means) / scales, config, assignments)


def _discriminator_objective(params, config, cluster, positives, encoded, assignments):
    positive_logits = discriminate(params, positives, cluster, assignments, config)
    encoded_logits = discriminate(params, encoded, cluster, assignments, config)
    loss = losses.discriminator_loss(positive_logits, encoded_logits)
    return loss, (jax.nn.sigmoid(positive_logits), jax.nn.sigmoid(encoded_logits))


def _encoder_objective(
    z, decoder_params, discriminator_params, config, cluster, batch, assignments
):
    logits = discriminate(discriminator_params, z, cluster, assignments, config)
    adversarial = losses.encoder_adversarial_loss(logits, config.encoder_loss)
    if config.reconstruction_weight > 0:
        recon = losses.reconstruction_loss(batch, nets.apply_decoder(decoder_params, z, config))
    else:
        recon = jnp.zeros(())
    total = config.adversarial_weight * adversarial + config.reconstruction_weight * recon
    return total, (adversarial, recon)


def discriminator_update(state: TrainState, positives, encoded, assignments):
    """Take one optimizer step of the discriminator on positives vs encoded points."""
    _, discriminator_tx = make_optimizers(state.config)
    (loss, (d_positive, d_encoded)), grads = jax.value_and_grad(
        _discriminator_objective, has_aux=True
    )(state.discriminator_params, state.config, state.cluster, positives, encoded, assignments)
    updates, opt_state = discriminator_tx.update(
        grads, state.discriminator_opt_state, state.discriminator_params
    )
    params = optax.apply_updates(state.discriminator_params, updates)
    new_state = state.replace(discriminator_params=params, discriminator_opt_state=opt_state)
    metrics = {
        "discriminator_loss": loss,
        "d_positive": jnp.mean(d_positive),
        "d_encoded": jnp.mean(d_encoded),
    }
    return new_state, metrics


def encoder_update(state: TrainState, batch, assignments, encoded=None, encoder_pullback=None):
    """Take one optimizer step of the encoder (and decoder) against the discriminator.

    Args:
      state: the current state.
      batch: minibatch, shape `(batch_size, n_features)`.
      assignments: the minibatch's clusters, shape `(batch_size,)`.
      encoded, encoder_pullback: the minibatch's encoding and the pullback of
        `jax.vjp` through the encoder, when the caller has them already; both
        `None` encodes the minibatch again.
    """
    config = state.config
    encoder_tx, _ = make_optimizers(config)
    if encoded is None:
        encoded, encoder_pullback = jax.vjp(
            lambda params: nets.apply_encoder(params, batch, config), state.encoder_params
        )
    (_, (adversarial, recon)), (z_grads, decoder_grads) = jax.value_and_grad(
        _encoder_objective, argnums=(0, 1), has_aux=True
    )(
        encoded,
        state.decoder_params,
        state.discriminator_params,
        config,
        state.cluster,
        batch,
        assignments,
    )
    (encoder_grads,) = encoder_pullback(z_grads)
    grads = {"encoder": encoder_grads, "decoder": decoder_grads}
    params = state.autoencoder_params
    updates, opt_state = encoder_tx.update(grads, state.encoder_opt_state, params)
    params = optax.apply_updates(params, updates)
    new_state = state.replace(
        encoder_params=params["encoder"],
        decoder_params=params["decoder"],
        encoder_opt_state=opt_state,
    )
    return new_state, {"encoder_loss": adversarial, "reconstruction_loss": recon}


@jax.jit
def train_step(
    state: TrainState, batch: jax.Array, cluster_sample: jax.Array | None = None
) -> tuple[TrainState, dict[str, jax.Array]]:
    """Run one DCAN step: cluster update, discriminator step, encoder step.

    Args:
      state: the current `TrainState`.
      batch: minibatch, shape `(batch_size, n_features)`.
      cluster_sample: points encoded for the clustering update, shape
        `(cluster_sample_size, n_features)`. Required when
        `config.cluster_update` is "sample"; unused with "running", which
        updates the clustering from the minibatch.

    Returns:
      The next state and a dict of scalar metrics: `discriminator_loss`,
      `encoder_loss` (adversarial part), `reconstruction_loss`, `d_positive` and
      `d_encoded` (mean discriminator outputs), `min_cluster_fraction` and
      `max_cluster_fraction` (cluster sizes in the points the clustering update
      saw) and `mean_variance` (mean cluster variance).
    """
    config = state.config
    positive_key = jax.random.fold_in(state.key, state.step)
    encoded, encoder_pullback = jax.vjp(
        lambda params: nets.apply_encoder(params, batch, config), state.encoder_params
    )

    # 1. One clustering update, warm-started: an E-M iteration on a fresh encoded
    # sample, or the minibatch folded into running statistics.
    if config.cluster_update == "running":
        z_update = jax.lax.stop_gradient(encoded)
        cluster = clustering.running_step(
            state.cluster,
            z_update,
            config.cluster_method,
            config.running_cluster_rate,
            config.covariance_reg,
        )
    else:
        if cluster_sample is None:
            raise ValueError(
                'cluster_update="sample" needs a cluster_sample; pass one of shape '
                '(cluster_sample_size, n_features) or set cluster_update="running".'
            )
        z_update = jax.lax.stop_gradient(
            nets.apply_encoder(state.encoder_params, cluster_sample, config)
        )
        cluster = clustering.cluster_step(
            state.cluster,
            z_update,
            config.cluster_method,
            config.covariance_reg,
            config.cluster_momentum,
        )
    state = state.replace(cluster=cluster)

    # 2. Assign the minibatch and draw positives from the assigned clusters.
    assignments = clustering.predict(cluster, encoded, config.cluster_method)
    positives = clustering.sample_positives(
        positive_key, cluster, assignments, config.positive_scale
    )

    # 3. Discriminator ascent, then 4. encoder descent against the updated one.
    state, d_metrics = discriminator_update(state, positives, encoded, assignments)
    state, e_metrics = encoder_update(state, batch, assignments, encoded, encoder_pullback)

    update_sizes = clustering.cluster_sizes(
        clustering.predict(cluster, z_update, config.cluster_method), config.n_clusters
    )
    update_fraction = update_sizes / z_update.shape[0]
    metrics = {
        **d_metrics,
        **e_metrics,
        "min_cluster_fraction": jnp.min(update_fraction),
        "max_cluster_fraction": jnp.max(update_fraction),
        "mean_variance": jnp.mean(cluster.variances),
    }
    return state.replace(step=state.step + 1), metrics
