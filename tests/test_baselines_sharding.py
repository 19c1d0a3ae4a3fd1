"""The sharded run path: runs split over several devices match a single-device run.

One subprocess starts JAX with `--xla_force_host_platform_device_count=4`, so the
run axis is sharded over four CPU devices, and runs the same program on a mesh of
one device for comparison. Two more subprocesses join through
`jax.distributed.initialize` on the loopback interface, with two CPU devices
each, and must both return the k-means labels of a single-device run.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap

import numpy as np
import pytest

SCRIPT = textwrap.dedent(
    """
    import sys

    import jax
    import numpy as np

    from dcan_jax import baselines, get_config
    from dcan_jax.data import load_image_dataset

    data_dir, out_path = sys.argv[1], sys.argv[2]
    x = load_image_dataset("mnist", data_dir=data_dir).subset(600).x_train
    network = get_config(
        "default",
        encoder_widths=(32, 10),
        pretrain_epochs=2,
        pretrain_batch_size=64,
        n_steps=20,
        batch_size=32,
        cluster_sample_size=64,
        init_cluster_sample_size=200,
        init_cluster_iters=1,
    )
    config = baselines.BaselineConfig(network=network, kmeans_restarts=2, kmeans_iters=5)
    # 3 seeds x 2 values = 6 runs, padded to 8 on four devices.
    options = dict(seeds=[0, 1, 2], grid={"cluster_weight": [0.0, 0.1]})
    sharded = baselines.run_method("abc", x, config, **options)
    single = baselines.run_method("abc", x, config, devices=jax.devices()[:1], **options)
    kmeans_config = baselines.BaselineConfig(kmeans_restarts=2, kmeans_iters=5)
    kmeans = baselines.run_method(
        "kmeans", x, kmeans_config, seeds=[0, 1, 2], devices=jax.devices()[:1]
    )
    arrays = {"n_visible_devices": np.array(len(jax.devices())), "kmeans": kmeans.labels}
    # DCAN shards its seed axis in train.fit: 6 seeds use 3 of the 4 devices.
    dcan_seeds = [0, 1, 2, 3, 4, 5]
    dcan = baselines.run_dcan(x, network, dcan_seeds)
    dcan_single = baselines.run_dcan(x, network, dcan_seeds, devices=jax.devices()[:1])
    arrays["dcan_devices"] = np.array(dcan.n_devices)
    arrays["dcan_labels"] = dcan.labels
    arrays["dcan_single_labels"] = dcan_single.labels
    arrays["dcan_loss"] = dcan.history["discriminator_loss"]
    arrays["dcan_single_loss"] = dcan_single.history["discriminator_loss"]
    for name, result in (("sharded", sharded), ("single", single)):
        arrays[f"{name}_labels"] = result.labels
        arrays[f"{name}_devices"] = np.array(result.n_devices)
        arrays[f"{name}_weights"] = result.hyperparameters["cluster_weight"]
        for key, values in result.history.items():
            arrays[f"{name}_history_{key}"] = values
    np.savez(out_path, **arrays)
    """
)


@pytest.fixture(scope="module")
def sharded_run(real_data_dir, tmp_path_factory):
    out_path = tmp_path_factory.mktemp("sharding") / "runs.npz"
    env = {
        **os.environ,
        "XLA_FLAGS": "--xla_force_host_platform_device_count=4",
        "JAX_PLATFORMS": "cpu",
    }
    completed = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(real_data_dir), str(out_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    return dict(np.load(out_path))


def test_sharded_run_uses_four_devices(sharded_run):
    assert int(sharded_run["n_visible_devices"]) == 4
    assert int(sharded_run["sharded_devices"]) == 4
    assert int(sharded_run["single_devices"]) == 1


def test_padding_runs_are_dropped(sharded_run):
    assert sharded_run["sharded_labels"].shape == (6, 600)
    np.testing.assert_allclose(sharded_run["sharded_weights"], [0.0, 0.1] * 3)


def test_sharded_labels_match_single_device(sharded_run):
    np.testing.assert_array_equal(sharded_run["sharded_labels"], sharded_run["single_labels"])


def test_sharded_history_matches_single_device(sharded_run):
    names = [key[len("sharded_history_") :] for key in sharded_run if "sharded_history_" in key]
    assert "reconstruction_loss" in names
    for name in names:
        np.testing.assert_allclose(
            sharded_run[f"sharded_history_{name}"],
            sharded_run[f"single_history_{name}"],
            rtol=1e-5,
            atol=1e-7,
            err_msg=name,
        )


def test_dcan_seeds_shard_over_dividing_devices(sharded_run):
    assert int(sharded_run["dcan_devices"]) == 3


def test_sharded_dcan_matches_single_device(sharded_run):
    np.testing.assert_array_equal(sharded_run["dcan_labels"], sharded_run["dcan_single_labels"])
    np.testing.assert_allclose(
        sharded_run["dcan_loss"], sharded_run["dcan_single_loss"], rtol=1e-5, atol=1e-7
    )


WORKER = textwrap.dedent(
    """
    import sys

    import jax
    import numpy as np

    process_id, port, data_dir, out_path = sys.argv[1:]
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(f"127.0.0.1:{port}", num_processes=2, process_id=int(process_id))

    from dcan_jax import baselines
    from dcan_jax.data import load_image_dataset

    x = load_image_dataset("mnist", data_dir=data_dir).subset(600).x_train
    kmeans_config = baselines.BaselineConfig(kmeans_restarts=2, kmeans_iters=5)
    kmeans = baselines.run_method("kmeans", x, kmeans_config, seeds=[0, 1, 2])
    np.savez(
        out_path,
        n_processes=jax.process_count(),
        n_devices=kmeans.n_devices,
        kmeans=kmeans.labels,
    )
    """
)


def free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def two_process_runs(real_data_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("processes")
    port = str(free_loopback_port())
    env = {
        **os.environ,
        "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
        "JAX_PLATFORMS": "cpu",
    }
    workers = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                WORKER,
                str(i),
                port,
                str(real_data_dir),
                str(folder / f"{i}.npz"),
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in range(2)
    ]
    outputs = []
    try:
        for worker in workers:
            output, _ = worker.communicate(timeout=300)
            outputs.append(output)
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
    for worker, output in zip(workers, outputs, strict=True):
        assert worker.returncode == 0, output[-3000:]
    return [dict(np.load(folder / f"{i}.npz")) for i in range(2)]


def test_two_processes_see_four_devices(two_process_runs):
    for run in two_process_runs:
        assert int(run["n_processes"]) == 2
        assert int(run["n_devices"]) == 4


def test_two_processes_match_single_device(two_process_runs, sharded_run):
    for run in two_process_runs:
        np.testing.assert_array_equal(run["kmeans"], sharded_run["kmeans"])
