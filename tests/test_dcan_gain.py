"""DCAN raises clustering accuracy over its pretrained start on real digits.

A shortened `default` run: 6,000 MNIST training digits, a 196-256-256-10
autoencoder pretrained for 40 epochs, then 1,000 DCAN steps of batch 128,
eight seeds vmapped. DCAN raised the mean ACC from 0.555 to 0.570 (seven of
the eight seeds gained) and beat the reconstruction-only control by 0.026.
Compiled with `XLA_FLAGS=--xla_backend_optimization_level=0`, which rounds
differently, the two gains were 0.025 and 0.027.

The mean over fewer seeds depends on rounding. On the first four seeds the
gain was 0.017 with the default compiler settings but 0.002 with the other
rounding, and a one-seed program rounds differently from the vmapped one.
After 20 pretraining epochs the start is weaker, and the four-seed gain
differed between hosts (0.021 and 0.007), so the test pretrains for 40 epochs.
"""

from __future__ import annotations

import numpy as np
import pytest

from dcan_jax import get_config, metrics, train
from dcan_jax.data import load_image_dataset
from experiments.common import starting_state

SEEDS = tuple(range(8))
# Smallest accepted mean ACC gains over SEEDS: about half of the smaller measured gain.
MARGIN_OVER_START = 0.0075
MARGIN_OVER_CONTROL = 0.013


@pytest.fixture(scope="module")
def digits(real_data_dir):
    dataset = load_image_dataset("mnist", data_dir=real_data_dir).subset(6000)
    return dataset.x_train, dataset.y_train


@pytest.fixture(scope="module")
def config():
    return get_config(
        "default",
        encoder_widths=(256, 256, 10),
        pretrain_epochs=40,
        pretrain_batch_size=64,
        batch_size=128,
        cluster_sample_size=512,
        n_steps=1000,
        log_every=1000,
        init_cluster_sample_size=1000,
    )


@pytest.fixture(scope="module")
def dcan_run(digits, config):
    return train.fit(digits[0], config, SEEDS)


def _mean_accuracy(state, digits) -> float:
    x, y = digits
    return float(
        np.mean([metrics.cluster_accuracy(y, labels) for labels in train.predict(state, x)])
    )


def test_dcan_gains_over_start(dcan_run, digits):
    before = _mean_accuracy(starting_state(dcan_run, digits[0]), digits)
    after = _mean_accuracy(dcan_run.state, digits)
    assert after >= before + MARGIN_OVER_START


def test_dcan_beats_control(dcan_run, digits, config):
    # The control trains the same steps from the same autoencoder without the
    # adversarial term, so the difference comes from the DCAN loss.
    control = train.fit(
        digits[0],
        config.replace(adversarial_weight=0.0),
        SEEDS,
        pretrained=dcan_run.initial_state.autoencoder_params,
    )
    assert np.all(np.isfinite(control.history["reconstruction_loss"]))
    dcan = _mean_accuracy(dcan_run.state, digits)
    assert dcan >= _mean_accuracy(control.state, digits) + MARGIN_OVER_CONTROL
