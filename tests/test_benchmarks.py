"""The benchmarks' matmul FLOP estimate of a DCAN step, against the layer widths and XLA."""

import jax
import pytest

from benchmarks import training
from dcan_jax import get_config, step


def test_dense_flops_counts_multiply_adds():
    # Two layers, 3 -> 4 -> 5, on 2 rows: 2 * 2 * (3 * 4 + 4 * 5).
    assert training.dense_flops((3, 4, 5), 2) == 128


def test_flops_sample_update():
    config = get_config("paper")
    flops = training.matmul_flops_per_step(config, 196)
    encoder = (196, *config.encoder_widths)
    discriminator = (config.latent_size, *config.discriminator_widths, 1)
    product = 2 * config.latent_size * config.n_clusters

    assert flops["cluster_sample_encoding"] == training.dense_flops(encoder, 600)
    # Four products per sample row, one per minibatch row (its assignment).
    assert flops["clustering_update"] == (4 * 600 + 16) * product
    # The minibatch is encoded once. Its backward pass skips the input
    # gradient of the first layer, and the encoder objective takes only input
    # gradients through the discriminator.
    first_layer = training.dense_flops(encoder[:2], 16)
    assert flops["encoder_update"] == (
        3 * training.dense_flops(encoder, 16)
        - first_layer
        + 2 * training.dense_flops(discriminator, 16)
    )


def test_flops_running_update():
    config = get_config("paper", cluster_update="running")
    flops = training.matmul_flops_per_step(config, 196)
    sample_flops = training.matmul_flops_per_step(config.replace(cluster_update="sample"), 196)
    product = 2 * config.latent_size * config.n_clusters

    assert flops["cluster_sample_encoding"] == 0
    # E-step, two weighted sums, and one assignment of the minibatch that
    # serves both its positives and the cluster-size metrics.
    assert flops["clustering_update"] == 4 * 16 * product
    assert flops["encoder_update"] == sample_flops["encoder_update"]
    assert flops["discriminator_update"] == sample_flops["discriminator_update"]


@pytest.mark.parametrize("cluster_update", ["sample", "running"])
def test_flops_estimate_close_to_xla(cluster_update):
    config = get_config("paper", cluster_update=cluster_update)
    x = training.random_inputs(700, 196)
    state = step.create_train_state(jax.random.key(1), config, x)
    sample = x[:600] if cluster_update == "sample" else None
    compiled = step.train_step.lower(state, x[:16], sample).compile()
    xla_flops = training.compiled_flops(compiled)
    estimate = sum(training.matmul_flops_per_step(config, 196).values())

    # The estimate leaves out element-wise work, which XLA counts.
    assert estimate <= xla_flops
    assert estimate >= 0.9 * xla_flops
