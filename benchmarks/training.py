"""DCAN training speed: compiled scan vs Python loop, seed scaling, work per step.

All inputs are uniform random matrices of the shape of each dataset, because
speed does not depend on the values. Each timing is the best of several
repeats. `scan_vs_loop` and `running_vs_sample` time the programs they
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
# One module-level jit, so sections that start the same config share its compilation.
_init_run = jax.jit(train.init_run, static_argnames="config")


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
    state, _ = _init_run(jax.random.key(seed), x, config=config)
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
        if config.cluster_update == "running":
            state, metrics = step.train_step(state, batch)
        else:
            state, metrics = step.train_step(state, batch, sample)
        if read_metric:
            float(metrics["encoder_loss"])
    return jax.block_until_ready(state)


def compiled_flops(compiled) -> float:
    """Return XLA's FLOP count of a compiled program, NaN where it reports none."""
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
    if config.cluster_update == "running":
        sample = None
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
        "xla_flops_per_step": compiled_flops(step_program),
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
    # Each seed's start depends on its key alone, so the first n seeds of one
    # initialisation equal an initialisation of n seeds, and init compiles once.
    keys = jnp.stack([jax.random.key(seed) for seed in range(max(seed_counts))])
    all_seeds, _ = jax.block_until_ready(phases["init"](keys, x))
    records = []
    for n_seeds in seed_counts:
        state = jax.tree.map(lambda leaf, n=n_seeds: leaf[:n], all_seeds)
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

    A backward pass computes weight gradients and input gradients, each at the
    cost of the forward pass, except where nothing uses them. No update needs
    the input gradient of its networks' first layer, and the encoder objective
    differentiates the discriminator only with respect to its input.
    Element-wise work, the random draws and the optimizers are left out, so
    this is a lower bound of the step's floating-point work.
    """
    encoder = (n_features, *config.encoder_widths)
    discriminator_in = config.latent_size + (
        config.n_clusters if config.condition_discriminator else 0
    )
    discriminator = (discriminator_in, *config.discriminator_widths, 1)
    decoder = (config.latent_size, *config.resolved_decoder_widths, n_features)
    batch, sample = config.batch_size, config.cluster_sample_size

    # One (rows, latent) x (latent, K) product for a k-means E-step or
    # assignment, two for a GMM's (squares and points against the precisions).
    assignment_products = 1 if config.cluster_method == "kmeans" else 2
    product_flops = 2 * config.latent_size * config.n_clusters
    # Every update has an E-step and two weighted sums (of z, and of z**2 or
    # of squared deviations). The minibatch is assigned under the updated
    # clustering to pick its positives. The cluster-size metrics assign the
    # update's points too, which for the running update are the minibatch again.
    if config.cluster_update == "running":
        clustering = batch * (2 * assignment_products + 2) * product_flops
        sample_encoding = 0
    else:
        sample_products = sample * (2 * assignment_products + 2)
        clustering = (sample_products + batch * assignment_products) * product_flops
        sample_encoding = dense_flops(encoder, sample)

    def first_layer(widths, rows):
        return dense_flops(widths[:2], rows)

    encoder_flops = dense_flops(encoder, batch)
    discriminator_flops = dense_flops(discriminator, batch)
    decoder_flops = dense_flops(decoder, batch) if config.reconstruction_weight > 0 else 0
    return {
        "cluster_sample_encoding": sample_encoding,
        "clustering_update": clustering,
        # Forward and backward on the positives and the encoded points.
        "discriminator_update": 2 * (3 * discriminator_flops - first_layer(discriminator, batch)),
        # The minibatch is encoded once, and its backward pass runs after the
        # encoder objective's forward and backward passes through the
        # discriminator (input gradients only) and the decoder.
        "encoder_update": 3 * encoder_flops
        - first_layer(encoder, batch)
        + 2 * discriminator_flops
        + 3 * decoder_flops,
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


def running_vs_sample(
    name: str, n_features: int, n_steps: int, repeats: int, config: DCANConfig | None = None
) -> dict[str, Any]:
    """Time the compiled scan with `cluster_update="sample"` and with "running".

    The two programs run alternately within each repeat, so load from other
    processes hits both. Both start from the same initial state.

    Returns:
      Seconds per step of each (best of `repeats`), their ratio sample /
      running, compile seconds of each scan and the matmul FLOP estimate of
      each step.
    """
    config = config or get_config(name)
    x = random_inputs(N_SAMPLES, n_features)
    state = initial_state(config, x)
    variants = {mode: config.replace(cluster_update=mode) for mode in ("sample", "running")}
    programs, compile_seconds = {}, {}
    for mode, variant in variants.items():
        variant_state = state.replace(config=variant)
        program, compile_seconds[mode] = timed_compile(_run_steps, variant_state, x, n_steps)
        call_blocking(program, variant_state, x)
        programs[mode] = (program, variant_state)
    times = {mode: [] for mode in programs}
    for _ in range(repeats):
        for mode, (program, variant_state) in programs.items():
            times[mode].append(blocking_seconds(program, variant_state, x))
    sample_step, running_step = (min(times[mode]) / n_steps for mode in ("sample", "running"))
    return {
        "config": name,
        "n_steps": n_steps,
        "cluster_sample_size": config.cluster_sample_size,
        "batch_size": config.batch_size,
        "running_cluster_rate": variants["running"].running_cluster_rate,
        "sample_compile_s": compile_seconds["sample"],
        "running_compile_s": compile_seconds["running"],
        "sample_step_s": sample_step,
        "running_step_s": running_step,
        "speedup": sample_step / running_step,
        "sample_matmul_flops": matmul_flops_per_step(variants["sample"], n_features),
        "running_matmul_flops": matmul_flops_per_step(variants["running"], n_features),
        "load_average": load_average(),
    }
