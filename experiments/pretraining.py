"""A per-seed disk cache of pretrained autoencoders.

Pretraining dominates the cost of a DCAN run on CPU, and every config that
differs only in its DCAN settings can start from the same autoencoder. The
cache key covers the dataset, its shape, the seed and every autoencoder setting,
so a change to any of them pretrains again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import pathlib
import tempfile
import time
from collections.abc import Sequence

import flax.serialization
import jax
import numpy as np

from dcan_jax import config as config_lib
from dcan_jax import train
from dcan_jax.config import AUTOENCODER_FIELDS
from dcan_jax.data import Dataset
from dcan_jax.step import init_train_state

logger = logging.getLogger(__name__)

_LATER_FIELDS = {"pretrain_schedule": "constant", "pretrain_input_noise": 0.0}


def cache_path(
    cache_dir: pathlib.Path, dataset: Dataset, config: config_lib.DCANConfig, seed: int
) -> pathlib.Path:
    fields = {name: getattr(config, name) for name in AUTOENCODER_FIELDS}
    # Settings added after the key was fixed enter it only when they differ from
    # their default, so autoencoders cached before they existed keep their names.
    for name, default in _LATER_FIELDS.items():
        if fields[name] == default:
            del fields[name]
    text = json.dumps(
        {"data": dataset.name, "shape": dataset.x_train.shape, "seed": seed, **fields},
        sort_keys=True,
        default=str,
    )
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    return cache_dir / f"autoencoder-{dataset.name}-seed{seed}-{digest}.msgpack"


def _template(dataset: Dataset, config: config_lib.DCANConfig) -> dict:
    def init():
        state = init_train_state(jax.random.key(0), config, dataset.n_features)
        return state.autoencoder_params

    return jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), jax.eval_shape(init))


def _read(path: pathlib.Path, template: dict) -> dict | None:
    if not path.is_file():
        return None
    try:
        return flax.serialization.from_bytes(template, path.read_bytes())
    except (ValueError, KeyError, TypeError) as error:
        logger.warning("Ignoring unreadable cache file %s (%s); pretraining again", path, error)
        return None


def _write(path: pathlib.Path, params: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path.parent, delete=False, suffix=".tmp") as f:
        f.write(flax.serialization.to_bytes(params))
    os.replace(f.name, path)


def pretrained_autoencoders(
    dataset: Dataset,
    config: config_lib.DCANConfig,
    seeds: Sequence[int],
    cache_dir: str | os.PathLike,
    group_size: int = 2,
) -> dict:
    """Return seed-stacked pretrained `{"encoder", "decoder"}` parameters.

    Seeds found in `cache_dir` are read; the others are pretrained, `group_size`
    seeds per vmapped program, and written as soon as each group finishes. A
    seed's autoencoder is the one `train.fit` would pretrain for that seed.
    """
    cache_dir = pathlib.Path(cache_dir)
    template = _template(dataset, config)
    found = {seed: _read(cache_path(cache_dir, dataset, config, seed), template) for seed in seeds}
    missing = [seed for seed, params in found.items() if params is None]
    for start in range(0, len(missing), group_size):
        group = missing[start : start + group_size]
        begin = time.perf_counter()
        result = train.fit(dataset.x_train, config.replace(n_steps=1, log_every=1), group)
        params = jax.device_get(result.initial_state.autoencoder_params)
        for index, seed in enumerate(group):
            found[seed] = jax.tree.map(lambda leaf, i=index: np.asarray(leaf[i]), params)
            _write(cache_path(cache_dir, dataset, config, seed), found[seed])
        logger.info(
            "Pretrained autoencoders for seeds %s in %.0f s", group, time.perf_counter() - begin
        )
    return jax.tree.map(lambda *leaves: np.stack(leaves), *[found[seed] for seed in seeds])
