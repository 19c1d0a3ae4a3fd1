"""PNG figures of a run: training curves, a 2-D latent map and a confusion matrix.

Every function builds a bare `matplotlib.figure.Figure`, which saves PNGs
through the Agg canvas, so no display is needed and pyplot's global state and
backend are left untouched. Each returns the path it wrote.
"""

from __future__ import annotations

import json
import os
import pathlib
from collections.abc import Sequence
from typing import Any

import matplotlib
import numpy as np
import scipy.optimize
from matplotlib.figure import Figure
from numpy.typing import ArrayLike

from dcan_jax import metrics

PathLike = str | os.PathLike
EMBEDDINGS = ("tsne", "umap")

# (panel title, metric names) of the training-curve figure; absent metrics are skipped.
_CURVE_PANELS = (
    ("Discriminator and encoder losses", ("discriminator_loss", "encoder_loss")),
    ("Reconstruction loss (MSE)", ("reconstruction_loss",)),
    ("Mean discriminator output", ("d_positive", "d_encoded")),
    ("Cluster size / sample size", ("min_cluster_fraction", "max_cluster_fraction")),
    ("Agreement with the labels", ("acc", "nmi")),
)


def read_metrics_file(path: PathLike) -> list[dict[str, Any]]:
    """Read a JSONL metrics file: one JSON object per line, each with a "step"."""
    records = []
    with open(path) as f:
        for line_number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as error:
                message = f"{str(path)!r} line {line_number} is not JSON: {error}."
                raise ValueError(message) from error
    return records


def _series(records: Sequence[dict[str, Any]], name: str) -> tuple[np.ndarray, np.ndarray] | None:
    """Return steps `(n_records,)` and values `(n_records, n_seeds)` of one metric."""
    rows = [(r["step"], np.atleast_1d(r[name])) for r in records if name in r]
    if not rows:
        return None
    steps = np.asarray([step for step, _ in rows])
    values = np.stack([values for _, values in rows]).astype(np.float64)
    # A loss that is exactly zero throughout is a term the config switched off.
    if not np.any(values):
        return None
    return steps, values


def plot_training_curves(
    records: Sequence[dict[str, Any]], path: PathLike, title: str = "DCAN training"
) -> pathlib.Path:
    """Plot each metric of `records` against the step, one line per seed.

    Args:
      records: dicts with a "step" and, per metric, a number or a list with one
        value per seed, as in the `metrics.jsonl` file of `dcan-jax fit`.
      path: PNG file to write.
      title: figure title.
    """
    panels = [
        (panel_title, [(name, _series(records, name)) for name in names])
        for panel_title, names in _CURVE_PANELS
    ]
    panels = [(t, [(n, s) for n, s in series if s is not None]) for t, series in panels]
    panels = [(t, series) for t, series in panels if series]
    if not panels:
        raise ValueError("The metrics have no known training curves to plot.")
    fig = Figure(figsize=(7, 2.4 * len(panels)))
    axes = np.atleast_1d(fig.subplots(len(panels), 1, sharex=True))
    for ax, (panel_title, series) in zip(axes, panels, strict=True):
        colors = matplotlib.colormaps["tab10"].colors
        for color, (name, (steps, values)) in zip(colors, series, strict=False):
            for seed_index in range(values.shape[1]):
                label = name if seed_index == 0 else None
                ax.plot(steps, values[:, seed_index], color=color, alpha=0.8, label=label)
        ax.set_title(panel_title, fontsize=10)
        ax.legend(fontsize=8, loc="best")
        ax.grid(alpha=0.3)
    n_seeds = max(s[1][1].shape[1] for _, series in panels for s in series)
    axes[-1].set_xlabel(f"DCAN step ({n_seeds} seed{'s' if n_seeds > 1 else ''}, one line each)")
    fig.suptitle(title)
    return _save(fig, path)


def embed_2d(
    z: ArrayLike, method: str = "tsne", random_state: int = 0, perplexity: float = 30.0
) -> np.ndarray:
    """Map latent points `(n_samples, latent_size)` to `(n_samples, 2)` by t-SNE or UMAP.

    Raises:
      ValueError: for an unknown method.
      ImportError: for "umap" without the umap-learn package.
    """
    z = np.asarray(z, np.float64)
    if method not in EMBEDDINGS:
        raise ValueError(f"method={method!r} is not supported; choose one of {list(EMBEDDINGS)}.")
    if z.shape[1] == 1:
        return np.column_stack([z[:, 0], np.zeros(z.shape[0])])
    if z.shape[1] == 2:
        return z
    if method == "umap":
        try:
            import umap
        except ImportError as error:
            raise ImportError(
                "method='umap' needs the umap-learn package: pip install umap-learn, "
                "or use method='tsne'."
            ) from error
        return umap.UMAP(random_state=random_state).fit_transform(z)
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits

    # t-SNE requires perplexity < n_samples.
    perplexity = min(perplexity, max(1.0, (z.shape[0] - 1) / 3))
    tsne = TSNE(perplexity=perplexity, init="pca", random_state=random_state)
    # One OpenMP thread: on a busy 2-core machine, 300 points took 16.5 s with
    # scikit-learn 1.9's default threads and 1.2 s with one.
    with threadpool_limits(limits=1, user_api="openmp"):
        return tsne.fit_transform(z)


def subsample(n_samples: int, max_points: int, random_state: int = 0) -> np.ndarray:
    """Return sorted row indices of at most `max_points` rows, drawn without replacement."""
    if n_samples <= max_points:
        return np.arange(n_samples)
    rng = np.random.default_rng(random_state)
    return np.sort(rng.choice(n_samples, max_points, replace=False))


def _scatter(
    ax, points: np.ndarray, labels: np.ndarray, title: str, colors: dict | None = None
) -> None:
    """Scatter `points` by label; `colors` maps some labels to colour indices."""
    values = np.unique(labels)
    color_index = dict(colors or {})
    for value in values:
        color_index.setdefault(value.item(), max(color_index.values(), default=-1) + 1)
    cmap = matplotlib.colormaps["tab10" if len(color_index) <= 10 else "tab20"]
    for value in values:
        mask = labels == value
        color = cmap(color_index[value.item()] % cmap.N)
        ax.scatter(*points[mask].T, s=6, color=color, label=str(value), alpha=0.8)
    ax.set_title(title, fontsize=10)
    ax.set_xticks([])
    ax.set_yticks([])
    if values.size <= 20:
        ax.legend(fontsize=7, markerscale=2, loc="best", ncol=2 if values.size > 10 else 1)


def plot_latent_map(
    points: ArrayLike,
    clusters: ArrayLike,
    path: PathLike,
    classes: ArrayLike | None = None,
    title: str = "Latent space",
) -> pathlib.Path:
    """Scatter 2-D points coloured by cluster and, when given, by class side by side.

    With classes, each cluster takes the colour of the class it is matched to by
    the Hungarian method, so agreeing panels look alike.

    Args:
      points: 2-D coordinates, shape `(n_samples, 2)`, e.g. from `embed_2d`.
      clusters: cluster of each point, shape `(n_samples,)`.
      path: PNG file to write.
      classes: ground-truth class of each point, shape `(n_samples,)`, or `None`.
      title: figure title.
    """
    points = np.asarray(points)
    n_panels = 1 if classes is None else 2
    fig = Figure(figsize=(5.5 * n_panels, 5))
    axes = fig.subplots(1, n_panels, squeeze=False)
    clusters = np.asarray(clusters)
    colors = None
    if classes is not None:
        colors = match_clusters(classes, clusters)
    _scatter(axes[0, 0], points, clusters, "coloured by cluster", colors)
    if classes is not None:
        _scatter(axes[0, 1], points, np.asarray(classes), "coloured by class")
    fig.suptitle(title)
    return _save(fig, path)


def match_clusters(labels_true: ArrayLike, labels_pred: ArrayLike) -> dict[Any, int]:
    """Map each cluster value to the index of its Hungarian-matched class.

    Classes are indexed in sorted order. With more clusters than classes, the
    surplus clusters are missing from the result.
    """
    table = metrics.contingency_matrix(labels_true, labels_pred)
    clusters = np.unique(np.asarray(labels_pred))
    size = max(table.shape)
    square = np.zeros((size, size), np.int64)
    square[: table.shape[0], : table.shape[1]] = table
    # Rows come back sorted, so cols[i] is the cluster matched to class i; rows and
    # columns beyond the table are padding.
    _, cols = scipy.optimize.linear_sum_assignment(square, maximize=True)
    return {
        clusters[col].item(): class_index
        for class_index, col in enumerate(cols[: table.shape[0]])
        if col < table.shape[1]
    }


def matched_confusion_matrix(
    labels_true: ArrayLike, labels_pred: ArrayLike
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Order the clusters of the contingency table by their Hungarian-matched class.

    Returns:
      The table `(n_classes, n_clusters)` with columns sorted by matched class
      (unmatched clusters last), the sorted class values and the cluster value
      of each column.
    """
    table = metrics.contingency_matrix(labels_true, labels_pred)
    classes = np.unique(np.asarray(labels_true))
    clusters = np.unique(np.asarray(labels_pred))
    matched = match_clusters(labels_true, labels_pred)
    unmatched = table.shape[0] + np.arange(clusters.size)
    rank = [matched.get(c.item(), unmatched[i]) for i, c in enumerate(clusters)]
    order = np.argsort(rank, kind="stable")
    return table[:, order], classes, clusters[order]


def plot_confusion_matrix(
    labels_true: ArrayLike, labels_pred: ArrayLike, path: PathLike, title: str | None = None
) -> pathlib.Path:
    """Draw the class-by-cluster counts with clusters in Hungarian-matched order.

    The diagonal contains the matched pairs, so its sum over the total is the
    clustering accuracy shown in the title.
    """
    table, classes, clusters = matched_confusion_matrix(labels_true, labels_pred)
    accuracy = metrics.cluster_accuracy(labels_true, labels_pred)
    size = max(4.0, 0.45 * max(table.shape) + 2.0)
    fig = Figure(figsize=(size + 1.0, size))
    ax = fig.subplots()
    image = ax.imshow(table, cmap="Blues")
    fig.colorbar(image, ax=ax, label="samples")
    if table.size <= 400:
        threshold = table.max() / 2.0
        for (i, j), count in np.ndenumerate(table):
            color = "white" if count > threshold else "black"
            ax.text(j, i, str(count), ha="center", va="center", fontsize=7, color=color)
    ax.set_xticks(range(table.shape[1]), [str(c) for c in clusters])
    ax.set_yticks(range(table.shape[0]), [str(c) for c in classes])
    ax.set_xlabel("cluster, ordered by matched class")
    ax.set_ylabel("class")
    ax.set_title(title or f"Confusion matrix after Hungarian matching, ACC {accuracy:.3f}")
    return _save(fig, path)


def _save(fig, path: PathLike) -> pathlib.Path:
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path
