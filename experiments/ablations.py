"""DCAN ablations: `python -m experiments.ablations --dataset mnist --seeds 5`.

Each row changes one setting of the `default` config and trains every seed in
one vmapped program. All rows start from the same pretrained autoencoder per
seed (cached on disk), so a row's difference from the `default` row comes from
the DCAN phase alone. Scores before DCAN (k-means on the pretrained latent
space) and after are reported per seed, on the training split and the held-out
split. Labels are used only for scoring.
"""

from __future__ import annotations

import argparse
import json
import logging
import pathlib
import time
from typing import Any

from dcan_jax import config as config_lib
from dcan_jax import train
from dcan_jax.data import load_image_dataset
from experiments import common, pretraining

logger = logging.getLogger("experiments.ablations")

# One change from the default per row; the name says what changed.
ROWS: dict[str, dict[str, Any]] = {
    "default": {},
    "no adversarial term (autoencoder only)": {"adversarial_weight": 0.0},
    "discriminator sees points over the total spread": {"discriminator_input": "total"},
    "total spread, positives at the cluster's own spread": {
        "discriminator_input": "total",
        "positive_scale": 1.0,
    },
    "discriminator sees points over their cluster's spread": {"discriminator_input": "cluster"},
    "unconditioned discriminator": {"condition_discriminator": False},
    "reconstruction weight 1": {"reconstruction_weight": 1.0},
    "reconstruction weight 49": {"reconstruction_weight": 49.0},
    "encoder learning rate 3e-4": {"learning_rate": 3e-4},
    "discriminator learning rate 1e-4": {"discriminator_learning_rate": 1e-4},
    "ReLU discriminator": {"discriminator_activation": "relu"},
    "saturating encoder loss": {"encoder_loss": "saturating"},
    "one E-M step per iteration (momentum 0)": {"cluster_momentum": 0.0},
    "GMM instead of k-means": {"cluster_method": "gmm"},
    "running cluster statistics from the minibatches": {"cluster_update": "running"},
    "adversarial weight 4": {"adversarial_weight": 4.0},
    "adversarial weight 16": {"adversarial_weight": 16.0},
    "positives at 0.1 of the cluster's spread": {"positive_scale": 0.1},
    "discriminator learning rate 3e-4": {"discriminator_learning_rate": 3e-4},
    "discriminator learning rate 1e-2": {"discriminator_learning_rate": 1e-2},
    "discriminator width 256": {"discriminator_widths": (256,)},
    "k-means start on all points, 10 restarts of 100 iterations": {
        "init_cluster_sample_size": 60_000,
        "init_cluster_restarts": 10,
        "init_cluster_iters": 100,
    },
    "2,000 steps": {"n_steps": 2000},
    "2,000 steps without the adversarial term": {"n_steps": 2000, "adversarial_weight": 0.0},
}


def run_row(dataset, config, seeds, pretrained) -> dict[str, Any]:
    start = time.perf_counter()
    result = train.fit(dataset.x_train, config, seeds, pretrained=pretrained)
    seconds = time.perf_counter() - start
    scores = common.evaluate_result(result, dataset)
    return {
        "config": config.to_dict(),
        "scores": scores,
        "summary": {
            split: {name: common.summarize([s[name] for s in per_seed]) for name in per_seed[0]}
            for split, per_seed in scores.items()
        },
        "seconds": seconds,
        "final_metrics": {name: values[:, -1].tolist() for name, values in result.history.items()},
    }


def format_rows(rows: dict[str, dict[str, Any]]) -> str:
    lines = [
        "| row | ACC before | ACC train | ACC test | NMI test | ARI test |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, row in rows.items():
        summary = row["summary"]

        def cell(split, metric, summary=summary):
            if split not in summary:
                return "-"
            return f"{summary[split][metric]['mean']:.4f} ± {summary[split][metric]['std']:.4f}"

        lines.append(
            f"| {name} | {cell('train_before', 'acc')} | {cell('train', 'acc')} | "
            f"{cell('test', 'acc')} | {cell('test', 'nmi')} | {cell('test', 'ari')} |"
        )
    return "\n".join(lines)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--dataset", choices=("mnist", "fashion-mnist"), default="mnist")
    parser.add_argument("--data-dir", default=None, help="defaults to $DCAN_JAX_DATA")
    parser.add_argument("--config", default="default", help="base config name")
    parser.add_argument("--seeds", type=int, default=5, help="number of seeds, run vmapped")
    parser.add_argument(
        "--rows", nargs="*", default=None, help=f"row names to run; default all: {list(ROWS)}"
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a field of the base config for every row",
    )
    parser.add_argument("--out", default="runs/ablations", help="output directory")
    parser.add_argument(
        "--cache-dir", default="runs/cache", help="folder for pretrained autoencoders"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")

    base = config_lib.get_config(args.config, **common.parse_overrides(args.set))
    dataset = load_image_dataset(args.dataset, data_dir=args.data_dir, allow_embedded=False)
    seeds = tuple(range(args.seeds))
    names = args.rows or list(ROWS)
    unknown = sorted(set(names) - set(ROWS))
    if unknown:
        parser.error(f"unknown rows {unknown}; choose from {list(ROWS)}")
    pretrained = pretraining.pretrained_autoencoders(dataset, base, seeds, args.cache_dir)

    out = pathlib.Path(args.out)
    results_path = out / f"ablations-{args.dataset}.json"
    rows = json.loads(results_path.read_text()) if results_path.is_file() else {}
    for name in names:
        config = base.replace(**ROWS[name])
        logger.info("Row %r: %s", name, ROWS[name] or "the base config")
        rows[name] = run_row(dataset, config, seeds, pretrained)
        rows[name]["seeds"] = list(seeds)
        common.write_json_atomic(results_path, rows)
        logger.info("Row %r done in %.0f s", name, rows[name]["seconds"])
    table = format_rows({name: rows[name] for name in names})
    print(table)
    return rows


if __name__ == "__main__":
    main()
