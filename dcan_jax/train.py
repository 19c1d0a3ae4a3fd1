"""A whole DCAN run as compiled programs: pretraining, initial clustering, steps.

The pure functions here (`init_run`, `run_steps`, `refine_clustering`,
`predict_labels`) take one PRNG key or one state, so `jax.vmap` over keys trains
several seeds in one program. `fit` is the host-side driver: it compiles each
phase once, runs the steps in chunks of `config.log_every` inside `lax.scan`,
logs between chunks and stops on divergence.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import time
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from dcan_jax import cluster as clustering
from dcan_jax import losses, nets
from dcan_jax.config import DCANConfig
from dcan_jax.step import TrainState, init_clustering, init_train_state, train_step

logger = logging.getLogger(__name__)

# Independent key streams derived from a state's key.
_DATA_STREAM = 1
_NOISE_STREAM = 2


def _pretrain_epoch(carry, epoch_key, x, config, tx):
    params, opt_state = carry
    n_batches = x.shape[0] // config.pretrain_batch_size
    order = jax.random.permutation(epoch_key, x.shape[0])[: n_batches * config.pretrain_batch_size]
    batches = order.reshape(n_batches, config.pretrain_batch_size)
    # A separate stream, so that the shuffles do not depend on the noise setting.
    noise_keys = jax.random.split(jax.random.fold_in(epoch_key, _NOISE_STREAM), n_batches)

    def loss_fn(params, batch, noise_key):
        inputs = batch
        if config.pretrain_input_noise > 0:
            keep = jax.random.bernoulli(noise_key, 1.0 - config.pretrain_input_noise, batch.shape)
            inputs = jnp.where(keep, batch, 0.0)
        z = nets.apply_encoder(params["encoder"], inputs, config)
        return losses.reconstruction_loss(batch, nets.apply_decoder(params["decoder"], z, config))

    def batch_step(carry, batch_keys):
        params, opt_state = carry
        indices, noise_key = batch_keys
        loss, grads = jax.value_and_grad(loss_fn)(params, x[indices], noise_key)
        updates, opt_state = tx.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), loss

    carry, batch_losses = jax.lax.scan(batch_step, (params, opt_state), (batches, noise_keys))
    return carry, jnp.mean(batch_losses)


def pretrain_optimizer(config: DCANConfig, n_samples: int) -> optax.GradientTransformation:
    """Return pretraining's Adam, with the configured schedule over all its steps."""
    if config.pretrain_schedule == "cosine":
        n_steps = config.pretrain_epochs * (n_samples // config.pretrain_batch_size)
        return optax.adam(optax.cosine_decay_schedule(config.pretrain_learning_rate, n_steps))
    return optax.adam(config.pretrain_learning_rate)


def pretrain_autoencoder(
    state: TrainState, x: jax.Array, key: jax.Array
) -> tuple[TrainState, jax.Array]:
    """Train encoder and decoder on reconstruction alone, with Adam.

    Args:
      state: a state with a decoder (`config.uses_decoder`).
      x: training inputs, shape `(n_samples, n_features)`.
      key: PRNG key for the epoch shuffles.

    Returns:
      The state with pretrained encoder and decoder, and the mean reconstruction
      loss of each epoch, shape `(pretrain_epochs,)`.
    """
    config = state.config
    if x.shape[0] < config.pretrain_batch_size:
        raise ValueError(
            f"n_samples={x.shape[0]} should be >= pretrain_batch_size="
            f"{config.pretrain_batch_size}; lower pretrain_batch_size."
        )
    x = jnp.asarray(x)
    tx = pretrain_optimizer(config, x.shape[0])
    params = state.autoencoder_params
    epoch = functools.partial(_pretrain_epoch, x=x, config=config, tx=tx)
    epoch_keys = jax.random.split(key, config.pretrain_epochs)
    (params, _), epoch_losses = jax.lax.scan(epoch, (params, tx.init(params)), epoch_keys)
    return state.replace(encoder_params=params["encoder"], decoder_params=params["decoder"]), (
        epoch_losses
    )


def init_run(
    key: jax.Array, x: jax.Array, config: DCANConfig, pretrained: dict | None = None
) -> tuple[TrainState, jax.Array]:
    """Initialise networks, pretrain if configured, and cluster the latent space.

    Args:
      key: PRNG key of this seed.
      x: training inputs, shape `(n_samples, n_features)`.
      config: run settings (static).
      pretrained: `{"encoder": ..., "decoder": ...}` parameters to start from
        instead of pretraining, e.g. a pretrained autoencoder shared by several
        configs that differ only in their DCAN settings.

    Returns:
      The state before the first DCAN step, and the pretraining losses per epoch
      (shape `(pretrain_epochs,)`, empty without pretraining).
    """
    params_key, pretrain_key, sample_key, cluster_key = jax.random.split(key, 4)
    state = init_train_state(params_key, config, x.shape[1])
    pretrain_losses = jnp.zeros((0,))
    if pretrained is not None:
        state = state.replace(
            encoder_params=pretrained["encoder"], decoder_params=pretrained["decoder"]
        )
    elif config.pretrain_epochs > 0:
        state, pretrain_losses = pretrain_autoencoder(state, x, pretrain_key)
    sample_size = min(config.init_cluster_sample_size, x.shape[0])
    sample = x[jax.random.permutation(sample_key, x.shape[0])[:sample_size]]
    return init_clustering(state, sample, cluster_key), pretrain_losses


def _scan_body(state: TrainState, _, x: jax.Array):
    config = state.config
    data_key = jax.random.fold_in(jax.random.fold_in(state.key, _DATA_STREAM), state.step)
    batch_key, sample_key = jax.random.split(data_key)
    # Sampling with replacement keeps every step's shapes static and costs no sort.
    batch = x[jax.random.randint(batch_key, (config.batch_size,), 0, x.shape[0])]
    if config.cluster_update == "running":
        return train_step(state, batch)
    sample = x[jax.random.randint(sample_key, (config.cluster_sample_size,), 0, x.shape[0])]
    return train_step(state, batch, sample)


def run_steps(
    state: TrainState, x: jax.Array, n_steps: int
) -> tuple[TrainState, dict[str, jax.Array]]:
    """Run `n_steps` DCAN steps in one `lax.scan`; metrics are stacked, `(n_steps,)`."""
    return jax.lax.scan(functools.partial(_scan_body, x=x), state, None, length=n_steps)


def encode(state: TrainState, x: jax.Array) -> jax.Array:
    """Encode `x` of shape `(n_samples, n_features)` to `(n_samples, latent_size)`."""
    return nets.apply_encoder(state.encoder_params, x, state.config)


def refine_clustering(state: TrainState, x: jax.Array) -> TrainState:
    """Run `config.final_cluster_iters` full-data E-M iterations, warm-started."""
    config = state.config
    if config.final_cluster_iters == 0:
        return state
    cluster = clustering.refine(
        state.cluster,
        encode(state, x),
        config.cluster_method,
        config.final_cluster_iters,
        config.covariance_reg,
    )
    return state.replace(cluster=cluster)


def predict_labels(state: TrainState, x: jax.Array) -> jax.Array:
    """Assign each row of `x` to a cluster with the trained encoder and clustering."""
    return clustering.predict(state.cluster, encode(state, x), state.config.cluster_method)


class TrainingDivergedError(RuntimeError):
    """Raised when a run produces non-finite values or collapses to one cluster.

    Attributes:
      last_good_state: the state at the end of the last healthy chunk.
      step: the step count at which divergence was detected.
    """

    def __init__(self, message: str, last_good_state: TrainState, step: int):
        super().__init__(message)
        self.last_good_state = last_good_state
        self.step = step


@dataclasses.dataclass
class FitResult:
    """Outcome of `fit` over several seeds; array leaves have a leading seed axis."""

    state: TrainState
    initial_state: TrainState
    history: dict[str, np.ndarray]  # each (n_seeds, n_steps)
    pretrain_losses: np.ndarray  # (n_seeds, pretrain_epochs)
    seeds: tuple[int, ...]
    compile_seconds: float
    train_seconds: float
    n_devices: int = 1  # devices the seed axis was sharded over


def _run_steps_over_seeds(state: TrainState, x: jax.Array, n_steps: int):
    return jax.vmap(functools.partial(run_steps, n_steps=n_steps), in_axes=(0, None))(state, x)


@functools.lru_cache(maxsize=16)
def compiled_phases(config: DCANConfig) -> dict[str, Callable]:
    """Return the jitted, seed-vmapped phases of a run for `config`."""
    seeds = functools.partial(jax.vmap, in_axes=(0, None))
    return {
        "init": jax.jit(seeds(functools.partial(init_run, config=config))),
        "init_pretrained": jax.jit(
            jax.vmap(
                lambda key, x, pretrained: init_run(key, x, config, pretrained),
                in_axes=(0, None, 0),
            )
        ),
        "steps": jax.jit(_run_steps_over_seeds, static_argnums=2),
        "refine": jax.jit(seeds(refine_clustering)),
        "predict": jax.jit(seeds(predict_labels)),
    }


def _check_health(history: dict[str, np.ndarray], state, last_good, step: int) -> None:
    finite = np.all([np.all(np.isfinite(values), axis=-1) for values in history.values()], axis=0)
    if not finite.all():
        bad = np.flatnonzero(~finite).tolist()
        raise TrainingDivergedError(
            f"Training diverged before step {step}: non-finite losses for seed indices {bad}. "
            "Lower the learning rates or raise covariance_reg.",
            last_good,
            step,
        )
    collapsed = history["max_cluster_fraction"][:, -1] >= 1.0
    if collapsed.any():
        raise TrainingDivergedError(
            f"Training collapsed at step {step}: all sampled points fell in one cluster "
            f"for seed indices {np.flatnonzero(collapsed).tolist()}. Lower the learning "
            "rate, add a reconstruction term or pretrain the autoencoder.",
            last_good,
            step,
        )


def validate_inputs(x: np.ndarray, config: DCANConfig) -> None:
    """Check a training matrix against `config`; raise `ValueError` naming the fix."""
    if x.ndim != 2:
        raise ValueError(
            f"x should have shape (n_samples, n_features), got shape {x.shape}; "
            "flatten each sample to one row."
        )
    if x.shape[0] < config.n_clusters:
        raise ValueError(
            f"n_samples={x.shape[0]} should be >= n_clusters={config.n_clusters}; "
            "lower n_clusters or pass more samples."
        )
    if not np.all(np.isfinite(x)):
        bad = int(np.sum(~np.isfinite(x)))
        raise ValueError(f"x contains {bad} NaN or infinite values; impute or drop them first.")


def _check_resume_state(state: TrainState, config: DCANConfig, n_seeds: int) -> None:
    if state.config != config:
        changed = sorted(
            name
            for name, value in config.to_dict().items()
            if state.config.to_dict().get(name) != value
        )
        raise ValueError(
            f"The resume state was trained with a different config (fields {changed} "
            "differ); resume with the config it was saved with, or start a new run."
        )
    n_saved = int(np.asarray(state.step).reshape(-1).shape[0])
    if n_saved != n_seeds:
        raise ValueError(
            f"The resume state contains {n_saved} seeds but {n_seeds} were requested; pass "
            "the seeds it was saved with."
        )


def seed_mesh(n_seeds: int, devices: Sequence[jax.Device] | None = None) -> Mesh:
    """Return a 1-D mesh named "seeds" for sharding `n_seeds` runs.

    It spans the largest number of `devices` (default: this process's devices)
    that divides `n_seeds`, so every device trains the same number of seeds:
    10 seeds on 8 devices use 5 of them, and a prime count of seeds above the
    device count uses one.
    """
    devices = list(jax.local_devices() if devices is None else devices)
    if not devices:
        raise ValueError("devices is empty; pass at least one device or None for all.")
    n_used = max(d for d in range(1, len(devices) + 1) if n_seeds % d == 0)
    return Mesh(np.array(devices[:n_used]), ("seeds",))


def _shard_seeds(tree, mesh: Mesh):
    """Place every array leaf of `tree` split along its leading (seed) axis."""
    sharding = NamedSharding(mesh, PartitionSpec("seeds"))
    return jax.tree.map(lambda leaf: jax.device_put(leaf, sharding), tree)


def fit(
    x: np.ndarray,
    config: DCANConfig,
    seeds: Sequence[int] = (0,),
    log_fn: Callable[[int, dict[str, float]], None] | None = None,
    resume_from: TrainState | None = None,
    on_chunk: Callable[[TrainState, dict[str, np.ndarray]], None] | None = None,
    pretrained: dict | None = None,
    devices: Sequence[jax.Device] | None = None,
) -> FitResult:
    """Train one DCAN model per seed, all seeds in one vmapped program.

    Args:
      x: training inputs, shape `(n_samples, n_features)`, float.
      config: run settings.
      seeds: integer seeds; each gives an independent run.
      log_fn: called after each chunk with the step count and seed-averaged
        metrics of the chunk's last step.
      resume_from: a seed-stacked state saved by an earlier run of the same
        config, seeds and data. Training continues from its step count. It
        reaches the state an uninterrupted run reaches, because every step's
        randomness is derived from the state's key and step.
      on_chunk: called after each healthy chunk with the seed-stacked state and
        the chunk's metrics, e.g. to write a checkpoint.
      pretrained: seed-stacked `{"encoder": ..., "decoder": ...}` parameters
        (leading axis `len(seeds)`) used instead of pretraining.
      devices: devices to shard the seeds over, default all of this process's
        devices; `seed_mesh` sets how many are used. Each seed's result does
        not depend on the devices.

    Returns:
      A `FitResult`.

    Raises:
      TrainingDivergedError: on non-finite losses or a collapse to one cluster,
        carrying the last healthy state.
    """
    validate_inputs(np.asarray(x), config)
    if len(seeds) == 0:
        raise ValueError("seeds is empty; pass at least one seed.")
    phases = compiled_phases(config)
    mesh = seed_mesh(len(seeds), devices)
    x = jax.device_put(np.asarray(x, np.float32), NamedSharding(mesh, PartitionSpec()))
    keys = _shard_seeds(jnp.stack([jax.random.key(int(seed)) for seed in seeds]), mesh)
    if pretrained is not None:
        pretrained = _shard_seeds(pretrained, mesh)
    if resume_from is not None:
        resume_from = _shard_seeds(resume_from, mesh)

    start = time.perf_counter()
    if resume_from is None and pretrained is not None:
        state, pretrain_losses = jax.block_until_ready(
            phases["init_pretrained"](keys, x, pretrained)
        )
    elif resume_from is None:
        state, pretrain_losses = jax.block_until_ready(phases["init"](keys, x))
    else:
        _check_resume_state(resume_from, config, len(seeds))
        state, pretrain_losses = resume_from, np.zeros((len(seeds), 0))
    initial_state = state
    first_call_seconds = time.perf_counter() - start

    chunks: list[dict[str, np.ndarray]] = []
    compiled_by_length: dict[int, Callable] = {}
    compile_seconds = 0.0
    train_start = time.perf_counter()
    done = int(np.asarray(state.step).reshape(-1)[0])
    while done < config.n_steps:
        n = min(config.log_every, config.n_steps - done)
        if n not in compiled_by_length:
            compile_start = time.perf_counter()
            compiled_by_length[n] = phases["steps"].lower(state, x, n).compile()
            compile_seconds += time.perf_counter() - compile_start
        last_good = state
        state, metrics = compiled_by_length[n](state, x)
        chunk = {name: np.asarray(values) for name, values in metrics.items()}
        done += n
        _check_health(chunk, state, last_good, done)
        chunks.append(chunk)
        if on_chunk is not None:
            on_chunk(state, chunk)
        if log_fn is not None:
            log_fn(done, {name: float(np.mean(v[:, -1])) for name, v in chunk.items()})
    if config.final_cluster_iters > 0:
        state = phases["refine"](state, x)
    state = jax.block_until_ready(state)
    train_seconds = time.perf_counter() - train_start - compile_seconds
    history = (
        {name: np.concatenate([c[name] for c in chunks], axis=1) for name in chunks[0]}
        if chunks
        else {}
    )
    return FitResult(
        state=state,
        initial_state=initial_state,
        history=history,
        pretrain_losses=np.asarray(pretrain_losses),
        seeds=tuple(int(s) for s in seeds),
        compile_seconds=compile_seconds,
        train_seconds=train_seconds + first_call_seconds,
        n_devices=mesh.devices.size,
    )


def predict(state: TrainState, x: np.ndarray) -> np.ndarray:
    """Predict cluster labels of `x` for every seed; shape `(n_seeds, n_samples)`."""
    return np.asarray(compiled_phases(state.config)["predict"](state, jnp.asarray(x, jnp.float32)))
