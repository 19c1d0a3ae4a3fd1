"""k-means on the tf-idf input of a text experiment, as a reference for DCAN.

`python -m experiments.kmeans_text newsgroups --data-dir DIR --seeds N` loads
the data exactly as `experiments.newsgroups` does (likewise `reuters10k`), fits
scikit-learn's `KMeans` (k-means++ seeding, `random_state` = seed) on the
training split with K = the number of training classes, and scores the
training split and, where there is one, the held-out split assigned with
`predict`. It prints the same table as the DCAN experiments and writes
`results.json`.
"""

from __future__ import annotations

import argparse
import logging
import pathlib
import platform
import sys
import time

import numpy as np
import sklearn
from sklearn.cluster import KMeans

from dcan_jax import metrics
from experiments import common
from experiments import newsgroups as newsgroups_experiment
from experiments import reuters10k as reuters_experiment

EXPERIMENTS = {"newsgroups": newsgroups_experiment, "reuters10k": reuters_experiment}


def build_parser() -> argparse.ArgumentParser:
    shared = argparse.ArgumentParser(add_help=False)
    shared.add_argument(
        "--data-dir",
        default=None,
        help="folder holding one subfolder per dataset; defaults to $DCAN_JAX_DATA",
    )
    shared.add_argument("--seeds", type=int, default=1, help="number of seeds")
    shared.add_argument("--first-seed", type=int, default=0, help="first seed of the range")
    shared.add_argument("--n-init", type=int, default=1, help="k-means++ restarts per seed")
    shared.add_argument("--out", default=None, help="output directory for results.json")
    parser = argparse.ArgumentParser(
        description="Fit scikit-learn k-means on a text experiment's tf-idf features."
    )
    # One subcommand per dataset, each with its experiment's own source options.
    datasets = parser.add_subparsers(dest="dataset", required=True)
    for name, experiment in EXPERIMENTS.items():
        subparser = datasets.add_parser(
            name, parents=[shared], formatter_class=argparse.ArgumentDefaultsHelpFormatter
        )
        experiment.add_arguments(subparser)
    return parser


def fit_kmeans(dataset, n_clusters: int, seeds, n_init: int) -> dict[str, list]:
    """Fit one k-means per seed on the training split and score each split."""
    scores = {"train": []}
    if dataset.x_test is not None:
        scores["test"] = []
    for seed in seeds:
        model = KMeans(n_clusters, n_init=n_init, random_state=seed).fit(dataset.x_train)
        scores["train"].append(metrics.evaluate(dataset.y_train, model.labels_))
        if dataset.x_test is not None:
            scores["test"].append(metrics.evaluate(dataset.y_test, model.predict(dataset.x_test)))
    return scores


def main(argv=None) -> dict:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if args.seeds < 1 or args.n_init < 1:
        parser.error(f"--seeds {args.seeds} and --n-init {args.n_init} should both be >= 1.")
    try:
        dataset = EXPERIMENTS[args.dataset].load(args)
    except (ValueError, TypeError, FileNotFoundError) as error:
        parser.exit(2, f"error: {error}\n")
    if dataset.y_train is None:
        parser.exit(2, f"error: {dataset.source} has no labels to score k-means against.\n")
    n_clusters = int(np.unique(dataset.y_train).size)
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))

    start = time.perf_counter()
    scores = fit_kmeans(dataset, n_clusters, seeds, args.n_init)
    wall_seconds = time.perf_counter() - start

    payload = {
        "dataset": dataset.name,
        "data_source": dataset.source,
        "method": "sklearn.cluster.KMeans",
        "n_clusters": n_clusters,
        "n_init": args.n_init,
        "n_train": int(dataset.x_train.shape[0]),
        "n_test": 0 if dataset.x_test is None else int(dataset.x_test.shape[0]),
        "seeds": seeds,
        "scores": scores,
        "summary": {
            split: {name: common.summarize([s[name] for s in per_seed]) for name in per_seed[0]}
            for split, per_seed in scores.items()
        },
        "wall_seconds": wall_seconds,
        "versions": {"sklearn": sklearn.__version__, "python": platform.python_version()},
        "command": " ".join(sys.argv),
    }
    out = pathlib.Path(args.out or f"runs/{dataset.name}-kmeans-{time.strftime('%Y%m%d-%H%M%S')}")
    common.write_json_atomic(out / "results.json", payload)
    print(common.format_table(scores, seeds))
    print(f"wall time {wall_seconds:.1f} s; results in {out / 'results.json'}")
    return payload


if __name__ == "__main__":
    main()
