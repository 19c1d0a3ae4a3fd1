"""The ablation runner: rows share one pretraining and record per-seed scores."""

import json

import pytest

from experiments import ablations


def test_two_rows_on_real_digits(real_data_dir, tmp_path, capsys):
    tiny = [
        "encoder_widths=(16, 4)",
        "discriminator_widths=(8,)",
        "pretrain_epochs=1",
        "pretrain_batch_size=1000",
        "n_steps=4",
        "log_every=4",
        "batch_size=64",
        "cluster_sample_size=128",
        "init_cluster_sample_size=1000",
        "init_cluster_restarts=2",
        "final_cluster_iters=1",
    ]
    argv = ["--data-dir", str(real_data_dir), "--seeds", "2", "--out", str(tmp_path / "out")]
    argv += ["--cache-dir", str(tmp_path / "cache")]
    for setting in tiny:
        argv += ["--set", setting]
    argv += ["--rows", "default", "no adversarial term (autoencoder only)"]
    rows = ablations.main(argv)

    saved = json.loads((tmp_path / "out" / "ablations-mnist.json").read_text())
    assert set(saved) == {"default", "no adversarial term (autoencoder only)"}
    assert saved["no adversarial term (autoencoder only)"]["config"]["adversarial_weight"] == 0
    for row in saved.values():
        assert row["seeds"] == [0, 1]
        assert len(row["scores"]["test"]) == 2
    # Both rows start from the same cached autoencoders, so their "before" scores agree.
    before = [row["summary"]["train_before"]["acc"]["mean"] for row in rows.values()]
    assert before[0] == pytest.approx(before[1], abs=1e-9)
    assert len(list((tmp_path / "cache").glob("*.msgpack"))) == 2
    assert "| default |" in capsys.readouterr().out


def test_unknown_row_is_rejected(real_data_dir, capsys):
    with pytest.raises(SystemExit):
        ablations.main(["--data-dir", str(real_data_dir), "--rows", "no such row"])
    assert "unknown rows ['no such row']" in capsys.readouterr().err
