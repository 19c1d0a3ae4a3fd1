"""Network shapes and parameter counts, and the DCAN losses."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dcan_jax import get_config, losses, nets


def _count(params):
    return sum(leaf.size for leaf in jax.tree.leaves(params))


def test_paper_encoder_shapes_and_count():
    config = get_config("paper")
    params = nets.init_encoder(jax.random.key(0), config, 196)
    assert _count(params) == 196 * 384 + 384 + 384 * 256 + 256
    z = nets.apply_encoder(params, jnp.ones((5, 196)), config)
    assert z.shape == (5, 256)


def test_paper_discriminator_shapes_and_count():
    config = get_config("paper")
    params = nets.init_discriminator(jax.random.key(0), config)
    assert _count(params) == 256 * 16 + 16 + 16 * 1 + 1
    logits = nets.apply_discriminator(params, jnp.ones((7, 256)), config)
    assert logits.shape == (7,)


def test_hidden_layers_use_tanh():
    config = get_config("paper")
    params = nets.init_encoder(jax.random.key(0), config, 4)
    x = jnp.array([[1.0, -2.0, 0.5, 3.0]])
    hidden = jnp.tanh(x @ params["Dense_0"]["kernel"] + params["Dense_0"]["bias"])
    expected = hidden @ params["Dense_1"]["kernel"] + params["Dense_1"]["bias"]
    np.testing.assert_allclose(nets.apply_encoder(params, x, config), expected, rtol=1e-5)


def test_conditioned_discriminator_sees_cluster():
    config = get_config("paper", condition_discriminator=True)
    params = nets.init_discriminator(jax.random.key(0), config)
    assert params["Dense_0"]["kernel"].shape == (256 + 10, 16)
    z = jnp.ones((2, 256))
    a = nets.apply_discriminator(params, z, config, jnp.array([0, 0]))
    b = nets.apply_discriminator(params, z, config, jnp.array([3, 3]))
    assert not np.allclose(a, b)
    with pytest.raises(ValueError, match="needs the assigned clusters"):
        nets.apply_discriminator(params, z, config)


def test_decoder_mirrors_encoder():
    config = get_config("default")
    params = nets.init_decoder(jax.random.key(0), config, 196)
    widths = [params[f"Dense_{i}"]["kernel"].shape[1] for i in range(4)]
    assert widths == [2000, 500, 500, 196]
    out = nets.apply_decoder(params, jnp.ones((3, 10)), config)
    assert out.shape == (3, 196)


def test_discriminator_loss_formula():
    positive = jnp.array([0.3, -1.2])
    encoded = jnp.array([2.0, -0.5])
    d = jax.nn.sigmoid
    expected = -(jnp.mean(jnp.log(d(positive))) + jnp.mean(jnp.log(1 - d(encoded))))
    np.testing.assert_allclose(losses.discriminator_loss(positive, encoded), expected, rtol=1e-6)


def test_encoder_loss_forms():
    logits = jnp.array([0.7, -0.1])
    d = jax.nn.sigmoid(logits)
    saturating = losses.encoder_adversarial_loss(logits, "saturating")
    non_saturating = losses.encoder_adversarial_loss(logits, "non_saturating")
    np.testing.assert_allclose(saturating, jnp.mean(jnp.log(1 - d)), rtol=1e-6)
    np.testing.assert_allclose(non_saturating, -jnp.mean(jnp.log(d)), rtol=1e-6)
    with pytest.raises(ValueError, match="form='wasserstein'"):
        losses.encoder_adversarial_loss(logits, "wasserstein")


def test_losses_finite_for_extreme_logits():
    extreme = jnp.array([-1e4, 1e4])
    assert np.isfinite(losses.discriminator_loss(extreme, extreme))
    for form in ("saturating", "non_saturating"):
        value, grad = jax.value_and_grad(losses.encoder_adversarial_loss)(extreme, form)
        assert np.isfinite(value)
        assert np.all(np.isfinite(grad))


def test_saturating_gradient_vanishes_when_discriminator_wins():
    # D(E(x)) near 0: the saturating form has almost no gradient, the other does.
    logits = jnp.array([-8.0])
    sat = jax.grad(losses.encoder_adversarial_loss)(logits, "saturating")
    non_sat = jax.grad(losses.encoder_adversarial_loss)(logits, "non_saturating")
    assert abs(float(sat[0])) < 1e-3
    assert abs(float(non_sat[0])) > 0.9
