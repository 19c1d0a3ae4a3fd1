"""Encoder, decoder and discriminator as pure `init_*` / `apply_*` pairs.

All three are multilayer perceptrons built with `flax.linen`; parameters are plain
pytrees of arrays, and every function here is pure and jit-compatible.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from dcan_jax.config import DCANConfig

Params = dict


def _activation(name: str) -> Callable[[jax.Array], jax.Array]:
    return {
        "tanh": jnp.tanh,
        "relu": jax.nn.relu,
        "sigmoid": jax.nn.sigmoid,
        "linear": lambda x: x,
    }[name]


class MLP(nn.Module):
    """Dense layers with one activation between them and another at the output."""

    widths: Sequence[int]
    activation: str
    output_activation: str

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        hidden = _activation(self.activation)
        for width in self.widths[:-1]:
            x = hidden(nn.Dense(width)(x))
        return _activation(self.output_activation)(nn.Dense(self.widths[-1])(x))


def _encoder(config: DCANConfig) -> MLP:
    return MLP(config.encoder_widths, config.activation, config.latent_activation)


def _decoder(config: DCANConfig, n_features: int) -> MLP:
    widths = (*config.resolved_decoder_widths, n_features)
    return MLP(widths, config.activation, config.decoder_output_activation)


def _discriminator(config: DCANConfig) -> MLP:
    # The output is a logit; the sigmoid lives in the losses for numerical stability.
    return MLP((*config.discriminator_widths, 1), config.discriminator_activation, "linear")


def discriminator_input_size(config: DCANConfig) -> int:
    extra = config.n_clusters if config.condition_discriminator else 0
    return config.latent_size + extra


def init_encoder(key: jax.Array, config: DCANConfig, n_features: int) -> Params:
    """Initialise encoder parameters for inputs of shape `(n_samples, n_features)`."""
    return _encoder(config).init(key, jnp.zeros((1, n_features)))["params"]


def apply_encoder(params: Params, x: jax.Array, config: DCANConfig) -> jax.Array:
    """Encode `x` of shape `(n_samples, n_features)` to `(n_samples, latent_size)`."""
    return _encoder(config).apply({"params": params}, x)


def init_decoder(key: jax.Array, config: DCANConfig, n_features: int) -> Params:
    """Initialise decoder parameters mapping the latent space back to `n_features`."""
    return _decoder(config, n_features).init(key, jnp.zeros((1, config.latent_size)))["params"]


def apply_decoder(params: Params, z: jax.Array, config: DCANConfig) -> jax.Array:
    """Decode `z` of shape `(n_samples, latent_size)` to `(n_samples, n_features)`."""
    last_layer = f"Dense_{len(config.resolved_decoder_widths)}"
    n_features = params[last_layer]["bias"].shape[-1]
    return _decoder(config, n_features).apply({"params": params}, z)


def init_discriminator(key: jax.Array, config: DCANConfig) -> Params:
    """Initialise discriminator parameters."""
    inputs = jnp.zeros((1, discriminator_input_size(config)))
    return _discriminator(config).init(key, inputs)["params"]


def apply_discriminator(
    params: Params, z: jax.Array, config: DCANConfig, assignments: jax.Array | None = None
) -> jax.Array:
    """Return discriminator logits of shape `(n_samples,)`.

    Args:
      params: discriminator parameters.
      z: latent points, shape `(n_samples, latent_size)`.
      config: the run's configuration.
      assignments: cluster indices, shape `(n_samples,)`; required when
        `config.condition_discriminator` is set, and ignored otherwise.
    """
    if config.condition_discriminator:
        if assignments is None:
            raise ValueError("condition_discriminator=True needs the assigned clusters.")
        z = jnp.concatenate([z, jax.nn.one_hot(assignments, config.n_clusters)], axis=-1)
    return _discriminator(config).apply({"params": params}, z)[:, 0]
