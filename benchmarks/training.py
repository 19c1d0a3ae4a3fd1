"""DCAN training speed: compiled scan vs Python loop, seed scaling, work per step.

All inputs are uniform random matrices of the shape of each dataset, because
speed does not depend on the values. Each timing is the best of several
repeats. `scan_vs_loop` and `cluster_sample_share` time the programs they
compare alternately, so a burst of load from other processes hits both.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp

from benchmarks.common import (
    best_time,
    blocking_seconds,
    call_blocking,
    load_average,
    timed,
    timed_compile,
)
from dcan_jax import get_config, step, train
from dcan_jax.config import DCANConfig

# (config name, input width, what the input stands for) of the DCAN paper's Table 2.
TABLE2_CONFIGS = (
    ("paper", 196, "MNIST, 14x14 pixels"),
    ("paper_reuters10k", 2000, "Reuters-10k, 2,000 tf-idf features"),
    ("paper_cifar10", 2048, "CIFAR-10, ResNet-50 features"),
)

# Rows of every random training matrix; steps draw from it with replacement.
N_SAMPLES = 10_000

# Side of the square matrices whose product gives the reference matmul rate.
MATMUL_SIZE = 2048

_run_steps = jax.jit(train.run_steps, static_argnums=2)


@functools.partial(jax.jit, static_argnames=("batch_size", "cluster_sample_size"))
def draw_step_inputs(key, step_index, x, batch_size: int, cluster_sample_size: int):
    """Draw one step's minibatch and clustering sample with replacement, as the scan does."""
    batch_key, sample_key = jax.random.split(jax.random.fold_in(key, step_index))
    batch = x[jax.random.randint(batch_key, (batch_size,), 0, x.shape[0])]
    sample = x[jax.random.randint(sample_key, (cluster_sample_size,), 0, x.shape[0])]
    return batch, sample


def random_inputs(n_samples: int, n_features: int, seed: int = 0) -> jax.Array:
    """Return a uniform [0, 1) float32 matrix of shape `(n_samples, n_features)`."""
    return jax.random.uniform(jax.random.key(seed), (n_samples, n_features), jnp.float32)


def initial_state(config: DCANConfig, x: jax.Array, seed: int = 1) -> step.TrainState:
    """Return the state before the first DCAN step of one seed."""
    state, _ = jax.jit(functools.partial(train.init_run, config=config))(jax.random.key(seed), x)
    return jax.block_until_ready(state)


def run_python_loop(state, x, n_steps: int, read_metric: bool) -> step.TrainState:
    """Drive `n_steps` steps from Python, one jitted `train_step` call per step.

    With `read_metric`, each step's encoder loss is copied to the host, as a loop
    that logs every step does. The copy waits for the step to finish.
    """
    config = state.config
    data_key = jax.random.key(2)
    for index in range(n_steps):
        batch, sample = draw_step_inputs(
            data_key, index, x, config.batch_size, config.cluster_sample_size
        )
        state, metrics = step.train_step(state, batch, sample)
        if read_metric:
            float(metrics["encoder_loss"])
    return jax.block_until_ready(state)


def _cost_flops(compiled) -> float:
    costs = compiled.cost_analysis()
    # Older jaxlib versions return one dict per device program.
    if isinstance(costs, (list, tuple)):
        costs = costs[0]
    return float(costs.get("flops", float("nan")))


def scan_vs_loop(
    name: str, n_features: int, n_steps: int, repeats: int, config: DCANConfig | None = None
) -> dict[str, Any]:
    """Time `n_steps` DCAN steps compiled in `lax.scan` and driven by a Python loop.

    Args:
      name: config name for `get_config`, used when `config` is None.
      n_features: input width.
      n_steps: steps per timed run.
      repeats: timed runs of each driver; the best counts.
      config: a config to use instead of the named one.

    Returns:
      Compile seconds of the scan program and of `train_step`, seconds per step
      of the scan and of the two loops, and XLA's FLOP count of one step.
    """
    config = config or get_config(name)
    x = random_inputs(N_SAMPLES, n_features)
    state = initial_state(config, x)

    scan_program, scan_compile = timed_compile(_run_steps, state, x, n_steps)
    batch, sample = draw_step_inputs(
        jax.random.key(2), 0, x, config.batch_size, config.cluster_sample_size
    )
    step_program, step_compile = timed_compile(step.train_step, state, batch, sample)
    # Fill the jit caches the loop uses (train_step compiles again through its
    # dispatch path), so no timed run includes compilation.
    run_python_loop(state, x, 2, read_metric=True)
    call_blocking(scan_program, state, x)

    scan, loop, synced = [], [], []
    for _ in range(repeats):
        scan.append(blocking_seconds(scan_program, state, x))
        loop.append(timed(functools.partial(run_python_loop, state, x, n_steps, False))[1])
        synced.append(timed(functools.partial(run_python_loop, state, x, n_steps, True))[1])
    return {
        "config": name,
        "n_features": n_features,
        "n_steps": n_steps,
        "scan_compile_s": scan_compile,
        "step_compile_s": step_compile,
        "scan_step_s": min(scan) / n_steps,
        "loop_step_s": min(loop) / n_steps,
        "synced_loop_step_s": min(synced) / n_steps,
        "xla_flops_per_step": _cost_flops(step_program),
        "load_average": load_average(),
    }


def seed_scaling(
    name: str, n_features: int, seed_counts: Sequence[int], n_steps: int, repeats: int
) -> list[dict[str, Any]]:
    """Time the seed-vmapped step program of `train.fit` for each number of seeds.

    Returns:
      One record per seed count: compile seconds and seconds per step of all
      seeds together.
    """
    config = get_config(name)
    x = random_inputs(N_SAMPLES, n_features)
    phases = train.compiled_phases(config)
    records = []
    for n_seeds in seed_counts:
        keys = jnp.stack([jax.random.key(seed) for seed in range(n_seeds)])
        state, _ = jax.block_until_ready(phases["init"](keys, x))
        program, compile_seconds = timed_compile(phases["steps"], state, x, n_steps)
        call_blocking(program, state, x)
        seconds = best_time(functools.partial(call_blocking, program, state, x), repeats)
        records.append(
            {
                "n_seeds": n_seeds,
                "compile_s": compile_seconds,
                "step_s": seconds / n_steps,
                "load_average": load_average(),
            }
        )
    return records


def dense_flops(widths: Sequence[int], n_rows: int) -> int:
    """Return the multiply-add FLOPs (2 per product) of a forward pass of Dense layers."""
    return sum(2 * n_rows * fan_in * fan_out for fan_in, fan_out in itertools.pairwise(widths))


def matmul_flops_per_step(config: DCANConfig, n_features: int) -> dict[str, int]:
    """Estimate the matmul FLOPs of one DCAN step from the layer widths.

    A backward pass counts twice its forward pass (gradients of inputs and of
    weights). Element-wise work, the random draws and the optimizers are left
    out, so this is a lower bound of the step's floating-point work.
    """
    encoder = (n_features, *config.encoder_widths)
    discriminator_in = config.latent_size + (
        config.n_clusters if config.condition_discriminator else 0
    )
    discriminator = (discriminator_in, *config.discriminator_widths, 1)
    decoder = (config.latent_size, *config.resolved_decoder_widths, n_features)
    batch, sample = config.batch_size, config.cluster_sample_size
    # Distances, the M-step's sums of z and z**2, and the sample's assignment
    # for the cluster-size metrics: four (sample, latent) x (latent, K) products.
    clustering = 4 * 2 * sample * config.latent_size * config.n_clusters
    decoder_flops = dense_flops(decoder, batch) if config.reconstruction_weight > 0 else 0
    return {
        "cluster_sample_encoding": dense_flops(encoder, sample),
        "clustering_update": clustering,
        # Forward on positives and encoded points, then their backward passes.
        "discriminator_update": 3 * 2 * dense_flops(discriminator, batch),
        # The minibatch is encoded once for the assignment and once inside the
        # encoder objective, whose backward runs through discriminator and decoder.
        "encoder_update": dense_flops(encoder, batch)
        + 3 * (dense_flops(encoder, batch) + dense_flops(discriminator, batch) + decoder_flops),
    }


def matmul_rate(rows: int, inner: int, cols: int, repeats: int) -> float:
    """Return the GFLOP/s of a jitted float32 `(rows, inner) @ (inner, cols)` product.

    A product of under 2 GFLOP is repeated inside one program, so that dispatch
    does not dominate. Each repeat depends on the previous one, so XLA cannot
    hoist it out of the loop.
    """
    flops = 2 * rows * inner * cols
    n_products = max(1, int(2e9 // flops))
    left_key, right_key = jax.random.split(jax.random.key(3))
    left = jax.random.normal(left_key, (rows, inner), jnp.float32)
    right = jax.random.normal(right_key, (inner, cols), jnp.float32)

    def repeated_product(left, right):
        def body(_, carry):
            return carry + jnp.sum((left + carry * 1e-12) @ right) * 1e-12

        return jax.lax.fori_loop(0, n_products, body, jnp.zeros((), jnp.float32))

    product = jnp.dot if n_products == 1 else repeated_product
    program = jax.jit(product).lower(left, right).compile()
    call_blocking(program, left, right)
    seconds = best_time(functools.partial(call_blocking, program, left, right), repeats)
    return n_products * flops / seconds / 1e9


def step_matmul_rates(config: DCANConfig, n_features: int, repeats: int) -> list[dict[str, Any]]:
    """Measure the matmul rate at the shapes of the step's three largest encoder products."""
    first, second = config.encoder_widths[0], config.encoder_widths[1]
    shapes = [
        ("cluster sample, encoder layer 1", config.cluster_sample_size, n_features, first),
        ("cluster sample, encoder layer 2", config.cluster_sample_size, first, second),
        ("minibatch, encoder layer 1", config.batch_size, n_features, first),
    ]
    records = []
    for product, rows, inner, cols in shapes:
        gflops = matmul_rate(rows, inner, cols, repeats)
        records.append({"product": product, "shape": (rows, inner, cols), "gflops": gflops})
    return records


def cluster_sample_share(
    name: str, n_features: int, n_steps: int, repeats: int, config: DCANConfig | None = None
) -> dict[str, Any]:
    """Time steps with the configured clustering sample and with one of minibatch size.

    A clustering update fed by the encoded minibatch (running statistics) would
    encode no extra sample, so the step time at `cluster_sample_size =
    batch_size` estimates the step time of that design.
    """
    config = config or get_config(name)
    small = config.replace(cluster_sample_size=config.batch_size)
    x = random_inputs(N_SAMPLES, n_features)
    programs = {}
    for label, variant in (("full", config), ("batch", small)):
        state = initial_state(variant, x)
        program, _ = timed_compile(_run_steps, state, x, n_steps)
        call_blocking(program, state, x)
        programs[label] = (program, state)
    times = {label: [] for label in programs}
    for _ in range(repeats):
        for label, (program, state) in programs.items():
            times[label].append(blocking_seconds(program, state, x))
    full, batch = min(times["full"]) / n_steps, min(times["batch"]) / n_steps
    return {
        "config": name,
        "matmul_flops": sum(matmul_flops_per_step(config, n_features).values()),
        "batch_sample_matmul_flops": sum(matmul_flops_per_step(small, n_features).values()),
        "cluster_sample_size": config.cluster_sample_size,
        "batch_size": config.batch_size,
        "step_s": full,
        "batch_sample_step_s": batch,
        "sample_share": 1.0 - batch / full,
        "load_average": load_average(),
    }
