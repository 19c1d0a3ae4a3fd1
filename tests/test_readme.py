"""The "Use it on your own data" examples of README.md, run as written."""

from __future__ import annotations

import os
import pathlib
import re
import shlex
import subprocess
import sys

import numpy as np
import pytest

from dcan_jax import DCAN, get_config
from dcan_jax import config as config_lib

# The digits' border pixels are constant, which the loader reports on every read.
pytestmark = pytest.mark.filterwarnings("ignore::dcan_jax.data.ConstantFeatureWarning")

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"
SCRIPT = os.path.join(os.path.dirname(sys.executable), "dcan-jax")

# The README trains the built-in "default" config; the tests swap in this tiny
# one (in-process) or pass the same fields with --set (in the shell).
TINY_FIELDS = {
    "n_steps": 20,
    "log_every": 10,
    "encoder_widths": (32, 4),
    "discriminator_widths": (8,),
    "pretrain_epochs": 1,
    "pretrain_batch_size": 64,
    "batch_size": 32,
    "cluster_sample_size": 128,
    "init_cluster_sample_size": 300,
    "final_cluster_iters": 2,
}


def _code_block(language: str) -> str:
    text = README.read_text()
    start = text.index("## Use it on your own data")
    end = text.find("\n## ", start + 1)
    section = text[start:end]
    blocks = re.findall(rf"```{language}\n(.*?)```", section, flags=re.DOTALL)
    assert len(blocks) == 1, f"expected one {language} block in the section"
    return blocks[0]


@pytest.fixture
def my_data(embedded_digits, tmp_path, monkeypatch):
    """300 digits of all classes as my_data.npz in the working directory."""
    x, y = embedded_digits
    rows = np.random.default_rng(0).permutation(x.shape[0])[:300]
    np.savez(tmp_path / "my_data.npz", x=x[rows], y=y[rows])
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_python_example_runs(my_data, monkeypatch):
    monkeypatch.setitem(config_lib._CONFIGS, "default", get_config("default", **TINY_FIELDS))
    namespace: dict = {}
    exec(_code_block("python"), namespace)
    model = namespace["model"]
    assert model.labels_.shape == (300,)
    assert model.n_iter_ == 20
    loaded = DCAN.load(my_data / "my_model.dcan")
    np.testing.assert_array_equal(loaded.predict(namespace["x"]), model.labels_)


def test_shell_example_runs(my_data, tmp_path_factory):
    # Subprocess tests share compiled programs through JAX's persistent cache.
    cache = tmp_path_factory.getbasetemp() / "jax_compilation_cache"
    env = {
        **os.environ,
        "JAX_COMPILATION_CACHE_DIR": str(cache),
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
    }
    tiny = [f"--set={name}={value}" for name, value in TINY_FIELDS.items()]
    lines = [line for line in _code_block("bash").splitlines() if line.strip()]
    assert len(lines) == 2
    outputs = []
    for line in lines:
        argv = shlex.split(line)
        assert argv[0] == "dcan-jax"
        argv[0] = SCRIPT
        if argv[1] == "fit":
            argv += tiny
        result = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=600)
        assert result.returncode == 0, result.stderr
        outputs.append(result)
    # stderr is a pipe, so fit logs progress lines instead of drawing a bar.
    assert "step 20/20" in outputs[0].stderr
    labels = np.loadtxt(my_data / "my_labels.csv", dtype=np.int64)
    model = DCAN.load(my_data / "runs" / "my_data" / "model.dcan")
    np.testing.assert_array_equal(labels, model.labels_)
    for name in ("training_curves.png", "latent_map.png", "confusion_matrix.png"):
        assert (my_data / "runs" / "my_data" / name).is_file()
