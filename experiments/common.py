"""The command line, run loop and results files shared by every experiment.

Each experiment module supplies a dataset loader and a default config name.
`main` parses the shared options and trains all seeds in one vmapped program.
It scores each seed on the training split and, when there is one, on the
held-out split. It prints a table and writes `results.json`, `history.npz` and
`curves.png` to the output directory.
"""

from __future__ import annotations

import argparse
import ast
import datetime
import json
import logging
import os
import pathlib
import platform
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from dcan_jax import config as config_lib
from dcan_jax import metrics, plots, train
from dcan_jax.data import Dataset
from experiments import pretraining

logger = logging.getLogger("experiments")

LoadFn = Callable[[argparse.Namespace], Dataset]


def build_parser(description: str, default_config: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument(
        "--data-dir",
        default=None,
        help="folder holding one subfolder per dataset; defaults to $DCAN_JAX_DATA",
    )
    parser.add_argument(
        "--tfds-dir", default=None, help="TFDS data directory; defaults to $TFDS_DATA_DIR"
    )
    parser.add_argument(
        "--download",
        action="store_true",
        help="let TFDS download the dataset when no local copy is found (needs internet)",
    )
    parser.add_argument(
        "--config",
        default=default_config,
        help=f"config name ({', '.join(config_lib.config_names())}) or a JSON file of overrides",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one config field, e.g. --set n_steps=1000 (repeatable)",
    )
    parser.add_argument("--seeds", type=int, default=1, help="number of seeds, run vmapped")
    parser.add_argument("--first-seed", type=int, default=0, help="first seed of the range")
    parser.add_argument(
        "--split",
        choices=("train", "all"),
        default="train",
        help="train: fit on the training split and also report the held-out split; "
        "all: fit and evaluate on train and test together",
    )
    parser.add_argument(
        "--subset",
        type=int,
        default=None,
        help="use this many training samples, drawn with a fixed seed",
    )
    parser.add_argument(
        "--out",
        default=None,
        help="output directory; defaults to runs/<dataset>-<config>-<timestamp>",
    )
    parser.add_argument(
        "--cache-dir",
        default="runs/cache",
        help="folder where pretrained autoencoders are cached per seed and reused",
    )
    parser.add_argument(
        "--device",
        choices=("auto", "cpu", "gpu", "tpu"),
        default="auto",
        help="device platform; auto uses a GPU or TPU when JAX sees one",
    )
    return parser


def parse_overrides(items: Sequence[str]) -> dict[str, Any]:
    """Parse `KEY=VALUE` strings; values are Python literals or plain strings."""
    overrides = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--set {item!r} should look like KEY=VALUE, e.g. n_steps=1000.")
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            value = text
        overrides[key.strip()] = tuple(value) if isinstance(value, list) else value
    return overrides


def resolve_config(name_or_path: str, overrides: dict[str, Any]) -> config_lib.DCANConfig:
    if name_or_path.endswith(".json"):
        config = config_lib.load_config_file(name_or_path)
    else:
        config = config_lib.get_config(name_or_path)
    return config.replace(**overrides) if overrides else config


def write_json_atomic(path: pathlib.Path, payload: dict[str, Any]) -> None:
    """Write JSON through a temporary file and a rename, so readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, suffix=".tmp") as f:
        json.dump(payload, f, indent=2)
        f.flush()
        os.fsync(f.fileno())
    os.replace(f.name, path)


def summarize(values: Sequence[float]) -> dict[str, float]:
    return {"mean": float(np.mean(values)), "std": float(np.std(values))}


def _evaluate_split(state, x, y) -> list[dict[str, float]]:
    labels = train.predict(state, x)
    return [metrics.evaluate(y, seed_labels) for seed_labels in labels]


def starting_state(result: train.FitResult, x: np.ndarray):
    """Return the state before DCAN, refined as the trained state was.

    The trained clustering ends with `final_cluster_iters` E-M iterations over
    all training points. The same iterations on the pretrained encoding give
    the starting point, so the difference between the two comes from the DCAN
    steps alone.
    """
    state = result.initial_state
    if state.config.final_cluster_iters == 0:
        return state
    refine = train.compiled_phases(state.config)["refine"]
    return refine(state, jnp.asarray(x, jnp.float32))


def evaluate_result(result: train.FitResult, dataset: Dataset) -> dict[str, Any]:
    """Score the starting and final clustering of every seed against the labels."""
    if dataset.y_train is None:
        return {}
    start = starting_state(result, dataset.x_train)
    scores = {
        "train_before": _evaluate_split(start, dataset.x_train, dataset.y_train),
        "train": _evaluate_split(result.state, dataset.x_train, dataset.y_train),
    }
    if dataset.x_test is not None and dataset.y_test is not None:
        scores["test"] = _evaluate_split(result.state, dataset.x_test, dataset.y_test)
    return scores


class CurveRecorder:
    """Scores a fixed labelled sample after every chunk, for training curves.

    The scores are for plots only; nothing in training reads them.
    """

    def __init__(self, dataset: Dataset, max_points: int = 10_000, seed: int = 0):
        rows = np.random.default_rng(seed).permutation(dataset.x_train.shape[0])[:max_points]
        self.x = dataset.x_train[np.sort(rows)]
        self.y = dataset.y_train[np.sort(rows)]
        self.curves: dict[str, list] = {"step": [], "acc": [], "nmi": []}

    def record(self, state, step: int) -> None:
        labels = train.predict(state, self.x)
        self.curves["step"].append(step)
        self.curves["acc"].append([metrics.cluster_accuracy(self.y, p) for p in labels])
        self.curves["nmi"].append([metrics.normalized_mutual_info(self.y, p) for p in labels])

    def record_start(self, state) -> None:
        """Score the state before the first step and put it first."""
        self.record(state, 0)
        for values in self.curves.values():
            values.insert(0, values.pop())

    def __call__(self, state, chunk: dict[str, np.ndarray]) -> None:
        self.record(state, int(np.asarray(state.step).reshape(-1)[0]))


def curve_records(history: dict[str, np.ndarray], curves: dict[str, list]) -> list[dict]:
    """Merge per-step metrics and per-chunk scores into records for `plots`."""
    n_steps = next(iter(history.values())).shape[1] if history else 0
    records = [
        {"step": i + 1, **{name: values[:, i].tolist() for name, values in history.items()}}
        for i in range(n_steps)
    ]
    for index, step in enumerate(curves.get("step", [])):
        records.append({"step": step, "acc": curves["acc"][index], "nmi": curves["nmi"][index]})
    return records


def format_table(scores: dict[str, list[dict[str, float]]], seeds: Sequence[int]) -> str:
    columns = [(split, name) for split in scores for name in ("acc", "nmi", "ari")]
    header = "seed  " + "  ".join(f"{split}.{name:<3}".rjust(16) for split, name in columns)
    lines = [header]
    for i, seed in enumerate(seeds):
        row = "  ".join(f"{scores[split][i][name]:16.4f}" for split, name in columns)
        lines.append(f"{seed:<4}  {row}")
    means = "  ".join(
        f"{np.mean([s[name] for s in scores[split]]):9.4f}"
        f"±{np.std([s[name] for s in scores[split]]):.3f}"
        for split, name in columns
    )
    lines.append(f"mean  {means}")
    return "\n".join(lines)


def _select_device(platform_name: str) -> None:
    if platform_name == "auto":
        return
    try:
        device = jax.devices(platform_name)[0]
    except RuntimeError as error:
        raise SystemExit(
            f"--device {platform_name}: JAX sees no {platform_name} ({error}); "
            "use --device auto or cpu."
        ) from error
    jax.config.update("jax_default_device", device)


def _log_progress(step: int, values: dict[str, float]) -> None:
    logger.info(
        "step %d  d_loss %.4f  e_loss %.4f  recon %.4f  D(z+) %.3f  D(E(x)) %.3f  "
        "cluster fraction min %.3f max %.3f",
        step,
        values["discriminator_loss"],
        values["encoder_loss"],
        values["reconstruction_loss"],
        values["d_positive"],
        values["d_encoded"],
        values["min_cluster_fraction"],
        values["max_cluster_fraction"],
    )


def run(dataset: Dataset, config: config_lib.DCANConfig, args: argparse.Namespace) -> dict:
    """Train, evaluate and write results; returns the results payload."""
    if args.seeds < 1:
        raise SystemExit(f"--seeds {args.seeds} should be >= 1.")
    if args.split == "all":
        dataset = dataset.merged()
    if args.subset is not None:
        dataset = dataset.subset(args.subset)
    seeds = tuple(range(args.first_seed, args.first_seed + args.seeds))
    config_name = pathlib.Path(args.config).stem
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = pathlib.Path(args.out or f"runs/{dataset.name}-{config_name}-{stamp}")
    logger.info(
        "Training %s on %d x %d (%s) with config %s, seeds %s, device %s",
        dataset.name,
        *dataset.x_train.shape,
        dataset.source,
        config_name,
        list(seeds),
        jax.devices()[0].platform,
    )

    recorder = CurveRecorder(dataset) if dataset.y_train is not None else None
    start = time.perf_counter()
    pretrained = None
    if config.pretrain_epochs > 0:
        pretrained = pretraining.pretrained_autoencoders(dataset, config, seeds, args.cache_dir)
    result = train.fit(
        dataset.x_train,
        config,
        seeds,
        log_fn=_log_progress,
        on_chunk=recorder,
        pretrained=pretrained,
    )
    if recorder is not None:
        recorder.record_start(result.initial_state)
    scores = evaluate_result(result, dataset)
    wall_seconds = time.perf_counter() - start

    payload = {
        "dataset": dataset.name,
        "data_source": dataset.source,
        "split": args.split,
        "n_train": int(dataset.x_train.shape[0]),
        "n_test": 0 if dataset.x_test is None else int(dataset.x_test.shape[0]),
        "config_name": config_name,
        "config": config.to_dict(),
        "seeds": list(seeds),
        "scores": scores,
        "curves": recorder.curves if recorder is not None else {},
        "summary": {
            split: {name: summarize([s[name] for s in per_seed]) for name in per_seed[0]}
            for split, per_seed in scores.items()
        },
        "wall_seconds": wall_seconds,
        "compile_seconds": result.compile_seconds,
        "device": str(jax.devices()[0]),
        "versions": {"jax": jax.__version__, "python": platform.python_version()},
        "command": " ".join(sys.argv),
    }
    write_json_atomic(out / "results.json", payload)
    np.savez(out / "history.npz", **result.history)
    title = f"DCAN on {dataset.name}, config {config_name}"
    plots.plot_training_curves(
        curve_records(result.history, payload["curves"]), out / "curves.png", title
    )
    if scores:
        print(format_table(scores, seeds))
    print(
        f"wall time {wall_seconds:.1f} s (compile {result.compile_seconds:.1f} s); "
        f"results in {out / 'results.json'}"
    )
    return payload


def main(
    load: LoadFn,
    description: str,
    default_config: str,
    argv=None,
    add_arguments: Callable[[argparse.ArgumentParser], None] | None = None,
) -> dict:
    """Parse options, load the data with `load(args)` and run the experiment.

    `add_arguments`, when given, adds an experiment's own options to the parser.
    """
    parser = build_parser(description, default_config)
    if add_arguments is not None:
        add_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    _select_device(args.device)
    try:
        config = resolve_config(args.config, parse_overrides(args.set))
        dataset = load(args)
        return run(dataset, config, args)
    except (ValueError, TypeError, FileNotFoundError) as error:
        parser.exit(2, f"error: {error}\n")
    except train.TrainingDivergedError as error:
        parser.exit(3, f"error: {error}\n")
