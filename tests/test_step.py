"""The jitted train step: shapes, tracing, jit equivalence, immutability."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dcan_jax import get_config, step

METRIC_NAMES = {
    "discriminator_loss",
    "encoder_loss",
    "reconstruction_loss",
    "d_positive",
    "d_encoded",
    "min_cluster_fraction",
    "max_cluster_fraction",
    "mean_variance",
}


def _setup(**overrides):
    config = get_config("paper", **overrides)
    x = jax.random.uniform(jax.random.key(0), (300, 20))
    state = step.create_train_state(jax.random.key(1), config, x)
    return config, x, state


def test_state_and_metric_shapes():
    config, x, state = _setup(n_clusters=3, encoder_widths=(16, 8), cluster_sample_size=64)
    assert state.cluster.means.shape == (3, 8)
    assert state.cluster.variances.shape == (3, 8)
    assert state.cluster.weights.shape == (3,)
    new_state, metrics = step.train_step(state, x[:16], x[:64])
    assert set(metrics) == METRIC_NAMES
    assert all(np.shape(v) == () for v in metrics.values())
    assert int(new_state.step) == 1
    assert jax.tree.structure(new_state) == jax.tree.structure(state)


def test_train_step_traces_once():
    _, x, state = _setup(n_clusters=5, encoder_widths=(12, 6), cluster_sample_size=50)
    before = step.train_step._cache_size()
    for i in range(4):
        state, _ = step.train_step(state, x[i : i + 16], x[:50])
    assert step.train_step._cache_size() - before == 1


def test_jit_matches_eager():
    _, x, state = _setup(n_clusters=4, encoder_widths=(16, 8), cluster_sample_size=60)
    jitted, jitted_metrics = step.train_step(state, x[:16], x[:60])
    with jax.disable_jit():
        eager, eager_metrics = step.train_step(state, x[:16], x[:60])
    for a, b in zip(jax.tree.leaves(jitted), jax.tree.leaves(eager), strict=True):
        if jnp.issubdtype(jnp.asarray(a).dtype, jnp.floating):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    for name in METRIC_NAMES:
        np.testing.assert_allclose(jitted_metrics[name], eager_metrics[name], rtol=1e-4, atol=1e-5)


def test_step_leaves_input_state_unchanged():
    _, x, state = _setup(n_clusters=3, encoder_widths=(16, 8), cluster_sample_size=64)
    kernel = np.array(state.encoder_params["Dense_0"]["kernel"])
    new_state, _ = step.train_step(state, x[:16], x[:64])
    np.testing.assert_array_equal(state.encoder_params["Dense_0"]["kernel"], kernel)
    assert not np.allclose(new_state.encoder_params["Dense_0"]["kernel"], kernel)
    assert int(state.step) == 0


def test_reconstruction_term_trains_decoder():
    config, x, state = _setup(
        n_clusters=3, encoder_widths=(16, 8), cluster_sample_size=64, reconstruction_weight=1.0
    )
    assert state.decoder_params
    new_state, metrics = step.train_step(state, x[:16], x[:64])
    assert float(metrics["reconstruction_loss"]) > 0
    before = state.decoder_params["Dense_0"]["kernel"]
    assert not np.allclose(new_state.decoder_params["Dense_0"]["kernel"], before)


def test_gmm_and_conditioned_variant_run():
    _, x, state = _setup(
        n_clusters=3,
        encoder_widths=(16, 8),
        cluster_sample_size=64,
        cluster_method="gmm",
        condition_discriminator=True,
        encoder_loss="non_saturating",
        optimizer="adam",
    )
    for _ in range(3):
        state, metrics = step.train_step(state, x[:16], x[:64])
    assert all(np.isfinite(float(v)) for v in metrics.values())


def test_discriminator_input_total_is_scale_free():
    config = get_config("paper", n_clusters=3, encoder_widths=(16, 8), discriminator_input="total")
    x = jax.random.uniform(jax.random.key(0), (300, 20))
    state = step.create_train_state(jax.random.key(1), config, x)
    z = jax.random.normal(jax.random.key(2), (10, 8))
    assignments = jnp.arange(10) % 3
    logits = step.discriminate(state.discriminator_params, z, state.cluster, assignments, config)
    # Scaling latent points and cluster statistics together leaves the logits as they are.
    scaled = state.cluster._replace(
        means=5.0 * state.cluster.means, variances=25.0 * state.cluster.variances
    )
    scaled_logits = step.discriminate(
        state.discriminator_params, 5.0 * z, scaled, assignments, config
    )
    np.testing.assert_allclose(logits, scaled_logits, rtol=1e-4, atol=1e-5)


def test_total_variance_of_two_clusters():
    cluster = step.clustering.ClusterState(
        means=jnp.array([[-1.0], [1.0]]),
        variances=jnp.array([[0.5], [0.5]]),
        weights=jnp.array([0.5, 0.5]),
    )
    # Within-cluster 0.5 plus between-cluster 1.0.
    np.testing.assert_allclose(step.total_variance(cluster), [1.5], rtol=1e-6)


def test_running_update_needs_no_sample():
    config, x, state = _setup(cluster_update="running", cluster_momentum=0.5)
    new_state, metrics = step.train_step(state, x[:16])
    assert set(metrics) == METRIC_NAMES
    assert int(new_state.step) == 1
    assert not np.allclose(new_state.cluster.means, state.cluster.means)
    assert np.all(np.isfinite(np.asarray(new_state.cluster.variances)))


def test_sample_update_without_sample_fails():
    _, x, state = _setup()
    with pytest.raises(ValueError, match="cluster_sample") as error:
        step.train_step(state, x[:16])
    assert "running" in str(error.value)


def test_running_rate_matches_sample_window():
    config = get_config("default", cluster_update="running")
    expected = config.batch_size * (1 - config.cluster_momentum) / config.cluster_sample_size
    assert config.running_cluster_rate == expected
    assert get_config("paper", batch_size=1000).running_cluster_rate == 1.0
