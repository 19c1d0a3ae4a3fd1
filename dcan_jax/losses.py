"""The DCAN objective, written on discriminator logits.

With `D = sigmoid(logit)`, `log D = -softplus(-logit)` and
`log(1 - D) = -softplus(logit)`; these forms stay finite for any logit.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

ENCODER_LOSSES = ("saturating", "non_saturating")


def discriminator_loss(positive_logits: jax.Array, encoded_logits: jax.Array) -> jax.Array:
    """Return the loss the discriminator descends, a scalar.

    It is the negated objective `mean log D(z+) + mean log(1 - D(E(x)))`, so
    descending it ascends the objective: positives drawn from the clusters are
    labelled 1 and encoder outputs 0.

    Args:
      positive_logits: logits of the positives, shape `(n_samples,)`.
      encoded_logits: logits of the encoded minibatch, shape `(n_samples,)`.
    """
    return jnp.mean(jax.nn.softplus(-positive_logits)) + jnp.mean(jax.nn.softplus(encoded_logits))


def encoder_adversarial_loss(encoded_logits: jax.Array, form: str) -> jax.Array:
    """Return the adversarial loss the encoder descends, a scalar.

    Args:
      encoded_logits: discriminator logits of the encoded minibatch, `(n_samples,)`.
      form: "saturating" descends `mean log(1 - D(E(x)))`, the objective itself;
        "non_saturating" descends `-mean log D(E(x))`, which has the same fixed
        point and stronger gradients while the discriminator wins.

    Raises:
      ValueError: for an unknown `form`.
    """
    if form == "saturating":
        return -jnp.mean(jax.nn.softplus(encoded_logits))
    if form == "non_saturating":
        return jnp.mean(jax.nn.softplus(-encoded_logits))
    raise ValueError(f"form={form!r} is not supported; choose one of {list(ENCODER_LOSSES)}.")


def reconstruction_loss(x: jax.Array, reconstruction: jax.Array) -> jax.Array:
    """Return the mean squared error over all entries, as Keras and PyTorch define it."""
    return jnp.mean((x - reconstruction) ** 2)
