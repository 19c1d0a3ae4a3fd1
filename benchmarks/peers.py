"""ABC and DEC epochs of dcan_jax vs ClustPy's AEC and DEC (PyTorch).

Both sides train the autoencoder of the `default` config (ReLU, 500-500-2000
hidden widths, 10-d latent, mirrored decoder, linear output) with Adam and
batch size 256 on the same generated labelled data, for the same numbers of
pretraining and fine-tuning epochs. dcan_jax draws minibatches with
replacement, so one of its epochs is `n_samples // batch_size` steps.

The ClustPy side runs `benchmarks/clustpy_peer.py` in its own virtual
environment and reports JSON with the wall time of each of its epochs. The
dcan_jax side times an epoch free of a run's fixed costs as the difference
between a run of all the steps and a run of one step (a config needs at least
one), scaled to one epoch. Its compilation is reported apart.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.common import REPOSITORY, call_blocking, load_average, timed, timed_compile
from dcan_jax import get_config, metrics, step, train
from dcan_jax.baselines import BaselineConfig, abc, dec
from dcan_jax.baselines.autoencoder import PretrainedStart
from dcan_jax.baselines.common import KMEANS_STREAM, fit_kmeans

PEER_SCRIPT = REPOSITORY / "benchmarks" / "clustpy_peer.py"
DEFAULT_TORCH_PYTHON = REPOSITORY / ".venv-bench-torch" / "bin" / "python"

# dcan_jax name -> (run function, default traced hyperparameters).
METHODS = {
    "abc": (abc.run_abc, abc.default_hyperparameters),
    "dec": (dec.run_dec, dec.default_dec_hyperparameters),
}


def make_labelled_data(
    n_samples: int, n_features: int, n_clusters: int, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Return data in (0, 1) with known clusters, `(n_samples, n_features)` float32.

    Points of a 10-d Gaussian mixture pass through a fixed random two-layer
    network with a sigmoid output, so the clusters are curved in input space.
    """
    rng = np.random.default_rng(seed)
    latent_size, hidden_size = 10, 64
    labels = rng.integers(0, n_clusters, n_samples)
    centres = rng.normal(0.0, 1.0, (n_clusters, latent_size))
    latent = centres[labels] + rng.normal(0.0, 0.9, (n_samples, latent_size))
    hidden = np.tanh(latent @ rng.normal(0.0, latent_size**-0.5, (latent_size, hidden_size)))
    logits = hidden @ rng.normal(0.0, 3.0 * hidden_size**-0.5, (hidden_size, n_features))
    return (1.0 / (1.0 + np.exp(-logits))).astype(np.float32), labels


def baseline_config(n_samples: int, pretrain_epochs: int, epochs: int) -> BaselineConfig:
    network = get_config("default", pretrain_epochs=pretrain_epochs)
    steps_per_epoch = n_samples // network.batch_size
    return BaselineConfig(network=network.replace(n_steps=epochs * steps_per_epoch))


def pretrained_start(x: jax.Array, config: BaselineConfig, seed: int):
    """Pretrain the autoencoder and fit k-means on its encoding, timing the pretraining.

    Returns:
      The start of every fine-tuning run, pretraining compile seconds and
      pretraining run seconds.
    """
    network = config.network
    key = jax.random.key(seed)
    params_key, pretrain_key = jax.random.split(key)
    state = step.init_train_state(params_key, network, x.shape[1])
    pretrain = jax.jit(train.pretrain_autoencoder)
    program, compile_seconds = timed_compile(pretrain, state, x, pretrain_key)
    (state, losses), run_seconds = timed(
        functools.partial(call_blocking, program, state, x, pretrain_key)
    )
    cluster, inertia = jax.jit(fit_kmeans, static_argnums=(2, 3, 4))(
        jax.random.fold_in(key, KMEANS_STREAM),
        train.encode(state, x),
        network.n_clusters,
        config.kmeans_iters,
        config.kmeans_restarts,
    )
    start = PretrainedStart(state.autoencoder_params, cluster, losses, inertia)
    return start, compile_seconds, run_seconds


def time_method(name: str, start, x: jax.Array, config: BaselineConfig, epochs: int, seed: int):
    """Fine-tune with `name` for `epochs` epochs and for one step, and return times and labels.

    A config needs at least one step, so the fixed costs are measured with one
    step and the epoch time is the per-step difference times the steps per epoch.
    """
    run, default_hyperparameters = METHODS[name]
    hyperparameters = {
        key: jnp.float32(value) for key, value in default_hyperparameters(config).items()
    }
    key = jax.random.key(seed)
    n_steps = config.network.n_steps
    seconds, compile_seconds, labels = {}, {}, None
    for steps in (n_steps, 1):
        variant = config.replace_network(n_steps=steps)
        program, compile_seconds[steps] = timed_compile(
            jax.jit(functools.partial(run, config=variant)), start, key, x, hyperparameters
        )
        output, seconds[steps] = timed(
            functools.partial(call_blocking, program, start, key, x, hyperparameters)
        )
        if steps == n_steps:
            labels = np.asarray(output.labels)
    step_seconds = (seconds[n_steps] - seconds[1]) / (n_steps - 1)
    return {
        "seconds": seconds[n_steps],
        "one_step_seconds": seconds[1],
        "epoch_s": step_seconds * n_steps / epochs,
        "compile_s": compile_seconds[n_steps],
        "labels": labels,
    }


def run_clustpy(
    x: np.ndarray, n_clusters: int, pretrain_epochs: int, epochs: int, torch_python: Path
) -> dict[str, Any]:
    """Run the ClustPy side in `torch_python` and return its JSON or an `error` entry."""
    if not Path(torch_python).exists():
        return {
            "error": f"no PyTorch environment at {torch_python}; create it with "
            "`make bench-torch-env`"
        }
    with tempfile.TemporaryDirectory() as folder:
        data_path = os.path.join(folder, "inputs.npz")
        np.savez(data_path, x=x)
        command = [
            str(torch_python),
            str(PEER_SCRIPT),
            f"--data={data_path}",
            f"--n-clusters={n_clusters}",
            f"--pretrain-epochs={pretrain_epochs}",
            f"--clustering-epochs={epochs}",
        ]
        completed = subprocess.run(command, capture_output=True, text=True, timeout=1800)
    if completed.returncode != 0:
        last_lines = "\n".join(completed.stderr.strip().splitlines()[-5:])
        return {"error": f"{PEER_SCRIPT.name} failed (exit {completed.returncode}): {last_lines}"}
    return json.loads(completed.stdout.strip().splitlines()[-1])


def compare_with_clustpy(
    n_samples: int, pretrain_epochs: int, epochs: int, torch_python: Path = DEFAULT_TORCH_PYTHON
) -> dict[str, Any]:
    """Time pretraining, ABC and DEC epochs on both sides and score their labels.

    Returns:
      Per side and method, seconds per epoch and ACC on the generated labels,
      with dcan_jax's compile seconds, or ClustPy's error message if it did not run.
    """
    config = baseline_config(n_samples, pretrain_epochs, epochs)
    x_host, y = make_labelled_data(n_samples, 196, config.network.n_clusters)
    x = jnp.asarray(x_host)
    start, pretrain_compile, pretrain_seconds = pretrained_start(x, config, seed=0)
    jax_side = {
        "pretrain": {
            "compile_s": pretrain_compile,
            "seconds": pretrain_seconds,
            "epoch_s": pretrain_seconds / pretrain_epochs,
        }
    }
    for name in METHODS:
        record = time_method(name, start, x, config, epochs, seed=0)
        record["acc"] = metrics.cluster_accuracy(y, record.pop("labels"))
        jax_side[name] = record

    peer = run_clustpy(x_host, config.network.n_clusters, pretrain_epochs, epochs, torch_python)
    for name in METHODS:
        if name in peer:
            peer[name]["acc"] = metrics.cluster_accuracy(y, np.asarray(peer[name].pop("labels")))
    return {
        "n_samples": n_samples,
        "n_features": x.shape[1],
        "batch_size": config.network.batch_size,
        "steps_per_epoch": n_samples // config.network.batch_size,
        "pretrain_epochs": pretrain_epochs,
        "epochs": epochs,
        "encoder_widths": config.network.encoder_widths,
        "dcan_jax": jax_side,
        "clustpy": peer,
        "load_average": load_average(),
        "python": sys.executable,
    }
