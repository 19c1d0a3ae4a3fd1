"""Run many seeds and hyperparameter values of a method as one sharded program.

`run_method` lays the runs, one per (seed, grid point), along a run axis. The
seeds and grid values are placed across all devices with a `NamedSharding` over
a 1-D `Mesh`, the training matrix is replicated, and the method's pure run
function runs under `jax.jit(jax.vmap(...))`, making each run's key with
`jax.random.key(seed)`. Grid values are traced arrays, not config fields, so a
grid of equal-shaped runs compiles once. With several processes
(`jax.distributed.initialize`), every process makes the same call and gets the
whole result. `run_dcan` gives DCAN itself, trained by `train.fit`, the same
`RunResult`.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import time
from collections.abc import Callable, Mapping, Sequence

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from dcan_jax import train
from dcan_jax.baselines import abc, autoencoder, dec, kl, raw
from dcan_jax.baselines.common import MethodOutput
from dcan_jax.baselines.config import BaselineConfig
from dcan_jax.config import AUTOENCODER_FIELDS, DCANConfig

RUN_AXIS = "runs"
MAX_SEED = np.iinfo(np.int32).max


@dataclasses.dataclass(frozen=True)
class Method:
    """A baseline: its pure run functions and its traced hyperparameters."""

    name: str
    run: Callable[..., MethodOutput]  # run(key, x, hyperparameters, config)
    default_hyperparameters: Callable[[BaselineConfig], dict[str, float]]
    # run_from_start(start, key, x, hyperparameters, config); None without an autoencoder
    run_from_start: Callable[..., MethodOutput] | None = None


def _no_hyperparameters(config: BaselineConfig) -> dict[str, float]:
    del config
    return {}


def _run_with_pretraining(key, x, hyperparameters, config, *, run_from_start):
    start = autoencoder.pretrained_start(key, x, config)
    return run_from_start(start, key, x, hyperparameters, config)


def _keyed(run: Callable, has_start: bool) -> Callable:
    """Wrap `run` to take an int32 seed where it takes a key."""
    if has_start:
        return lambda start, seed, *args: run(start, jax.random.key(seed), *args)
    return lambda seed, *args: run(jax.random.key(seed), *args)


def _deep_method(name, run_from_start, default_hyperparameters) -> Method:
    run = functools.partial(_run_with_pretraining, run_from_start=run_from_start)
    return Method(name, run, default_hyperparameters, run_from_start)


METHODS: dict[str, Method] = {
    method.name: method
    for method in (
        Method("kmeans", raw.run_kmeans, _no_hyperparameters),
        Method("gmm", raw.run_gmm, _no_hyperparameters),
        _deep_method("ae-kmeans", autoencoder.run_ae_kmeans, _no_hyperparameters),
        _deep_method("abc", abc.run_abc, abc.default_hyperparameters),
        _deep_method("dc-gmm", kl.run_dc_gmm, kl.default_hyperparameters),
        _deep_method("dec", dec.run_dec, dec.default_dec_hyperparameters),
        _deep_method("idec", dec.run_idec, dec.default_idec_hyperparameters),
    )
}


@dataclasses.dataclass
class Pretrained:
    """Pretrained autoencoders and their k-means fits, one per seed, on device.

    Deep baselines given a `Pretrained` start from it instead of pretraining
    again; for the same seed both paths start from the same autoencoder.
    """

    seeds: tuple[int, ...]
    config: BaselineConfig
    start: autoencoder.PretrainedStart  # every leaf has a leading axis of len(seeds)
    compile_seconds: float
    run_seconds: float


@dataclasses.dataclass
class RunResult:
    """Outcome of every run of one method on one dataset.

    Runs are ordered seed-major: all grid points of the first seed, then the
    next seed. Array fields have a leading run axis of length `n_runs`.
    """

    method: str
    seeds: np.ndarray  # (n_runs,) int64, the seed of each run
    hyperparameters: dict[str, np.ndarray]  # name -> (n_runs,) float32
    labels: np.ndarray  # (n_runs, n_samples) int32
    history: dict[str, np.ndarray]  # name -> (n_runs, n_records) float32
    compile_seconds: float  # 0.0 when the program was compiled by an earlier call
    run_seconds: float
    n_devices: int


def make_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
    """Return a 1-D mesh named `"runs"` over `devices` (default: all devices)."""
    devices = list(jax.devices() if devices is None else devices)
    if not devices:
        raise ValueError("devices is empty; pass at least one device or None for all.")
    return Mesh(np.array(devices), (RUN_AXIS,))


def _check_inputs(x: np.ndarray, config: BaselineConfig, seeds: Sequence[int]) -> None:
    if len(seeds) == 0:
        raise ValueError("seeds is empty; pass at least one seed.")
    for seed in seeds:
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
            raise TypeError(f"seeds should be ints, got {seed!r} of type {type(seed).__name__}.")
        # Seeds travel to the devices as int32 and become keys there.
        if not 0 <= seed <= MAX_SEED:
            raise ValueError(f"seed {seed} should be in [0, {MAX_SEED}].")
    train.validate_inputs(x, config.network)


def _grid_points(
    method: Method, config: BaselineConfig, grid: Mapping[str, Sequence[float]] | None
) -> list[dict[str, float]]:
    """Expand `grid` over the method's defaults into one dict per grid point."""
    defaults = method.default_hyperparameters(config)
    grid = dict(grid or {})
    unknown = sorted(set(grid) - set(defaults))
    if unknown:
        raise ValueError(
            f"{method.name} has no hyperparameters {unknown}; its traced hyperparameters "
            f"are {sorted(defaults)}."
        )
    for name, values in grid.items():
        if len(values) == 0:
            raise ValueError(f"grid[{name!r}] is empty; give at least one value.")
    names = sorted(grid)
    points = []
    for values in itertools.product(*(grid[name] for name in names)):
        points.append({**defaults, **dict(zip(names, (float(v) for v in values), strict=True))})
    return points


@functools.lru_cache(maxsize=32)
def _vmapped_program(method_name: str, config: BaselineConfig, from_start: bool) -> Callable:
    method = METHODS[method_name]
    if from_start:
        run = _keyed(functools.partial(method.run_from_start, config=config), has_start=True)
        return jax.jit(jax.vmap(run, in_axes=(0, 0, None, 0)))
    run = _keyed(functools.partial(method.run, config=config), has_start=False)
    return jax.jit(jax.vmap(run, in_axes=(0, None, 0)))


# Compiled executables by method, config, argument shapes and devices, so
# repeated calls (e.g. MNIST and Fashion-MNIST, which share shapes) compile once.
_EXECUTABLES: dict[tuple, Callable] = {}


def _executable(program: Callable, cache_key: tuple, *args) -> tuple[Callable, float]:
    if cache_key in _EXECUTABLES:
        return _EXECUTABLES[cache_key], 0.0
    start = time.perf_counter()
    executable = program.lower(*args).compile()
    _EXECUTABLES[cache_key] = executable
    return executable, time.perf_counter() - start


def _cache_key(name: str, config: BaselineConfig, mesh: Mesh, *args) -> tuple:
    shapes = tuple(
        (leaf.shape, str(leaf.dtype)) for leaf in jax.tree.leaves(args) if hasattr(leaf, "shape")
    )
    tree = jax.tree.structure(args)
    return (name, config, shapes, str(tree), tuple(d.id for d in mesh.devices.flat))


def _place(leaf, sharding: NamedSharding) -> jax.Array:
    """Place a host or device array with `sharding`.

    A sharding that spans other processes' devices cannot take `device_put`
    of host data, so each process then fills its own shards from its copy.
    """
    if sharding.is_fully_addressable or isinstance(leaf, jax.Array):
        return jax.device_put(leaf, sharding)
    host = np.asarray(leaf)
    return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])


def _shard_runs(tree, mesh: Mesh):
    sharding = NamedSharding(mesh, PartitionSpec(RUN_AXIS))
    return jax.tree.map(lambda leaf: _place(leaf, sharding), tree)


def _replicate(x: np.ndarray, mesh: Mesh) -> jax.Array:
    return _place(x, NamedSharding(mesh, PartitionSpec()))


def _to_host(tree):
    """Copy a pytree of (possibly multi-process) arrays to NumPy on this process."""
    leaves = jax.tree.leaves(tree)
    if all(leaf.is_fully_addressable for leaf in leaves):
        return jax.tree.map(np.asarray, tree)
    return multihost_utils.process_allgather(tree, tiled=True)


def _padded(items: list, n_devices: int) -> list:
    """Repeat the last item until the length is a multiple of `n_devices`."""
    return items + [items[-1]] * (-len(items) % n_devices)


def _seed_array(seeds: Sequence[int]) -> np.ndarray:
    return np.array([int(seed) for seed in seeds], np.int32)


def _same_start_settings(a: BaselineConfig, b: BaselineConfig) -> bool:
    fields = ("network", "kmeans_restarts", "kmeans_iters")
    return all(getattr(a, name) == getattr(b, name) for name in fields)


def pretrain(
    x: np.ndarray,
    config: BaselineConfig,
    seeds: Sequence[int] = (0,),
    devices: Sequence[jax.Device] | None = None,
    autoencoders: dict | None = None,
) -> Pretrained:
    """Pretrain one autoencoder per seed and fit k-means on its encoding.

    All seeds run as one program, sharded over `devices` (default: all).

    Args:
      x: training inputs, shape `(n_samples, n_features)`, float.
      config: baseline settings; `network` gives the autoencoder.
      seeds: integer seeds.
      devices: devices to shard the seeds over.
      autoencoders: seed-stacked `{"encoder": ..., "decoder": ...}` parameters
        (leading axis `len(seeds)`) pretrained elsewhere, e.g. read from a
        cache; only the k-means fits run then.
    """
    x = np.asarray(x, np.float32)
    _check_inputs(x, config, seeds)
    mesh = make_mesh(devices)
    padded = _padded([int(seed) for seed in seeds], mesh.devices.size)
    seed_array = _shard_runs(_seed_array(padded), mesh)
    x_replicated = _replicate(x, mesh)
    if autoencoders is None:
        program, args = _pretrain_program(config), (seed_array, x_replicated)
    else:
        rows = np.array(_padded(list(range(len(seeds))), mesh.devices.size))
        params = _shard_runs(jax.tree.map(lambda leaf: np.asarray(leaf)[rows], autoencoders), mesh)
        program, args = _start_program(config), (params, seed_array, x_replicated)
    cache_key = _cache_key("pretrain", config, mesh, *args)
    executable, compile_seconds = _executable(program, cache_key, *args)
    start = time.perf_counter()
    output = jax.block_until_ready(executable(*args))
    run_seconds = time.perf_counter() - start
    n_seeds = len(seeds)
    output = jax.tree.map(lambda leaf: leaf[:n_seeds], output)
    return Pretrained(tuple(int(s) for s in seeds), config, output, compile_seconds, run_seconds)


@functools.lru_cache(maxsize=8)
def _pretrain_program(config: BaselineConfig) -> Callable:
    start = _keyed(functools.partial(autoencoder.pretrained_start, config=config), False)
    return jax.jit(jax.vmap(start, in_axes=(0, None)))


@functools.lru_cache(maxsize=8)
def _start_program(config: BaselineConfig) -> Callable:
    start = _keyed(functools.partial(autoencoder.start_from_autoencoder, config=config), True)
    return jax.jit(jax.vmap(start, in_axes=(0, 0, None)))


def _starts_for_runs(pretrained: Pretrained, config: BaselineConfig, run_seeds: list[int]):
    if not _same_start_settings(pretrained.config, config):
        raise ValueError(
            "pretrained was built with other network or k-means settings than config; "
            "pretrain with this config or drop pretrained."
        )
    missing = sorted(set(run_seeds) - set(pretrained.seeds))
    if missing:
        raise ValueError(
            f"pretrained contains seeds {list(pretrained.seeds)} but not {missing}; pretrain "
            "with every seed you run."
        )
    rows = np.array([pretrained.seeds.index(seed) for seed in run_seeds])
    return jax.tree.map(lambda leaf: leaf[rows], pretrained.start)


def run_method(
    method_name: str,
    x: np.ndarray,
    config: BaselineConfig,
    seeds: Sequence[int] = (0,),
    grid: Mapping[str, Sequence[float]] | None = None,
    devices: Sequence[jax.Device] | None = None,
    pretrained: Pretrained | None = None,
) -> RunResult:
    """Run a baseline for every seed and grid point in one sharded program.

    Args:
      method_name: one of `METHODS`.
      x: training inputs, shape `(n_samples, n_features)`, float.
      config: baseline settings.
      seeds: integer seeds in `[0, 2**31 - 1]`; a run of seed `s` uses
        `jax.random.key(s)`.
      grid: hyperparameter name -> values; every combination runs for every
        seed. Names must be traced hyperparameters of the method (e.g.
        `cluster_weight`, ABC's lambda); unnamed ones take the config's values.
      devices: devices to shard the runs over; default all of `jax.devices()`. Runs
        are padded with copies of the last run to a multiple of the device
        count, and the copies are dropped from the result.
      pretrained: autoencoders from `pretrain` with the same `x` and settings,
        to skip pretraining; ignored by methods without an autoencoder.

    Returns:
      A `RunResult` with `len(seeds) * n_grid_points` runs.

    Raises:
      ValueError: for an unknown method or hyperparameter, an empty seed list
        or grid, inputs that `train.validate_inputs` rejects, or a `pretrained`
        that does not match `config` and `seeds`.
    """
    if method_name not in METHODS:
        raise ValueError(
            f"Unknown method {method_name!r}; choose one of {sorted(METHODS)}, or use "
            "run_dcan for DCAN."
        )
    method = METHODS[method_name]
    x = np.asarray(x, np.float32)
    _check_inputs(x, config, seeds)
    points = _grid_points(method, config, grid)
    runs = [(int(seed), point) for seed in seeds for point in points]
    mesh = make_mesh(devices)
    padded = _padded(runs, mesh.devices.size)

    seed_array = _shard_runs(_seed_array([seed for seed, _ in padded]), mesh)
    hyperparameters = _shard_runs(
        {name: np.array([p[name] for _, p in padded], np.float32) for name in points[0]}, mesh
    )
    x_replicated = _replicate(x, mesh)
    args = (seed_array, x_replicated, hyperparameters)
    from_start = pretrained is not None and method.run_from_start is not None
    if from_start:
        starts = _starts_for_runs(pretrained, config, [seed for seed, _ in padded])
        args = (_shard_runs(starts, mesh), *args)
    program = _vmapped_program(method_name, config, from_start)
    cache_key = _cache_key(method_name, config, mesh, *args)
    executable, compile_seconds = _executable(program, cache_key, *args)
    start = time.perf_counter()
    output = _to_host(jax.block_until_ready(executable(*args)))
    run_seconds = time.perf_counter() - start

    n_runs = len(runs)
    return RunResult(
        method=method_name,
        seeds=np.array([seed for seed, _ in runs], np.int64),
        hyperparameters={
            name: np.array([p[name] for _, p in runs], np.float32) for name in points[0]
        },
        labels=output.labels[:n_runs],
        history={name: values[:n_runs] for name, values in output.history.items()},
        compile_seconds=compile_seconds,
        run_seconds=run_seconds,
        n_devices=mesh.devices.size,
    )


def _pretrained_autoencoders(pretrained: Pretrained, config: DCANConfig, seeds) -> dict:
    differing = [
        name
        for name in AUTOENCODER_FIELDS
        if getattr(pretrained.config.network, name) != getattr(config, name)
    ]
    if differing:
        raise ValueError(
            f"pretrained autoencoders differ from config in {differing}; pretrain with "
            "this autoencoder or drop pretrained."
        )
    start = _starts_for_runs(pretrained, pretrained.config, [int(seed) for seed in seeds])
    return start.params


def run_dcan(
    x: np.ndarray,
    config: DCANConfig,
    seeds: Sequence[int] = (0,),
    method_name: str = "dcan",
    log_fn: Callable[[int, dict[str, float]], None] | None = None,
    pretrained: Pretrained | None = None,
    devices: Sequence[jax.Device] | None = None,
) -> RunResult:
    """Train DCAN with `train.fit` (all seeds vmapped) and return a `RunResult`.

    Args:
      x: training inputs, shape `(n_samples, n_features)`, float.
      config: DCAN settings, e.g. `get_config("default")`.
      seeds: integer seeds.
      method_name: the name the result carries, e.g. "dcan-paper".
      log_fn: passed to `train.fit`.
      pretrained: autoencoders from `pretrain` with the same autoencoder
        settings, passed to `train.fit` instead of pretraining again. For the
        same seed, `train.fit` would pretrain the same autoencoder.
      devices: devices to shard the seeds over (this process's devices only);
        `train.seed_mesh` says how many are used.

    Raises:
      ValueError: when `pretrained` has another autoencoder or lacks a seed.
      train.TrainingDivergedError: when a seed diverges or collapses.
    """
    autoencoders = None
    if pretrained is not None:
        autoencoders = _pretrained_autoencoders(pretrained, config, seeds)
    result = train.fit(x, config, seeds, log_fn=log_fn, pretrained=autoencoders, devices=devices)
    start = time.perf_counter()
    labels = train.predict(result.state, x)
    predict_seconds = time.perf_counter() - start
    return RunResult(
        method=method_name,
        seeds=np.array(result.seeds, np.int64),
        hyperparameters={},
        labels=labels.astype(np.int32),
        history=dict(result.history),
        compile_seconds=result.compile_seconds,
        run_seconds=result.train_seconds + predict_seconds,
        n_devices=result.n_devices,
    )
