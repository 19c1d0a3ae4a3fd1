"""The pretraining curve: chunked pretraining equals one run, and its report."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dcan_jax import config as config_lib
from dcan_jax import train
from dcan_jax.step import init_train_state
from experiments import pretraining_curve

TINY = {
    "encoder_widths": (32, 4),
    "pretrain_epochs": 3,
    "pretrain_batch_size": 500,
}


def test_chunks_continue_one_run(embedded_digits):
    x = jnp.asarray(embedded_digits[0][:2000])
    config = config_lib.get_config("default", **TINY)
    seed = 3

    params_key, pretrain_key = jax.random.split(jax.random.key(seed), 4)[:2]
    state = init_train_state(params_key, config, x.shape[1])
    expected, expected_losses = train.pretrain_autoencoder(state, x, pretrain_key)

    chunk, tx = pretraining_curve.make_chunk(config, x)
    params = jax.tree.map(
        lambda leaf: leaf[None], pretraining_curve.start_params(seed, config, 196)
    )
    opt_state = jax.vmap(tx.init)(params)
    keys = pretraining_curve.epoch_keys(seed, 3)[None]
    kmeans_keys = jax.random.key(0)[None]
    losses = []
    for begin, end in ((0, 2), (2, 3)):
        params, opt_state, chunk_losses, labels, ratio = chunk(
            params, opt_state, keys[:, begin:end], kmeans_keys, 5, 2
        )
        losses.extend(np.asarray(chunk_losses)[0].tolist())

    np.testing.assert_allclose(losses, np.asarray(expected_losses), rtol=1e-4)
    np.testing.assert_allclose(
        np.asarray(params["encoder"]["Dense_0"]["kernel"][0]),
        np.asarray(expected.encoder_params["Dense_0"]["kernel"]),
        atol=1e-5,
    )
    assert labels.shape == (1, 2000)
    assert 0.0 < float(ratio[0]) < 1.0


def test_report_on_real_digits(real_data_dir, tmp_path):
    argv = ["--data-dir", str(real_data_dir), "--seeds", "2", "--epochs", "2", "--every", "1"]
    argv += ["--set", "encoder_widths=(16, 4)", "--set", "pretrain_batch_size=2000"]
    argv += ["--kmeans-restarts", "2", "--kmeans-iters", "5", "--out", str(tmp_path)]
    record = pretraining_curve.main(argv)

    saved = json.loads((tmp_path / "pretraining-mnist.json").read_text())
    assert saved == json.loads(json.dumps(record))
    assert [point["epochs"] for point in saved["points"]] == [1, 2]
    assert saved["config"]["pretrain_epochs"] == 2
    first, second = saved["points"]
    # Another epoch of Adam lowers every seed's reconstruction loss.
    pairs = zip(first["reconstruction_loss"], second["reconstruction_loss"], strict=True)
    for before, after in pairs:
        assert after < before
    for point in saved["points"]:
        assert len(point["scores"]) == 2
        # Even 4 latent dimensions after one epoch cluster digits above chance.
        assert point["summary"]["acc"]["mean"] > 0.15


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["--epochs", "25", "--every", "10"],
            "invalid --epochs=25: it should be a multiple of --every=10",
        ),
        (["--seeds", "0"], "invalid --seeds=0: it should be >= 1"),
    ],
)
def test_bad_arguments_rejected(argv, message):
    with pytest.raises(SystemExit, match=message):
        pretraining_curve.main(argv)
