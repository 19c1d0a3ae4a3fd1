"""The MNIST experiment's command line, results file and error exits."""

import json

import pytest

from experiments import mnist


def test_experiment_writes_results(real_data_dir, tmp_path, capsys):
    out = tmp_path / "run"
    payload = mnist.main(
        [
            "--data-dir",
            str(real_data_dir),
            "--seeds",
            "2",
            "--subset",
            "2000",
            "--set",
            "n_steps=20",
            "--set",
            "log_every=10",
            "--out",
            str(out),
        ]
    )
    saved = json.loads((out / "results.json").read_text())
    assert saved["seeds"] == [0, 1]
    assert saved["split"] == "train"
    assert saved["n_train"] == 2000
    assert saved["n_test"] == 10_000
    assert saved["config"]["n_steps"] == 20
    assert "IDX files" in saved["data_source"]
    for split in ("train_before", "train", "test"):
        assert len(saved["scores"][split]) == 2
        assert 0.1 < saved["summary"][split]["acc"]["mean"] <= 1.0
    assert saved["wall_seconds"] > 0
    assert payload["summary"] == saved["summary"]
    assert (out / "history.npz").is_file()
    assert (out / "curves.png").stat().st_size > 0
    assert saved["curves"]["step"] == [0, 10, 20]
    assert len(saved["curves"]["acc"][0]) == 2
    printed = capsys.readouterr().out
    assert "test.acc" in printed
    assert "mean" in printed


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "n_cluster=3"], "Unknown config keys"),
        (["--set", "n_steps"], "should look like KEY=VALUE"),
        (["--config", "nope"], "Unknown config 'nope'"),
        (["--data-dir", "/nonexistent/dcan"], "does not exist"),
    ],
)
def test_bad_options_exit_with_message(args, message, capsys):
    with pytest.raises(SystemExit) as info:
        mnist.main(args)
    assert info.value.code == 2
    assert message in capsys.readouterr().err
