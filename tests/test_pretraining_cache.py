"""The per-seed cache of pretrained autoencoders used by the experiments."""

import hashlib
import json
import logging

import jax
import numpy as np

from dcan_jax import get_config, train
from dcan_jax.config import AUTOENCODER_FIELDS
from dcan_jax.data import Dataset
from experiments import pretraining

CONFIG = get_config(
    "default",
    encoder_widths=(16, 4),
    pretrain_epochs=1,
    pretrain_batch_size=100,
    n_steps=1,
    log_every=1,
    batch_size=32,
    cluster_sample_size=64,
    init_cluster_sample_size=200,
)


def _dataset(embedded_digits):
    x, y = embedded_digits
    return Dataset("digits-subset", x[:300], y[:300])


def test_cache_matches_fit_and_is_reused(embedded_digits, tmp_path):
    dataset = _dataset(embedded_digits)
    first = pretraining.pretrained_autoencoders(dataset, CONFIG, (0, 1), tmp_path)
    files = sorted(tmp_path.glob("autoencoder-*.msgpack"))
    assert len(files) == 2
    mtimes = [f.stat().st_mtime_ns for f in files]

    again = pretraining.pretrained_autoencoders(dataset, CONFIG, (0, 1), tmp_path)
    assert [f.stat().st_mtime_ns for f in files] == mtimes
    for a, b in zip(jax.tree.leaves(first), jax.tree.leaves(again), strict=True):
        np.testing.assert_array_equal(a, b)

    # The cached autoencoder is the one fit pretrains for that seed.
    reference = train.fit(dataset.x_train, CONFIG, seeds=(0, 1))
    expected = reference.initial_state.autoencoder_params
    for a, b in zip(jax.tree.leaves(first), jax.tree.leaves(expected), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_corrupt_cache_file_is_rebuilt(embedded_digits, tmp_path, caplog):
    dataset = _dataset(embedded_digits)
    first = pretraining.pretrained_autoencoders(dataset, CONFIG, (3,), tmp_path)
    (path,) = tmp_path.glob("autoencoder-*.msgpack")
    path.write_bytes(path.read_bytes()[:50])
    with caplog.at_level(logging.WARNING, logger="experiments.pretraining"):
        rebuilt = pretraining.pretrained_autoencoders(dataset, CONFIG, (3,), tmp_path)
    assert "unreadable cache file" in caplog.text
    for a, b in zip(jax.tree.leaves(first), jax.tree.leaves(rebuilt), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_cache_key_changes_with_settings(embedded_digits, tmp_path):
    dataset = _dataset(embedded_digits)
    base = pretraining.cache_path(tmp_path, dataset, CONFIG, 0)
    assert pretraining.cache_path(tmp_path, dataset, CONFIG, 1) != base
    wider = CONFIG.replace(encoder_widths=(32, 4))
    assert pretraining.cache_path(tmp_path, dataset, wider, 0) != base
    for changes in ({"pretrain_input_noise": 0.2}, {"pretrain_schedule": "cosine"}):
        assert pretraining.cache_path(tmp_path, dataset, CONFIG.replace(**changes), 0) != base
    # DCAN-phase settings share the pretrained autoencoder.
    other_phase = CONFIG.replace(positive_scale=1.0, n_steps=50)
    assert pretraining.cache_path(tmp_path, dataset, other_phase, 0) == base


def test_plain_autoencoder_key_is_unchanged(embedded_digits, tmp_path):
    # Autoencoders cached before the denoising and schedule settings existed keep
    # their file names: at their defaults, those settings stay out of the key.
    dataset = _dataset(embedded_digits)
    fields = {name: getattr(CONFIG, name) for name in AUTOENCODER_FIELDS}
    del fields["pretrain_input_noise"], fields["pretrain_schedule"]
    text = json.dumps(
        {"data": dataset.name, "shape": dataset.x_train.shape, "seed": 0, **fields},
        sort_keys=True,
        default=str,
    )
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    assert pretraining.cache_path(tmp_path, dataset, CONFIG, 0).name == (
        f"autoencoder-digits-subset-seed0-{digest}.msgpack"
    )
