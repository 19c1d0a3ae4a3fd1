"""Label-free choice among k-means partitions of a pretrained latent space.

    python -m experiments.start_selection --dataset mnist --seeds 10 --restarts 20

DCAN refines the k-means partition it starts from, so a better start could
come from choosing among several k-means runs by a label-free criterion. For
each seed this encodes the training split with the seed's pretrained `default`
autoencoder (from the cache that the other experiments share), runs
`--restarts` k-means fits of one k-means++ seeding each, and scores every
partition by four label-free criteria:

- inertia (lower is better), the k-means objective and the usual choice;
- the Calinski-Harabasz index (higher is better);
- the silhouette score on a random sample of `--sample` points (higher is
  better);
- consensus, the mean adjusted Rand index to the other partitions (higher is
  better): the partition most runs agree with.

It reports the ACC of the partition each criterion picks, next to the mean,
worst and best ACC over all partitions. Labels are used only for those scores;
the best column is an upper bound that no label-free rule can beat. Results go
to `<out>/start-selection-<dataset>.json` after every seed.
"""

from __future__ import annotations

import argparse
import logging
import pathlib
import time
from typing import Any

import jax
import numpy as np
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score, calinski_harabasz_score, silhouette_score

from dcan_jax import metrics, nets
from dcan_jax.data import Dataset, load_image_dataset
from experiments import common, pretraining

logger = logging.getLogger("experiments.start_selection")

# Criterion name, the partition score it reads, and whether higher is better.
CRITERIA = (
    ("inertia", "inertia", False),
    ("Calinski-Harabasz", "calinski_harabasz", True),
    ("silhouette", "silhouette", True),
    ("consensus", "consensus", True),
)


def score_partitions(
    z: np.ndarray, y: np.ndarray, n_clusters: int, restarts: int, sample: int, seed: int
) -> list[dict[str, float]]:
    """Fit `restarts` k-means partitions of `z`; return their label-free scores and ACC."""
    rng = np.random.default_rng(seed)
    subset = rng.choice(len(z), size=min(sample, len(z)), replace=False)
    partitions = []
    for restart in range(restarts):
        kmeans = KMeans(
            n_clusters, n_init=1, max_iter=100, random_state=seed * restarts + restart
        ).fit(z)
        partitions.append(
            {
                "labels": kmeans.labels_,
                "inertia": float(kmeans.inertia_),
                "calinski_harabasz": float(calinski_harabasz_score(z, kmeans.labels_)),
                "silhouette": float(silhouette_score(z[subset], kmeans.labels_[subset])),
                "acc": metrics.cluster_accuracy(y, kmeans.labels_),
            }
        )
    for index, partition in enumerate(partitions):
        others = [p["labels"] for i, p in enumerate(partitions) if i != index]
        agreement = [adjusted_rand_score(partition["labels"], labels) for labels in others]
        partition["consensus"] = float(np.mean(agreement)) if agreement else 1.0
    return [{k: v for k, v in p.items() if k != "labels"} for p in partitions]


def pick(partitions: list[dict[str, float]], key: str, higher_is_better: bool) -> dict:
    """Return the partition that `key` ranks first."""
    values = np.array([p[key] for p in partitions])
    return partitions[int(np.argmax(values) if higher_is_better else np.argmin(values))]


def summarize_seed(partitions: list[dict[str, float]]) -> dict[str, float]:
    accs = [p["acc"] for p in partitions]
    row = {"mean": float(np.mean(accs)), "worst": min(accs), "best": max(accs)}
    for name, key, higher in CRITERIA:
        row[name] = pick(partitions, key, higher)["acc"]
    return row


def format_table(rows: dict[str, dict[str, float]]) -> str:
    columns = ["mean", "worst", *[name for name, _, _ in CRITERIA], "best"]
    lines = [
        "| seed | " + " | ".join(columns) + " |",
        "| --- " * (len(columns) + 1) + "|",
    ]
    for seed, row in rows.items():
        lines.append(f"| {seed} | " + " | ".join(f"{row[c]:.4f}" for c in columns) + " |")
    means = {c: np.mean([row[c] for row in rows.values()]) for c in columns}
    lines.append("| mean | " + " | ".join(f"{means[c]:.4f}" for c in columns) + " |")
    return "\n".join(lines)


def run(
    dataset: Dataset,
    config,
    seeds: tuple[int, ...],
    restarts: int,
    sample: int,
    cache_dir: str,
    out: pathlib.Path | None = None,
) -> dict[str, Any]:
    """Score `restarts` k-means partitions per seed; return the per-seed records."""
    autoencoders = pretraining.pretrained_autoencoders(dataset, config, seeds, cache_dir)
    results: dict[str, Any] = {"dataset": dataset.name, "restarts": restarts, "seeds": {}}
    for index, seed in enumerate(seeds):
        begin = time.perf_counter()
        encoder = jax.tree.map(lambda leaf, i=index: leaf[i], autoencoders["encoder"])
        z = np.asarray(nets.apply_encoder(encoder, dataset.x_train, config))
        partitions = score_partitions(z, dataset.y_train, config.n_clusters, restarts, sample, seed)
        results["seeds"][str(seed)] = {
            "summary": summarize_seed(partitions),
            "partitions": partitions,
        }
        logger.info("Seed %d: %d partitions in %.0f s", seed, restarts, time.perf_counter() - begin)
        if out is not None:
            common.write_json_atomic(out / f"start-selection-{dataset.name}.json", results)
    return results


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--dataset", choices=("mnist", "fashion-mnist"), default="mnist")
    parser.add_argument("--data-dir", default=None, help="defaults to $DCAN_JAX_DATA")
    parser.add_argument("--config", default="default", help="config whose autoencoder is used")
    parser.add_argument("--seeds", type=int, default=10, help="number of seeds")
    parser.add_argument("--restarts", type=int, default=20, help="k-means fits per seed")
    parser.add_argument("--sample", type=int, default=5000, help="points for the silhouette")
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="override a config field"
    )
    parser.add_argument("--out", default="runs/start-selection", help="output directory")
    parser.add_argument(
        "--cache-dir", default="runs/cache", help="folder for pretrained autoencoders"
    )
    return parser


def main(argv=None) -> dict[str, Any]:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.restarts < 2:
        parser.error(f"--restarts={args.restarts}: choosing needs at least 2 partitions.")

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    config = common.resolve_config(args.config, common.parse_overrides(args.set))
    dataset = load_image_dataset(args.dataset, data_dir=args.data_dir, allow_embedded=False)
    results = run(
        dataset,
        config,
        tuple(range(args.seeds)),
        args.restarts,
        args.sample,
        args.cache_dir,
        pathlib.Path(args.out),
    )

    print(format_table({s: r["summary"] for s, r in results["seeds"].items()}))
    return results


if __name__ == "__main__":
    main()
