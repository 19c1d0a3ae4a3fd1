"""The `dcan-jax` command line: fit, predict, evaluate and plot.

`dcan-jax fit` trains on a features file and writes a run directory:

  model.dcan          the kept model, for `dcan-jax predict` and `DCAN.load`
  checkpoint.dcan     every seed's training state, for `--resume`
  metrics.jsonl       one JSON line per chunk of `log_every` steps
  labels.npy          the model's cluster of each training sample
  run.json            options, data, seeds, status and final scores
  *.png               training curves, latent map, confusion matrix
  tensorboard/        with `--tensorboard`, one event folder per seed

Exit status: 0 on success, 2 for invalid options or inputs, 3 when training
diverged, 130 when interrupted by Ctrl-C (after saving a checkpoint).
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import datetime
import hashlib
import json
import logging
import os
import pathlib
import shlex
import signal
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from dcan_jax import checkpoint, plots
from dcan_jax import metrics as metrics_lib
from dcan_jax.config import DCANConfig, config_names, get_config
from dcan_jax.data.files import Y_KEYS, load_array_file
from dcan_jax.data.validation import check_labels
from dcan_jax.estimator import DCAN, SCALINGS, SELECTIONS, apply_overrides, predict_all
from dcan_jax.progress import ProgressReporter
from dcan_jax.step import TrainState
from dcan_jax.train import TrainingDivergedError

logger = logging.getLogger("dcan_jax")

EXIT_USAGE = 2
EXIT_DIVERGED = 3
EXIT_INTERRUPTED = 130

MODEL_FILE = "model.dcan"
CHECKPOINT_FILE = "checkpoint.dcan"
METRICS_FILE = "metrics.jsonl"
RUN_FILE = "run.json"
LABELS_FILE = "labels.npy"
CURVES_PNG = "training_curves.png"
LATENT_PNG = "latent_map.png"
CONFUSION_PNG = "confusion_matrix.png"


class UsageError(ValueError):
    """An invalid option or input; reported on stderr with exit status 2."""


def _add_data_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--x-key",
        default=None,
        help="name of the feature array in a .npz or .mat file (default: the first of "
        "x, X, data, features, fea)",
    )
    parser.add_argument(
        "--label-column",
        default=None,
        help="CSV column holding labels, by 0-based index or header name; it is left "
        "out of the features (default: none, every column is a feature)",
    )


def _add_fit_parser(commands) -> None:
    parser = commands.add_parser(
        "fit",
        help="train DCAN on a features file and write a run directory",
        description="Train DCAN on a features file. Labels, when given, are used only to "
        "report ACC/NMI/ARI; they never influence training or the choice of seed.",
    )
    parser.add_argument(
        "data",
        help="features file: .npy (one array), .npz (arrays x and optional y), .csv "
        "(numeric columns, optional header) or .mat; one sample per row",
    )
    _add_data_options(parser)
    parser.add_argument(
        "--labels",
        default=None,
        metavar="FILE",
        help="ground-truth labels for evaluation: .npy, .npz (array y), .csv or .txt with "
        "one label per line (default: the y array or --label-column of the data file, "
        "if present)",
    )
    parser.add_argument(
        "--n-clusters",
        type=int,
        default=None,
        metavar="K",
        help="number of clusters, >= 2 (default: the config's n_clusters, 10 for 'default')",
    )
    parser.add_argument(
        "--config",
        default="default",
        metavar="NAME|FILE",
        help=f"built-in config ({', '.join(config_names())}) or a JSON file of field "
        "overrides on the 'paper' settings (default: default)",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one config field; VALUE is a Python literal, e.g. --set n_steps=500 "
        "--set encoder_widths='(64, 8)'; repeatable (default: none, the config as named)",
    )
    parser.add_argument(
        "--seeds",
        type=int,
        default=1,
        metavar="N",
        help="number of seeds trained together; the model keeps one by --selection (default: 1)",
    )
    parser.add_argument(
        "--first-seed", type=int, default=0, metavar="S", help="seeds are S..S+N-1 (default: 0)"
    )
    parser.add_argument(
        "--selection",
        choices=SELECTIONS,
        default="inertia_ratio",
        help="label-free rule that picks the kept seed, lowest wins: inertia_ratio is the "
        "latent within-cluster over total sum of squares, reconstruction the autoencoder's "
        "mean squared error (default: inertia_ratio)",
    )
    parser.add_argument(
        "--scaling",
        choices=SCALINGS,
        default="minmax",
        help="per-feature input scaling fitted on the data and stored in the model: minmax "
        "to [0, 1], standard to zero mean and unit variance, none (default: minmax)",
    )
    parser.add_argument(
        "--device",
        choices=("auto", "cpu", "gpu", "tpu"),
        default="auto",
        help="device platform; auto uses a GPU or TPU when JAX finds one (default: auto)",
    )
    _add_fit_output_options(parser)


def _add_fit_output_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--out",
        default=None,
        metavar="DIR",
        help="run directory (default: runs/<data file stem>-<YYYYmmdd-HHMMSS>)",
    )
    parser.add_argument(
        "--checkpoint-every",
        type=int,
        default=None,
        metavar="N",
        help="write checkpoint.dcan at the first chunk end at or after every N steps; "
        "chunks are log_every steps long (default: every chunk)",
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue the interrupted run in --out from its checkpoint; pass the same data, "
        "config, --set, --seeds and --first-seed options as the first time",
    )
    parser.add_argument(
        "--tensorboard",
        action="store_true",
        help="also write TensorBoard event files to DIR/tensorboard/seed_<seed> (needs the "
        "tensorboardX package: pip install 'dcan-jax[tensorboard]')",
    )
    parser.add_argument(
        "--plot-points",
        type=int,
        default=2000,
        metavar="N",
        help="samples drawn for the t-SNE latent map (default: 2000)",
    )
    parser.add_argument("--no-plots", action="store_true", help="write no PNG figures")


def _add_predict_parser(commands) -> None:
    parser = commands.add_parser(
        "predict",
        help="assign the samples of a features file to clusters with a saved model",
        description="Apply a saved model (its stored input scaling, encoder and clustering) "
        "to a features file and write one cluster label per sample.",
    )
    parser.add_argument("model", help="a model.dcan file, or the run directory holding one")
    parser.add_argument("data", help="features file (.npy, .npz, .csv or .mat), one sample per row")
    _add_data_options(parser)
    parser.add_argument(
        "--out",
        required=True,
        metavar="FILE",
        help="labels file to write: .npy, or .csv/.txt with one label per line",
    )


def _add_evaluate_parser(commands) -> None:
    parser = commands.add_parser(
        "evaluate",
        help="score predicted labels against ground truth: ACC, NMI and ARI",
        description="Score a clustering against ground-truth classes. ACC uses the best "
        "one-to-one (Hungarian) matching of clusters to classes; NMI is reported with "
        "arithmetic normalisation (scikit-learn's default) and geometric normalisation "
        "(as in DEC-era papers).",
    )
    parser.add_argument("predicted", help="predicted labels: .npy, .npz (y), .csv or .txt")
    parser.add_argument("truth", help="ground-truth labels, in the same formats")
    parser.add_argument(
        "--json",
        default=None,
        metavar="FILE",
        help="also write the scores as JSON to FILE; '-' prints JSON instead of the table "
        "(default: print the table only)",
    )


def _add_plot_parser(commands) -> None:
    parser = commands.add_parser(
        "plot",
        help="draw the figures of a run directory",
        description="Draw training_curves.png, latent_map.png and, with labels, "
        "confusion_matrix.png from a run directory written by 'dcan-jax fit'.",
    )
    parser.add_argument("run_dir", help="run directory written by 'dcan-jax fit'")
    parser.add_argument(
        "--data",
        default=None,
        help="features file for the latent map (default: the file recorded in run.json)",
    )
    parser.add_argument(
        "--labels",
        default=None,
        metavar="FILE",
        help="ground-truth labels (default: those recorded in run.json, if any)",
    )
    parser.add_argument(
        "--max-points",
        type=int,
        default=2000,
        metavar="N",
        help="samples drawn for the latent map (default: 2000)",
    )
    parser.add_argument(
        "--method",
        choices=plots.EMBEDDINGS,
        default="tsne",
        help="2-D embedding of the latent space; umap needs umap-learn (default: tsne)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dcan-jax",
        description="Deep clustering with an adversarial-net clustering loss (DCAN), in JAX.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_fit_parser(commands)
    _add_predict_parser(commands)
    _add_evaluate_parser(commands)
    _add_plot_parser(commands)
    return parser


def parse_overrides(items: Sequence[str]) -> dict[str, Any]:
    """Parse `KEY=VALUE` strings; a VALUE that is no Python literal stays a string."""
    overrides = {}
    for item in items:
        key, separator, text = item.partition("=")
        key = key.strip()
        if not separator or not key:
            raise UsageError(f"--set {item!r} should look like KEY=VALUE, e.g. --set n_steps=500.")
        try:
            value = ast.literal_eval(text.strip())
        except (ValueError, SyntaxError):
            value = text.strip()
        overrides[key] = value
    return overrides


def read_config_file(path: str) -> DCANConfig:
    """Read a JSON object of config fields, applied to the 'paper' settings.

    Keys and value types are checked as for --set, so a wrong type is reported
    with the field's expected type.
    """
    try:
        values = json.loads(pathlib.Path(path).read_text())
    except OSError as error:
        raise UsageError(f"Cannot read config file {path!r}: {error.strerror}.") from error
    except json.JSONDecodeError as error:
        raise UsageError(f"Config file {path!r} is not valid JSON: {error}.") from error
    if not isinstance(values, dict):
        raise UsageError(
            f"Config file {path!r} should contain a JSON object of config fields, e.g. "
            '{"n_steps": 500}, not a JSON ' + type(values).__name__ + "."
        )
    return apply_overrides(get_config("paper"), values)


def resolve_config(args: argparse.Namespace) -> DCANConfig:
    """Build the config from --config, --set and --n-clusters."""
    if args.config.endswith(".json") or os.path.sep in args.config:
        base = read_config_file(args.config)
    else:
        base = get_config(args.config)
    overrides = parse_overrides(args.set)
    if args.n_clusters is not None:
        overrides["n_clusters"] = args.n_clusters
    return apply_overrides(base, overrides)


def _label_column(text: str | None) -> int | str | None:
    if text is None:
        return None
    try:
        return int(text)
    except ValueError:
        return text


def load_features(path: str, args: argparse.Namespace, y_key: str | None = None):
    """Load a features file with the --x-key and --label-column options."""
    return load_array_file(
        path, x_key=args.x_key, y_key=y_key, label_column=_label_column(args.label_column)
    )


def _first_is_header(lines: list[str]) -> bool:
    def is_number(text: str) -> bool:
        try:
            float(text)
        except ValueError:
            return False
        return True

    return len(lines) > 1 and not is_number(lines[0]) and all(is_number(t) for t in lines[1:])


def read_labels(path: str, n_samples: int | None = None) -> np.ndarray:
    """Read labels: .npy, .npz (array y, labels, ...), or .csv/.txt with one per line.

    A CSV's first line is skipped as a header when it is text and every other
    line is a number. Labels are returned as int64 ids (text labels are mapped
    in sorted order).

    Raises:
      UsageError: when the file is missing, unreadable, of another suffix or
        contains a number of labels other than `n_samples`.
    """
    file = pathlib.Path(path)
    if not file.is_file():
        raise UsageError(f"No labels file at {path!r}; check the path.")
    suffix = file.suffix.lower()
    try:
        if suffix == ".npy":
            labels = np.load(file, allow_pickle=False)
        elif suffix == ".npz":
            with np.load(file, allow_pickle=False) as stored:
                names = [name for name in Y_KEYS if name in stored.files]
                if not names:
                    raise UsageError(
                        f"{path!r} contains {sorted(stored.files)} but no labels array named one "
                        f"of {list(Y_KEYS)}; save them with np.savez(path, y=labels)."
                    )
                labels = stored[names[0]]
        elif suffix in (".csv", ".txt"):
            lines = [line.split(",")[0].strip() for line in file.read_text().splitlines()]
            lines = [line for line in lines if line]
            labels = np.asarray(lines[1:] if _first_is_header(lines) else lines)
        else:
            raise UsageError(
                f"{path!r} has the unsupported suffix {file.suffix!r}; write labels as .npy, "
                ".npz, .csv or .txt."
            )
    except (OSError, ValueError, EOFError) as error:
        if isinstance(error, UsageError):
            raise
        raise UsageError(f"Cannot read labels from {path!r}: {error}.") from error
    if labels.dtype.kind in "U":
        try:
            labels = labels.astype(np.float64)
        except ValueError:
            pass
    n_labels = labels.reshape(-1).shape[0]
    if n_samples is not None and n_labels != n_samples:
        raise UsageError(
            f"{path!r} has {n_labels} labels but the data has {n_samples} samples; pass one "
            "label per sample, in the order of the data rows."
        )
    try:
        return check_labels(labels, n_labels, repr(path))
    except (TypeError, ValueError) as error:
        raise UsageError(str(error)) from error


def write_labels(path: str, labels: np.ndarray) -> None:
    """Write labels as .npy, or as .csv/.txt with one per line."""
    suffix = pathlib.Path(path).suffix.lower()
    pathlib.Path(path).parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".npy":
        np.save(path, labels)
    elif suffix in (".csv", ".txt"):
        np.savetxt(path, labels, fmt="%d")
    else:
        raise UsageError(
            f"--out {path!r} has the unsupported suffix {suffix!r}; use .npy, .csv or .txt."
        )


def write_json_atomic(path: pathlib.Path, payload: dict[str, Any]) -> None:
    """Write JSON to a temporary file and rename it over `path`."""
    temp = path.parent / f".{path.name}.{uuid.uuid4().hex}.tmp"
    try:
        temp.write_text(json.dumps(payload, indent=2) + "\n")
        os.replace(temp, path)
    finally:
        if temp.exists():
            temp.unlink()


def fingerprint(x: np.ndarray) -> str:
    """Return the SHA-256 of a float32 feature matrix's shape and bytes."""
    digest = hashlib.sha256(str(x.shape).encode())
    digest.update(np.ascontiguousarray(x, np.float32).tobytes())
    return digest.hexdigest()


class RunRecorder:
    """Writes metrics lines, TensorBoard events and checkpoints after each chunk.

    It is `DCAN.fit_with_callbacks`'s `on_chunk` callback and keeps the latest
    state, so an interrupted run can still save the last completed chunk.
    """

    def __init__(
        self,
        out: pathlib.Path,
        model: DCAN,
        x: np.ndarray,
        y_true: np.ndarray | None,
        checkpoint_metadata: dict[str, Any],
        checkpoint_every: int,
        seeds: Sequence[int],
        tensorboard_writers: list | None,
        start_step: int,
        n_steps: int,
    ):
        self.out = out
        self.model = model
        self.x = x
        self.y_true = y_true
        self.checkpoint_metadata = checkpoint_metadata
        self.checkpoint_every = checkpoint_every
        self.seeds = list(seeds)
        self.writers = tensorboard_writers
        self.n_steps = n_steps
        self.latest_state = None
        self.latest_step = start_step
        # A resumed run's checkpoint already contains its start step.
        self.saved_step: int | None = start_step if start_step > 0 else None
        self._x_scaled = None
        self._start = time.perf_counter()

    def on_chunk(self, state, chunk: dict[str, np.ndarray]) -> None:
        step = int(np.asarray(state.step).reshape(-1)[0])
        self.latest_state, self.latest_step = state, step
        record = {"step": step, "seconds": round(time.perf_counter() - self._start, 3)}
        record["seeds"] = self.seeds
        # Each metric is its mean over the chunk's steps, one value per seed.
        record.update({name: np.mean(v, axis=1).tolist() for name, v in chunk.items()})
        if self.y_true is not None:
            record.update(self._label_scores(state))
        with open(self.out / METRICS_FILE, "a") as f:
            f.write(json.dumps(record) + "\n")
        self._write_tensorboard(record)
        previous = self.saved_step or 0
        if step // self.checkpoint_every > previous // self.checkpoint_every or (
            step == self.n_steps
        ):
            self.save_latest()

    def _label_scores(self, state) -> dict[str, list[float]]:
        if self._x_scaled is None:
            self._x_scaled = self.model.scale_inputs(self.x)
        labels = predict_all(state, self._x_scaled)
        scores = [metrics_lib.evaluate(self.y_true, seed_labels) for seed_labels in labels]
        return {name: [s[name] for s in scores] for name in ("acc", "nmi", "ari")}

    def _write_tensorboard(self, record: dict[str, Any]) -> None:
        if not self.writers:
            return
        for index, writer in enumerate(self.writers):
            for name, values in record.items():
                if isinstance(values, list) and name != "seeds":
                    group = "eval" if name in ("acc", "nmi", "ari") else "train"
                    writer.add_scalar(f"{group}/{name}", values[index], record["step"])
            writer.flush()

    def save_latest(self) -> int | None:
        """Write the latest state to checkpoint.dcan unless it is already there."""
        if self.latest_state is None or self.saved_step == self.latest_step:
            return self.saved_step
        checkpoint.save_state(
            self.out / CHECKPOINT_FILE, self.latest_state, self.checkpoint_metadata
        )
        self.saved_step = self.latest_step
        return self.saved_step


def _open_tensorboard(out: pathlib.Path, seeds: Sequence[int]) -> list:
    try:
        from tensorboardX import SummaryWriter
    except ImportError as error:
        raise UsageError(
            "--tensorboard needs the tensorboardX package; install it with "
            "pip install 'dcan-jax[tensorboard]' (or pip install tensorboardX), or drop "
            "--tensorboard."
        ) from error
    return [SummaryWriter(logdir=str(out / "tensorboard" / f"seed_{seed}")) for seed in seeds]


def _check_resume(path: pathlib.Path, config: DCANConfig, expected: dict[str, Any]) -> TrainState:
    metadata = checkpoint.read_metadata(path)
    saved_config = metadata.get("state", {}).get("config", {})
    changed = sorted(
        name for name, value in config.to_dict().items() if saved_config.get(name) != _json(value)
    )
    if changed:
        raise UsageError(
            f"{path} was written with a different config: fields {changed} differ. Resume "
            "with the --config, --set and --n-clusters options of the first run, or pass a "
            "new --out to start another run."
        )
    saved = metadata.get("user", {})
    for name, option in (
        ("data_sha256", "data file"),
        ("seeds", "--seeds/--first-seed"),
        ("scaling", "--scaling"),
    ):
        if saved.get(name) != expected[name]:
            raise UsageError(
                f"{path} was written with another {option} ({saved.get(name)!r}, now "
                f"{expected[name]!r}); resume with the options of the first run, or pass a "
                "new --out to start another run."
            )
    return checkpoint.load_state(path)


def _json(value: Any) -> Any:
    return json.loads(json.dumps(value))


def _truncate_metrics(path: pathlib.Path, last_step: int) -> None:
    """Drop metrics lines past `last_step`, logged after the checkpoint was written."""
    if not path.exists():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            # A line cut short by the interruption.
            continue
        if record["step"] <= last_step:
            kept.append(line)
    path.write_text("".join(line + "\n" for line in kept))


def _select_device(platform: str) -> None:
    if platform == "auto":
        return
    import jax

    try:
        device = jax.devices(platform)[0]
    except RuntimeError as error:
        raise UsageError(
            f"--device {platform}: JAX finds no {platform} device ({error}); use --device "
            "auto or cpu."
        ) from error
    jax.config.update("jax_default_device", device)


def _resume_command(args: argparse.Namespace, out: pathlib.Path) -> str:
    argv = list(args.argv)
    if "--out" not in argv and not any(a.startswith("--out=") for a in argv):
        argv += ["--out", str(out)]
    if "--resume" not in argv:
        argv.append("--resume")
    return "dcan-jax " + shlex.join(argv)


def _labels_for_fit(args: argparse.Namespace, dataset) -> tuple[np.ndarray | None, str | None]:
    n_samples = dataset.x_train.shape[0]
    if args.labels is not None:
        try:
            return read_labels(args.labels, n_samples), str(pathlib.Path(args.labels).resolve())
        except UsageError as error:
            raise UsageError(f"--labels: {error}") from error
    if dataset.y_train is not None:
        return dataset.y_train, None
    return None, None


def _prepare_run_directory(
    args: argparse.Namespace, out: pathlib.Path, config: DCANConfig, run_info: dict[str, Any]
) -> TrainState | None:
    """Create or check the run directory; returns the state to resume, if any."""
    if args.resume:
        if args.out is None:
            raise UsageError("--resume needs --out DIR, the directory of the interrupted run.")
        if not (out / CHECKPOINT_FILE).exists():
            raise UsageError(
                f"--resume: {out / CHECKPOINT_FILE} does not exist, so there is nothing to "
                "resume; run without --resume to start training."
            )
        state = _check_resume(out / CHECKPOINT_FILE, config, run_info)
        _truncate_metrics(out / METRICS_FILE, int(np.asarray(state.step).reshape(-1)[0]))
        return state
    if (out / CHECKPOINT_FILE).exists() or (out / MODEL_FILE).exists():
        raise UsageError(
            f"{out} already contains a run; pass --resume to continue it, or choose another --out."
        )
    out.mkdir(parents=True, exist_ok=True)
    # Left by a run interrupted before its first checkpoint.
    if (out / METRICS_FILE).exists():
        (out / METRICS_FILE).unlink()
    return None


def _run_record(args, x: np.ndarray, config: DCANConfig, seeds, labels_path) -> dict[str, Any]:
    return {
        "command": "dcan-jax " + shlex.join(args.argv),
        "data": str(pathlib.Path(args.data).resolve()),
        "data_options": {"x_key": args.x_key, "label_column": args.label_column},
        "labels": labels_path,
        "n_samples": int(x.shape[0]),
        "n_features": int(x.shape[1]),
        "config": config.to_dict(),
        "seeds": seeds,
        "scaling": args.scaling,
        "selection": args.selection,
        "status": "running",
    }


def _fit_command(args: argparse.Namespace) -> int:
    _select_device(args.device)
    if args.seeds < 1:
        raise UsageError(f"--seeds {args.seeds} should be >= 1.")
    if args.checkpoint_every is not None and args.checkpoint_every < 1:
        raise UsageError(f"--checkpoint-every {args.checkpoint_every} should be >= 1 step.")
    config = resolve_config(args)
    dataset = load_features(args.data, args)
    x = dataset.x_train
    y_true, labels_path = _labels_for_fit(args, dataset)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = pathlib.Path(args.out or f"runs/{pathlib.Path(args.data).stem}-{stamp}")
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    run_info = {
        "data_sha256": fingerprint(x),
        "seeds": seeds,
        "scaling": args.scaling,
    }

    resume_state = _prepare_run_directory(args, out, config, run_info)
    writers = _open_tensorboard(out, seeds) if args.tensorboard else None

    model = DCAN(
        n_clusters=config.n_clusters,
        config=config,
        scaling=args.scaling,
        n_seeds=args.seeds,
        selection=args.selection,
        random_state=args.first_seed,
    )
    record = _run_record(args, x, config, seeds, labels_path)
    write_json_atomic(out / RUN_FILE, record)
    every = args.checkpoint_every or config.log_every
    start_step = 0 if resume_state is None else int(np.asarray(resume_state.step).reshape(-1)[0])
    recorder = RunRecorder(
        out, model, x, y_true, run_info, every, seeds, writers, start_step, config.n_steps
    )
    logger.info(
        "Training on %d x %d from %s: %d clusters, seeds %s, %d steps; run directory %s",
        *x.shape,
        args.data,
        config.n_clusters,
        seeds,
        config.n_steps,
        out,
    )
    # Created after the last log line, which would otherwise break the bar's line.
    reporter = ProgressReporter(config.n_steps, start_step)
    started = time.perf_counter()
    try:
        with _interrupt_between_chunks() as stop_if_requested:

            def on_chunk(state, chunk):
                recorder.on_chunk(state, chunk)
                stop_if_requested()

            model.fit_with_callbacks(
                x, log_fn=reporter.update, on_chunk=on_chunk, resume_from=resume_state
            )
    except KeyboardInterrupt:
        reporter.close()
        return _interrupted(args, out, recorder, record)
    except TrainingDivergedError as error:
        reporter.close()
        record.update(status="diverged", step=error.step, error=str(error))
        write_json_atomic(out / RUN_FILE, record)
        logger.error("%s Last checkpoint: step %s in %s.", error, recorder.saved_step, out)
        return EXIT_DIVERGED
    finally:
        reporter.close()
        for writer in writers or []:
            writer.close()
    recorder.save_latest()
    return _finish_fit(args, out, model, x, y_true, record, time.perf_counter() - started)


@contextlib.contextmanager
def _interrupt_between_chunks() -> Iterator[Callable[[], None]]:
    """Defer Ctrl-C during training to the end of the current chunk.

    A KeyboardInterrupt raised at an arbitrary point can land inside a running
    XLA computation. Under heavy load, a fit interrupted that way once did not
    exit within two minutes. So the first SIGINT only sets a flag. The yielded function raises
    KeyboardInterrupt when the flag is set, and the training loop calls it
    after each chunk's checkpoint. A second SIGINT interrupts at once.
    """
    requested = False

    def handler(signum, frame):
        nonlocal requested
        if requested:
            raise KeyboardInterrupt
        requested = True
        print("Stopping after this chunk; press Ctrl-C again to stop now.", file=sys.stderr)

    def stop_if_requested() -> None:
        if requested:
            raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield stop_if_requested
    finally:
        signal.signal(signal.SIGINT, previous)


def _interrupted(args, out: pathlib.Path, recorder: RunRecorder, record: dict) -> int:
    saved = recorder.save_latest()
    record.update(status="interrupted", step=saved)
    write_json_atomic(out / RUN_FILE, record)
    if saved is None:
        print(
            "Interrupted before the first chunk finished; no checkpoint was written. "
            "Start again with the same command.",
            file=sys.stderr,
        )
    else:
        print(
            f"Interrupted. The checkpoint at step {saved} is in {out / CHECKPOINT_FILE}. "
            f"Resume with:\n  {_resume_command(args, out)}",
            file=sys.stderr,
        )
    return EXIT_INTERRUPTED


def _finish_fit(args, out, model: DCAN, x, y_true, record: dict, seconds: float) -> int:
    model.save(out / MODEL_FILE)
    np.save(out / LABELS_FILE, model.labels_)
    record.update(
        status="finished",
        step=model.n_iter_,
        selected_seed=model.selected_seed_,
        selection_scores=model.selection_scores_.tolist(),
        wall_seconds=round(seconds, 3),
    )
    if y_true is not None:
        all_labels = predict_all(model.state_, model.scale_inputs(x))[0]
        record["scores"] = metrics_lib.evaluate(y_true, all_labels)
    write_json_atomic(out / RUN_FILE, record)
    if not args.no_plots:
        draw_run_plots(out, model, x, y_true, args.plot_points)
    summary = f"Finished {model.n_iter_} steps; kept seed {model.selected_seed_}."
    if "scores" in record:
        scores = record["scores"]
        summary += f" ACC {scores['acc']:.4f}  NMI {scores['nmi']:.4f}  ARI {scores['ari']:.4f}."
    print(f"{summary} Model: {out / MODEL_FILE}")
    return 0


def draw_run_plots(
    out: pathlib.Path,
    model: DCAN,
    x: np.ndarray,
    y_true: np.ndarray | None,
    max_points: int,
    method: str = "tsne",
) -> list[pathlib.Path]:
    """Write the training curves, latent map and (with labels) confusion matrix PNGs."""
    written = []
    metrics_path = out / METRICS_FILE
    if metrics_path.exists() and metrics_path.stat().st_size > 0:
        records = plots.read_metrics_file(metrics_path)
        written.append(plots.plot_training_curves(records, out / CURVES_PNG))
    rows = plots.subsample(x.shape[0], max_points)
    points = plots.embed_2d(model.transform(x[rows]), method=method)
    clusters = model.predict(x[rows])
    classes = None if y_true is None else y_true[rows]
    written.append(plots.plot_latent_map(points, clusters, out / LATENT_PNG, classes))
    if y_true is not None:
        written.append(plots.plot_confusion_matrix(y_true, model.predict(x), out / CONFUSION_PNG))
    for path in written:
        logger.info("Wrote %s", path)
    return written


def _model_path(path: str) -> pathlib.Path:
    candidate = pathlib.Path(path)
    return candidate / MODEL_FILE if candidate.is_dir() else candidate


def _predict_command(args: argparse.Namespace) -> int:
    model = DCAN.load(_model_path(args.model))
    dataset = load_features(args.data, args)
    labels = model.predict(dataset.x_train)
    write_labels(args.out, labels)
    print(f"Wrote {labels.shape[0]} labels in [0, {model.n_clusters}) to {args.out}")
    return 0


def _evaluate_command(args: argparse.Namespace) -> int:
    predicted = read_labels(args.predicted)
    truth = read_labels(args.truth)
    if predicted.shape[0] != truth.shape[0]:
        raise UsageError(
            f"{args.predicted} has {predicted.shape[0]} labels but {args.truth} has "
            f"{truth.shape[0]}; pass one label per sample in both, in the same order."
        )
    scores = metrics_lib.evaluate(truth, predicted)
    payload = {"n_samples": int(truth.shape[0]), **scores}
    if args.json == "-":
        print(json.dumps(payload, indent=2))
        return 0
    print(f"samples        {truth.shape[0]}")
    print(f"ACC            {scores['acc']:.4f}   (Hungarian matching)")
    print(f"NMI            {scores['nmi']:.4f}   (arithmetic normalisation)")
    print(f"NMI geometric  {scores['nmi_geometric']:.4f}")
    print(f"ARI            {scores['ari']:.4f}")
    if args.json is not None:
        write_json_atomic(pathlib.Path(args.json), payload)
    return 0


def _plot_command(args: argparse.Namespace) -> int:
    out = pathlib.Path(args.run_dir)
    if not (out / RUN_FILE).is_file():
        raise UsageError(f"{out} has no {RUN_FILE}; pass a directory written by 'dcan-jax fit'.")
    record = json.loads((out / RUN_FILE).read_text())
    model = DCAN.load(out / MODEL_FILE)
    data_path = args.data or record["data"]
    recorded = record.get("data_options", {})
    options = argparse.Namespace(
        x_key=recorded.get("x_key"), label_column=recorded.get("label_column")
    )
    dataset = load_features(data_path, options)
    if dataset.x_train.shape[1] != model.n_features_in_:
        raise UsageError(
            f"{data_path} has {dataset.x_train.shape[1]} features but the model expects "
            f"{model.n_features_in_}; pass the data file the run was trained on with --data."
        )
    labels_path = args.labels or record.get("labels")
    if labels_path is not None:
        y_true = read_labels(labels_path, dataset.x_train.shape[0])
    else:
        y_true = dataset.y_train
    draw_run_plots(out, model, dataset.x_train, y_true, args.max_points, args.method)
    print(f"Wrote the figures of {out}")
    return 0


_COMMANDS = {
    "fit": _fit_command,
    "predict": _predict_command,
    "evaluate": _evaluate_command,
    "plot": _plot_command,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with `argv` (default `sys.argv[1:]`); returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = argv
    if not logging.getLogger().handlers:
        # INFO from this package only; other libraries keep the WARNING default.
        logging.basicConfig(format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
        logger.setLevel(logging.INFO)
    try:
        return _COMMANDS[args.command](args)
    except (ValueError, TypeError, FileNotFoundError) as error:
        # UsageError and CheckpointError are ValueErrors; so are invalid configs and data.
        print(f"dcan-jax {args.command}: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"dcan-jax {args.command}: interrupted.", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
