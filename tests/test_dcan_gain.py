"""DCAN raises clustering accuracy over its pretrained start on real digits.

A shortened `default` run: 6,000 MNIST training digits, a 196-256-256-10
autoencoder pretrained for 40 epochs, then 1,000 DCAN steps of batch 128,
seeds 0 to 3 vmapped. It measured (before, after, reconstruction-only control)
ACC of (0.593, 0.618, 0.568), (0.558, 0.560, 0.540), (0.531, 0.562, 0.553)
and (0.524, 0.533, 0.536). DCAN gained 0.017 over the start on average (0.002
to 0.031 per seed) and beat the control by 0.019 on average. After 20
pretraining epochs the start is weaker (0.524), and the mean gain was 0.021
on one host but 0.007 on another, so the test pretrains for 40 epochs.

Single seeds are not a stable test: a one-seed program rounds differently
from the vmapped one, and that alone moved seed 0 from a gain of 0.056 to a
loss of 0.009. So the test asserts the mean over the four fixed seeds.
"""

from __future__ import annotations

import numpy as np
import pytest

from dcan_jax import get_config, metrics, train
from dcan_jax.data import load_image_dataset
from experiments.common import starting_state

SEEDS = (0, 1, 2, 3)
# Smallest accepted mean ACC gains over SEEDS, about half of the measured ones.
MARGIN_OVER_START = 0.01
MARGIN_OVER_CONTROL = 0.01


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
