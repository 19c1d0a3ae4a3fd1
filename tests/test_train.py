"""Whole runs: vmapped seeds, resuming, divergence, and DCAN on real digits."""

import jax
import numpy as np
import pytest

from dcan_jax import get_config, losses, metrics, nets, step, train


def _leaves(tree):
    leaves = []
    for leaf in jax.tree.leaves(tree):
        if jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
            leaf = jax.random.key_data(leaf)
        leaves.append(np.asarray(leaf))
    return leaves


def test_vmapped_seeds_match_single_runs(embedded_digits):
    x = embedded_digits[0][:1000]
    config = get_config("paper", n_steps=20, log_every=10, init_cluster_sample_size=500)
    both = train.fit(x, config, seeds=(3, 4))
    for index, seed in enumerate((3, 4)):
        alone = train.fit(x, config, seeds=(seed,))
        both_leaves = _leaves(both.state.encoder_params)
        alone_leaves = _leaves(alone.state.encoder_params)
        for a, b in zip(both_leaves, alone_leaves, strict=True):
            np.testing.assert_allclose(a[index], b[0], rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(
            both.state.cluster.means[index], alone.state.cluster.means[0], rtol=1e-4, atol=1e-4
        )
        for name, values in both.history.items():
            np.testing.assert_allclose(values[index], alone.history[name][0], rtol=1e-3, atol=1e-4)


def test_seeds_give_different_runs(embedded_digits):
    x = embedded_digits[0][:600]
    config = get_config("paper", n_steps=5, log_every=5, init_cluster_sample_size=300)
    result = train.fit(x, config, seeds=(0, 1))
    kernel = result.state.encoder_params["Dense_0"]["kernel"]
    assert not np.allclose(kernel[0], kernel[1])


def test_resume_matches_uninterrupted_run(embedded_digits):
    x = embedded_digits[0][:800]
    config = get_config("paper", n_steps=30, log_every=10, init_cluster_sample_size=400)
    full = train.fit(x, config, seeds=(0,))
    saved = {}

    def keep_step_10(state, _):
        if int(state.step[0]) == 10:
            saved["state"] = state

    train.fit(x, config.replace(n_steps=10), seeds=(0,), on_chunk=keep_step_10)
    resumed = train.fit(x, config, seeds=(0,), resume_from=saved["state"].replace(config=config))
    assert int(resumed.state.step[0]) == 30
    for a, b in zip(_leaves(full.state), _leaves(resumed.state), strict=True):
        np.testing.assert_array_equal(a, b)


def test_resume_with_other_config_raises(embedded_digits):
    x = embedded_digits[0][:400]
    config = get_config("paper", n_steps=5, log_every=5, init_cluster_sample_size=200)
    result = train.fit(x, config, seeds=(0,))
    with pytest.raises(ValueError, match=r"different config \(fields \['learning_rate'\]"):
        train.fit(x, config.replace(learning_rate=1e-4), seeds=(0,), resume_from=result.state)
    with pytest.raises(ValueError, match="contains 1 seeds but 2 were requested"):
        train.fit(x, config, seeds=(0, 1), resume_from=result.state)


def test_divergence_stops_with_last_good_state(embedded_digits):
    # Raw 0..255 pixels, linear layers and a huge learning rate overflow float32.
    x = embedded_digits[0][:400] * 255.0
    config = get_config(
        "paper",
        n_steps=40,
        log_every=10,
        learning_rate=10.0,
        activation="linear",
        discriminator_activation="linear",
        init_cluster_sample_size=200,
    )
    with pytest.raises(train.TrainingDivergedError, match="Training (diverged|collapsed)") as info:
        train.fit(x, config, seeds=(0,))
    last_good = info.value.last_good_state
    assert all(np.all(np.isfinite(leaf)) for leaf in _leaves(last_good.encoder_params))
    assert int(last_good.step[0]) < info.value.step
    assert "Lower the learning rates" in str(info.value)


@pytest.mark.parametrize(
    ("x", "message"),
    [
        (np.zeros((5, 4)), "n_samples=5 should be >= n_clusters=10"),
        (np.zeros(40), r"should have shape \(n_samples, n_features\)"),
        (np.full((20, 3), np.nan), "contains 60 NaN or infinite values"),
    ],
)
def test_bad_inputs_raise(x, message):
    with pytest.raises(ValueError, match=message):
        train.fit(x, get_config("paper", n_steps=1), seeds=(0,))


def test_empty_seed_list_raises(embedded_digits):
    with pytest.raises(ValueError, match="seeds is empty"):
        train.fit(embedded_digits[0][:100], get_config("paper", n_steps=1), seeds=())


def test_paper_run_on_real_digits_end_to_end(embedded_digits):
    x, y = embedded_digits
    config = get_config("paper", n_steps=100, log_every=50)
    logged = []
    result = train.fit(x, config, seeds=(0,), log_fn=lambda s, m: logged.append(s))
    assert logged == [50, 100]
    assert result.history["discriminator_loss"].shape == (1, 100)
    labels = train.predict(result.state, x)
    assert labels.shape == (1, 5000)
    scores = metrics.evaluate(y, labels[0])
    # A 10-cluster partition of real digits is far better than chance (0.1).
    assert scores["acc"] > 0.25
    assert 0.0 < scores["nmi"] <= 1.0


def test_pretrained_parameters_replace_pretraining(embedded_digits):
    x = embedded_digits[0][:600]
    config = get_config(
        "default",
        encoder_widths=(32, 5),
        pretrain_epochs=1,
        pretrain_batch_size=100,
        n_steps=2,
        log_every=2,
        batch_size=32,
        cluster_sample_size=64,
        init_cluster_sample_size=300,
    )
    first = train.fit(x, config, seeds=(0, 1))
    pretrained = first.initial_state.autoencoder_params
    second = train.fit(x, config, seeds=(0, 1), pretrained=pretrained)
    for a, b in zip(
        _leaves(first.initial_state.encoder_params),
        _leaves(second.initial_state.encoder_params),
        strict=True,
    ):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(
        first.state.cluster.means, second.state.cluster.means, rtol=1e-5, atol=1e-5
    )


def test_seed_mesh_rejects_empty_devices():
    with pytest.raises(ValueError, match="devices is empty"):
        train.seed_mesh(4, devices=[])


def test_seed_mesh_on_one_device():
    mesh = train.seed_mesh(7)
    assert mesh.devices.size == 1
    assert mesh.axis_names == ("seeds",)


def _pretrain(x, **changes):
    config = get_config(
        "default", encoder_widths=(64, 8), pretrain_epochs=8, pretrain_batch_size=100, **changes
    )
    state = step.init_train_state(jax.random.key(0), config, x.shape[1])
    return train.pretrain_autoencoder(state, x, jax.random.key(1))


def _masked_reconstruction_error(state, x, noise):
    keep = jax.random.bernoulli(jax.random.key(2), 1.0 - noise, x.shape)
    z = nets.apply_encoder(state.encoder_params, np.where(keep, x, 0.0), state.config)
    return float(
        losses.reconstruction_loss(x, nets.apply_decoder(state.decoder_params, z, state.config))
    )


def test_denoising_pretraining_restores_masked_digits(embedded_digits):
    x = embedded_digits[0][:2000]
    plain, plain_losses = _pretrain(x)
    denoising, denoising_losses = _pretrain(x, pretrain_input_noise=0.3)
    assert np.all(np.isfinite(denoising_losses))
    # Reconstructing from masked inputs is harder, so its training loss is higher,
    # and the plain autoencoder reconstructs clean digits better...
    assert denoising_losses[-1] > plain_losses[-1]
    assert _masked_reconstruction_error(plain, x, 0.0) < _masked_reconstruction_error(
        denoising, x, 0.0
    )
    # ...while the denoising one restores masked digits better (0.84 of the error
    # after 8 epochs).
    assert _masked_reconstruction_error(denoising, x, 0.3) < 0.9 * _masked_reconstruction_error(
        plain, x, 0.3
    )


def test_cosine_pretraining_schedule_decays_to_zero():
    config = get_config("default", pretrain_epochs=2, pretrain_schedule="cosine")
    tx = train.pretrain_optimizer(config, n_samples=config.pretrain_batch_size * 5)
    params = {"w": np.ones(3, np.float32)}
    opt_state = tx.init(params)
    sizes = []
    for _ in range(10):
        updates, opt_state = tx.update({"w": np.ones(3, np.float32)}, opt_state, params)
        sizes.append(float(np.abs(updates["w"]).max()))
    # 2 epochs of 5 batches: Adam's first step moves by the full rate, the last by ~0.
    np.testing.assert_allclose(sizes[0], config.pretrain_learning_rate, rtol=1e-3)
    assert sizes[-1] < 0.05 * sizes[0]
    assert all(a >= b for a, b in zip(sizes, sizes[1:], strict=False))
