"""The `dcan-jax` command line on files written here: fit, resume, predict, evaluate, plot."""

from __future__ import annotations

import io
import json
import logging
import os
import shlex
import signal
import struct
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from dcan_jax import DCAN, checkpoint, cli, metrics
from dcan_jax.progress import ProgressReporter

# The digits' border pixels are constant, which the loader reports on every read.
pytestmark = pytest.mark.filterwarnings("ignore::dcan_jax.data.ConstantFeatureWarning")

# The console script installed beside this Python, which need not be on PATH.
SCRIPT = os.path.join(os.path.dirname(sys.executable), "dcan-jax")

# The tiny config of tests/test_estimator.py, so both share compiled programs.
TINY_SETTINGS = [
    "n_steps=20",
    "log_every=10",
    "encoder_widths=(32, 4)",
    "discriminator_widths=(8,)",
    "pretrain_epochs=1",
    "pretrain_batch_size=64",
    "batch_size=32",
    "cluster_sample_size=128",
    "init_cluster_sample_size=300",
    "final_cluster_iters=2",
]
TINY_ARGS = ["--n-clusters", "10", "--seeds", "2"]
for setting in TINY_SETTINGS:
    TINY_ARGS += ["--set", setting]


def _leaves(tree):
    leaves = []
    for leaf in jax.tree.leaves(tree):
        if jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
            leaf = jax.random.key_data(leaf)
        leaves.append(np.asarray(leaf))
    return leaves


@pytest.fixture(scope="module")
def files(embedded_digits, tmp_path_factory):
    """300 digits as digits.npz (x and y), and the labels alone as y.npy."""
    folder = tmp_path_factory.mktemp("data")
    x, y = embedded_digits
    # The digits are sorted by class, so draw rows from all of them.
    rows = np.random.default_rng(0).permutation(x.shape[0])[:300]
    x, y = x[rows], y[rows]
    np.savez(folder / "digits.npz", x=x, y=y)
    np.save(folder / "y.npy", y)
    return folder


@pytest.fixture(scope="module")
def finished_run(files, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "full"
    argv = ["fit", str(files / "digits.npz"), *TINY_ARGS, "--out", str(out), "--plot-points", "80"]
    assert cli.main(argv) == 0
    return out


def _run_cli(argv, capsys):
    status = cli.main([str(a) for a in argv])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_fit_writes_run_directory(finished_run, files):
    names = {path.name for path in finished_run.iterdir()}
    expected = {
        "model.dcan",
        "checkpoint.dcan",
        "metrics.jsonl",
        "labels.npy",
        "run.json",
        "training_curves.png",
        "latent_map.png",
        "confusion_matrix.png",
    }
    assert expected <= names

    records = [
        json.loads(line) for line in (finished_run / "metrics.jsonl").read_text().splitlines()
    ]
    assert [record["step"] for record in records] == [10, 20]
    assert records[0]["seeds"] == [0, 1]
    assert len(records[0]["discriminator_loss"]) == 2
    assert len(records[-1]["acc"]) == 2

    run = json.loads((finished_run / "run.json").read_text())
    assert run["status"] == "finished"
    assert run["step"] == 20

    labels = np.load(finished_run / "labels.npy")
    model = DCAN.load(finished_run / "model.dcan")
    np.testing.assert_array_equal(labels, model.labels_)
    y = np.load(files / "y.npy")
    for name, value in metrics.evaluate(y, labels).items():
        assert run["scores"][name] == pytest.approx(value, rel=1e-12)
    assert run["selected_seed"] == model.selected_seed_
    assert int(checkpoint.load_state(finished_run / "checkpoint.dcan").step[0]) == 20


def test_predict_and_evaluate(finished_run, files, tmp_path, capsys):
    data = files / "digits.npz"
    status, out, _ = _run_cli(["predict", finished_run, data, "--out", tmp_path / "p.csv"], capsys)
    assert status == 0
    assert "Wrote 300 labels" in out
    model = DCAN.load(finished_run / "model.dcan")
    expected = model.predict(np.load(data)["x"])
    np.testing.assert_array_equal(np.loadtxt(tmp_path / "p.csv", dtype=np.int64), expected)
    status, _, _ = _run_cli(
        ["predict", finished_run / "model.dcan", data, "--out", tmp_path / "p.npy"], capsys
    )
    assert status == 0
    np.testing.assert_array_equal(np.load(tmp_path / "p.npy"), expected)

    scores = metrics.evaluate(np.load(files / "y.npy"), expected)
    argv = ["evaluate", tmp_path / "p.csv", files / "y.npy", "--json", tmp_path / "s.json"]
    status, out, _ = _run_cli(argv, capsys)
    assert status == 0
    assert f"ACC            {scores['acc']:.4f}" in out
    assert f"ARI            {scores['ari']:.4f}" in out
    written = json.loads((tmp_path / "s.json").read_text())
    assert written["n_samples"] == 300
    assert written["nmi"] == pytest.approx(scores["nmi"], rel=1e-12)
    status, out, _ = _run_cli(
        ["evaluate", tmp_path / "p.npy", files / "y.npy", "--json", "-"], capsys
    )
    assert json.loads(out)["acc"] == pytest.approx(scores["acc"], rel=1e-12)


def test_interrupted_fit_resumes_to_the_same_model(
    finished_run, files, tmp_path, capsys, monkeypatch
):
    out = tmp_path / "interrupted"
    argv = ["fit", files / "digits.npz", *TINY_ARGS, "--out", out, "--no-plots"]
    # No regular checkpoint before step 100, so the one at step 10 comes from Ctrl-C.
    argv += ["--checkpoint-every", "100"]
    original = cli.RunRecorder.on_chunk

    def interrupt_after_step_10(self, state, chunk):
        original(self, state, chunk)
        if self.latest_step == 10:
            raise KeyboardInterrupt

    monkeypatch.setattr(cli.RunRecorder, "on_chunk", interrupt_after_step_10)
    status, _, err = _run_cli(argv, capsys)
    monkeypatch.undo()
    assert status == cli.EXIT_INTERRUPTED
    assert f"The checkpoint at step 10 is in {out / 'checkpoint.dcan'}" in err
    assert int(checkpoint.load_state(out / "checkpoint.dcan").step[0]) == 10
    assert json.loads((out / "run.json").read_text())["status"] == "interrupted"
    assert not (out / "model.dcan").exists()

    # Run the resume command exactly as printed.
    command = err.split("Resume with:")[1].strip().splitlines()[0]
    resume_argv = shlex.split(command)
    assert resume_argv[0] == "dcan-jax"
    assert "--resume" in resume_argv
    status, _, _ = _run_cli(resume_argv[1:], capsys)
    assert status == 0

    resumed = DCAN.load(out / "model.dcan")
    uninterrupted = DCAN.load(finished_run / "model.dcan")
    for a, b in zip(_leaves(resumed.state_), _leaves(uninterrupted.state_), strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(resumed.labels_, uninterrupted.labels_)
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [record["step"] for record in records] == [10, 20]


def test_ctrl_c_in_a_subprocess_saves_a_checkpoint(files, tmp_path, tmp_path_factory):
    out = tmp_path / "long"
    settings = [s for s in TINY_SETTINGS if not s.startswith("n_steps")] + ["n_steps=1000000"]
    command = [SCRIPT, "fit", str(files / "digits.npz"), "--n-clusters", "10"]
    for setting in settings:
        command += ["--set", setting]
    command += ["--out", str(out), "--no-plots"]
    # Subprocess tests share compiled programs through JAX's persistent cache.
    cache = tmp_path_factory.getbasetemp() / "jax_compilation_cache"
    env = {
        **os.environ,
        "JAX_COMPILATION_CACHE_DIR": str(cache),
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
    }
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    try:
        deadline = time.monotonic() + 240
        metrics_file = out / "metrics.jsonl"
        # The progress line with a rate follows the second chunk's metrics line, so
        # waiting for a third line means it has been written.
        while not (metrics_file.exists() and metrics_file.read_text().count("\n") >= 3):
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "no chunk finished within 240 s"
            time.sleep(0.2)
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == cli.EXIT_INTERRUPTED, err
    assert "Resume with:" in err
    assert "--resume" in err
    # stderr is a pipe, not a terminal, so progress comes as log lines with a rate.
    assert "step 10/1000000" in err
    assert "steps/s  ETA" in err
    step = int(checkpoint.load_state(out / "checkpoint.dcan").step[0])
    assert step >= 20
    assert step % 10 == 0


def _event_tags(folder):
    """Read the scalar tags of the TensorBoard event files in `folder`."""
    from tensorboardX.proto import event_pb2

    tags = set()
    for path in folder.iterdir():
        data = path.read_bytes()
        offset = 0
        # TFRecord framing: length (uint64), its CRC, the payload, the payload's CRC.
        while offset < len(data):
            (length,) = struct.unpack("<Q", data[offset : offset + 8])
            payload = data[offset + 12 : offset + 12 + length]
            offset += 12 + length + 4
            event = event_pb2.Event.FromString(payload)
            tags.update(value.tag for value in event.summary.value)
    return tags


def test_tensorboard_events(files, tmp_path):
    pytest.importorskip("tensorboardX")
    out = tmp_path / "tb"
    argv = ["fit", files / "digits.npz", *TINY_ARGS, "--out", out, "--no-plots", "--tensorboard"]
    assert cli.main([str(a) for a in argv]) == 0
    for seed in (0, 1):
        tags = _event_tags(out / "tensorboard" / f"seed_{seed}")
        assert {"train/discriminator_loss", "train/min_cluster_fraction", "eval/acc"} <= tags


def test_tensorboard_without_package(files, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboardX", None)
    argv = ["fit", files / "digits.npz", *TINY_ARGS, "--out", tmp_path / "r", "--tensorboard"]
    status, _, err = _run_cli(argv, capsys)
    assert status == cli.EXIT_USAGE
    assert "pip install 'dcan-jax[tensorboard]'" in err


def test_plot_command_redraws_figures(finished_run, capsys):
    for name in ("training_curves.png", "latent_map.png", "confusion_matrix.png"):
        (finished_run / name).unlink()
    status, _, _ = _run_cli(["plot", finished_run, "--max-points", "60"], capsys)
    assert status == 0
    for name in ("training_curves.png", "latent_map.png", "confusion_matrix.png"):
        assert (finished_run / name).read_bytes().startswith(b"\x89PNG")


def _bad_fit(files, tmp_path, *options):
    return ["fit", files / "digits.npz", "--out", tmp_path / "bad", *options]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--set", "bogus=1"], r"Unknown config keys ['bogus']"),
        (["--set", "n_steps=abc"], "n_steps='abc' has type str, but it should be int"),
        (["--set", "n_steps"], "--set 'n_steps' should look like KEY=VALUE"),
        (["--config", "nope"], "Unknown config 'nope'"),
        (["--n-clusters", "1"], "n_clusters=1 should be >= 2"),
        (["--seeds", "0"], "--seeds 0 should be >= 1"),
        (["--checkpoint-every", "0"], "--checkpoint-every 0 should be >= 1"),
        (["--resume"], "--resume: "),
        (["--device", "tpu"], "--device tpu: JAX finds no tpu device"),
    ],
)
def test_fit_rejects_bad_options(files, tmp_path, capsys, options, message):
    status, _, err = _run_cli(_bad_fit(files, tmp_path, *options), capsys)
    assert status == cli.EXIT_USAGE
    assert message in err
    assert "Traceback" not in err


def test_fit_rejects_bad_files(files, tmp_path, capsys):
    (tmp_path / "config.json").write_text("{not json")
    (tmp_path / "typed.json").write_text('{"learning_rate": "fast"}')
    (tmp_path / "keys.json").write_text('{"n_step": 5}')
    (tmp_path / "list.json").write_text("[1, 2]")
    (tmp_path / "broken.npy").write_bytes(b"\x93NUMPY garbage")
    (tmp_path / "x.parquet").write_bytes(b"")
    np.save(tmp_path / "short.npy", np.zeros(299, np.int64))
    cases = [
        (_bad_fit(files, tmp_path, "--config", tmp_path / "config.json"), "is not valid JSON"),
        (
            _bad_fit(files, tmp_path, "--config", tmp_path / "typed.json"),
            "learning_rate='fast' has type str, but it should be float",
        ),
        (_bad_fit(files, tmp_path, "--config", tmp_path / "keys.json"), "keys ['n_step']"),
        (_bad_fit(files, tmp_path, "--config", tmp_path / "list.json"), "not a JSON list"),
        (_bad_fit(files, tmp_path, "--config", tmp_path / "none.json"), "Cannot read config"),
        (["plot", tmp_path], "has no run.json"),
        (["fit", tmp_path / "missing.npz"], "No file at"),
        (["fit", tmp_path / "broken.npy"], "corrupt or truncated"),
        (["fit", tmp_path / "x.parquet"], "unsupported suffix '.parquet'"),
        (
            _bad_fit(files, tmp_path, "--labels", tmp_path / "short.npy"),
            "short.npy' has 299 labels but the data has 300 samples",
        ),
    ]
    for argv, message in cases:
        status, _, err = _run_cli(argv, capsys)
        assert status == cli.EXIT_USAGE, argv
        assert message in err, err


def test_resume_rejects_other_runs(finished_run, files, capsys):
    data = files / "digits.npz"
    changed = [*TINY_ARGS, "--set", "learning_rate=0.01"]
    status, _, err = _run_cli(["fit", data, *changed, "--out", finished_run, "--resume"], capsys)
    assert status == cli.EXIT_USAGE
    assert "different config: fields ['learning_rate'] differ" in err
    other_seeds = [*TINY_ARGS, "--first-seed", "7"]
    status, _, err = _run_cli(
        ["fit", data, *other_seeds, "--out", finished_run, "--resume"], capsys
    )
    assert status == cli.EXIT_USAGE
    assert "another --seeds/--first-seed ([0, 1], now [7, 8])" in err
    status, _, err = _run_cli(["fit", data, *TINY_ARGS, "--out", finished_run], capsys)
    assert status == cli.EXIT_USAGE
    assert "already contains a run; pass --resume" in err


def test_predict_and_evaluate_reject_bad_files(finished_run, files, tmp_path, capsys):
    model = (finished_run / "model.dcan").read_bytes()
    (tmp_path / "truncated.dcan").write_bytes(model[:100])
    np.save(tmp_path / "five.npy", np.random.default_rng(0).normal(size=(4, 5)))
    np.save(tmp_path / "y299.npy", np.zeros(299, np.int64))
    data = files / "digits.npz"
    out = tmp_path / "p.npy"
    cases = [
        (
            ["predict", tmp_path / "truncated.dcan", data, "--out", out],
            "truncated, corrupted or of another kind",
        ),
        (["predict", tmp_path / "none.dcan", data, "--out", out], "No model or checkpoint file"),
        (["predict", finished_run, tmp_path / "five.npy", "--out", out], "X has 5 features"),
        (["predict", finished_run, data, "--out", tmp_path / "p.json"], "unsupported suffix"),
        (["evaluate", tmp_path / "y299.npy", files / "y.npy"], "has 299 labels but"),
        (["evaluate", tmp_path / "none.npy", files / "y.npy"], "No labels file"),
    ]
    for argv, message in cases:
        status, _, err = _run_cli(argv, capsys)
        assert status == cli.EXIT_USAGE, argv
        assert message in err, err


def test_every_option_has_help_and_default():
    parser = cli.build_parser()
    subcommands = next(a for a in parser._actions if a.dest == "command").choices
    assert set(subcommands) == {"fit", "predict", "evaluate", "plot"}
    for name, subparser in subcommands.items():
        for action in subparser._actions:
            if action.dest == "help":
                continue
            assert action.help, f"{name} {action.dest} has no help"
            takes_default = action.option_strings and action.nargs != 0 and not action.required
            if takes_default:
                assert "default" in action.help, f"{name} {action.option_strings} names no default"


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_bar_on_a_terminal():
    stream = _Terminal()
    reporter = ProgressReporter(20, stream=stream)
    reporter.update(10, {"discriminator_loss": 1.25, "min_cluster_fraction": 0.05})
    reporter.close()
    text = stream.getvalue()
    assert "10/20" in text
    assert "step/s" in text
    assert "d_loss=1.25" in text


def test_progress_lines_without_a_terminal(caplog):
    reporter = ProgressReporter(30, stream=io.StringIO())
    with caplog.at_level(logging.INFO, logger="dcan_jax"):
        reporter.update(10, {"discriminator_loss": 1.0})
        reporter.update(20, {"discriminator_loss": 0.9})
    assert "step 10/30  rate unknown  ETA unknown" in caplog.records[0].getMessage()
    assert "steps/s  ETA 00:00" in caplog.records[1].getMessage()


def test_first_ctrl_c_waits_for_the_chunk():
    with cli._interrupt_between_chunks() as stop_if_requested:
        stop_if_requested()  # nothing requested yet
        os.kill(os.getpid(), signal.SIGINT)
        with pytest.raises(KeyboardInterrupt):
            stop_if_requested()


def test_second_ctrl_c_stops_at_once():
    # Background shells start with SIGINT ignored, so compare with what was there.
    before = signal.getsignal(signal.SIGINT)
    with cli._interrupt_between_chunks():
        os.kill(os.getpid(), signal.SIGINT)
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1)
    assert signal.getsignal(signal.SIGINT) is before
