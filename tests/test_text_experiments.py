"""The Reuters-10k and 20 Newsgroups experiments, end to end on small fixture files."""

import json

import numpy as np
from test_text_data import write_cai_mat

from experiments import newsgroups, reuters10k

TINY_RUN = [
    "--set",
    "n_steps=5",
    "--set",
    "log_every=5",
    "--set",
    "batch_size=16",
    "--set",
    "cluster_sample_size=64",
    "--set",
    "init_cluster_sample_size=100",
]


def test_reuters_experiment_end_to_end(tmp_path):
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(4), 30)
    data = rng.random((120, 2000)).astype(np.float32) + labels[:, None] * 0.2
    (tmp_path / "reuters10k").mkdir()
    np.savez(tmp_path / "reuters10k" / "reutersidf10k.npz", data=data, label=labels)
    out = tmp_path / "run"
    reuters10k.main(
        ["--data-dir", str(tmp_path), "--reuters-source", "prebuilt", "--seeds", "2"]
        + TINY_RUN
        + ["--out", str(out)]
    )
    saved = json.loads((out / "results.json").read_text())
    assert saved["dataset"] == "reuters10k"
    assert saved["n_train"] == 120
    assert saved["config"]["n_clusters"] == 4
    assert saved["config"]["encoder_widths"] == [100, 500]
    assert len(saved["scores"]["train"]) == 2
    assert 0.25 <= saved["summary"]["train"]["acc"]["mean"] <= 1.0


def test_newsgroups_experiment_end_to_end(tmp_path):
    write_cai_mat(tmp_path / "20newsgroups", n_documents=90)
    out = tmp_path / "run"
    newsgroups.main(
        ["--data-dir", str(tmp_path), "--newsgroups-source", "mat", "--seeds", "1"]
        + TINY_RUN
        + ["--set", "n_clusters=5", "--out", str(out)]
    )
    saved = json.loads((out / "results.json").read_text())
    assert saved["n_train"] == 60
    assert saved["n_test"] == 30
    assert set(saved["scores"]) == {"train_before", "train", "test"}
