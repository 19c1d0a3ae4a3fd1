"""Figures: Hungarian ordering, embeddings and PNG output, on small made-up labels."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from dcan_jax import plots


def test_confusion_columns_follow_matched_classes():
    table, classes, clusters = plots.matched_confusion_matrix(
        [0, 0, 1, 1, 2, 2], [2, 2, 0, 0, 1, 1]
    )
    np.testing.assert_array_equal(clusters, [2, 0, 1])
    np.testing.assert_array_equal(classes, [0, 1, 2])
    np.testing.assert_array_equal(np.diag(table), [2, 2, 2])


def test_surplus_clusters_come_last():
    table, _, clusters = plots.matched_confusion_matrix([0, 0, 1, 1, 1], [9, 5, 7, 7, 9])
    assert plots.match_clusters([0, 0, 1, 1, 1], [9, 5, 7, 7, 9]) == {5: 0, 7: 1}
    np.testing.assert_array_equal(clusters, [5, 7, 9])
    np.testing.assert_array_equal(table, [[1, 0, 1], [0, 2, 1]])


def test_missing_clusters_skip_classes():
    matched = plots.match_clusters([0, 1, 2, 2], [4, 4, 8, 8])
    assert matched[8] == 2
    assert matched[4] in (0, 1)
    _, _, clusters = plots.matched_confusion_matrix([0, 1, 2, 2], [4, 4, 8, 8])
    np.testing.assert_array_equal(clusters, [4, 8])


def test_figures_are_written(tmp_path):
    rng = np.random.default_rng(0)
    records = [
        {"step": step, "discriminator_loss": [1.0, 1.1], "acc": [0.5, 0.6]} for step in (10, 20)
    ]
    curves = plots.plot_training_curves(records, tmp_path / "curves.png")
    points = rng.normal(size=(30, 2))
    labels = rng.integers(0, 3, 30)
    latent = plots.plot_latent_map(points, labels, tmp_path / "latent.png", classes=labels)
    confusion = plots.plot_confusion_matrix(labels, labels, tmp_path / "confusion.png")
    for path in (curves, latent, confusion):
        assert path.read_bytes().startswith(b"\x89PNG")


def test_curves_need_a_known_metric(tmp_path):
    with pytest.raises(ValueError, match="no known training curves"):
        plots.plot_training_curves([{"step": 1, "other": 2.0}], tmp_path / "c.png")
    # An all-zero loss is a switched-off term and is not plotted either.
    with pytest.raises(ValueError, match="no known training curves"):
        plots.plot_training_curves([{"step": 1, "reconstruction_loss": 0.0}], tmp_path / "c.png")


def test_embedding_shapes():
    z = np.random.default_rng(0).normal(size=(40, 3))
    assert plots.embed_2d(z).shape == (40, 2)
    np.testing.assert_array_equal(plots.embed_2d(z[:, :2]), z[:, :2])
    assert plots.embed_2d(z[:, :1]).shape == (40, 2)
    with pytest.raises(ValueError, match="method='pca' is not supported"):
        plots.embed_2d(z, method="pca")


def test_umap_without_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "umap", None)
    with pytest.raises(ImportError, match="pip install umap-learn"):
        plots.embed_2d(np.zeros((10, 3)), method="umap")


def test_metrics_file_with_a_broken_line(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 10}\n{"step": 2\n')
    with pytest.raises(ValueError, match="line 2 is not JSON"):
        plots.read_metrics_file(path)
