"""Run the benchmarks and write the Markdown page: `python -m benchmarks [--quick]`."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks import peers, report, training
from benchmarks.common import REPOSITORY, load_average, machine_info

logger = logging.getLogger("benchmarks")

SECTIONS = ("scan", "seeds", "clustering", "peers", "running")
DEFAULT_OUT = REPOSITORY / "docs" / "benchmarks.md"


@dataclasses.dataclass(frozen=True)
class Settings:
    """Sizes of one benchmark run; `FULL` for `make bench`, `QUICK` for `--quick`."""

    # Table 2 config name -> steps per timed run; configs left out are not run.
    table2_steps: dict[str, int]
    table2_repeats: int
    seed_counts: tuple[int, ...]
    seed_steps: int
    seed_repeats: int
    clustering_sizes: tuple[tuple[int, int], ...]  # (n_samples, n_features)
    clustering_iterations: tuple[int, int]
    clustering_repeats: int
    matmul_repeats: int
    running_configs: tuple[str, ...]
    running_steps: dict[str, int]  # config name -> steps per timed run
    running_repeats: int
    peer_samples: int
    peer_pretrain_epochs: int
    peer_epochs: int


FULL = Settings(
    table2_steps={"paper": 500, "paper_reuters10k": 500, "paper_cifar10": 100},
    table2_repeats=3,
    seed_counts=(1, 2, 4, 8, 16),
    seed_steps=200,
    seed_repeats=2,
    clustering_sizes=((70_000, 256), (1_000_000, 128)),
    clustering_iterations=(1, 6),
    clustering_repeats=2,
    matmul_repeats=5,
    running_configs=("paper", "default"),
    running_steps={"paper": 300, "default": 20},
    running_repeats=3,
    peer_samples=5120,
    peer_pretrain_epochs=2,
    peer_epochs=2,
)

QUICK = Settings(
    table2_steps={"paper": 50, "paper_cifar10": 5},
    table2_repeats=1,
    seed_counts=(1, 4),
    seed_steps=20,
    seed_repeats=2,
    clustering_sizes=((20_000, 256),),
    clustering_iterations=(1, 3),
    clustering_repeats=1,
    matmul_repeats=3,
    running_configs=("paper",),
    running_steps={"paper": 50},
    running_repeats=2,
    peer_samples=768,
    peer_pretrain_epochs=1,
    peer_epochs=1,
)

# (library, algorithm, threads) of the clustering comparison; None threads is all cores.
CLUSTERING_CASES = (
    ("jax", "kmeans", None),
    ("sklearn", "kmeans", None),
    ("faiss", "kmeans", None),
    ("faiss", "kmeans", 1),
    ("jax", "gmm", None),
    ("sklearn", "gmm", None),
)


def run_scan(settings: Settings) -> dict[str, Any]:
    records, skipped = [], []
    for name, n_features, _ in training.TABLE2_CONFIGS:
        if name not in settings.table2_steps:
            skipped.append(name)
            continue
        logger.info("scan vs loop: %s", name)
        record = training.scan_vs_loop(
            name, n_features, settings.table2_steps[name], settings.table2_repeats
        )
        record["matmul_flops"] = training.matmul_flops_per_step(
            training.get_config(name), n_features
        )
        records.append(record)
    logger.info("matmul rates")
    paper = training.get_config("paper")
    size = training.MATMUL_SIZE
    return {
        "configs": records,
        "skipped_configs": skipped,
        "matmul_size": size,
        "matmul_gflops": training.matmul_rate(size, size, size, settings.matmul_repeats),
        "step_matmul_gflops": training.step_matmul_rates(paper, 196, settings.matmul_repeats),
    }


def run_seeds(settings: Settings) -> dict[str, Any]:
    logger.info("seed scaling: %s", settings.seed_counts)
    records = training.seed_scaling(
        "paper", 196, settings.seed_counts, settings.seed_steps, settings.seed_repeats
    )
    return {"config": "paper", "n_steps": settings.seed_steps, "records": records}


# scikit-learn's GMM takes seconds per iteration on these sizes, so it is timed
# on fits two iterations apart, once each, to keep `make bench` near 15 minutes.
# Fits one iteration apart let a burst of load make the longer fit the faster.
SLOW_CASES = {("sklearn", "gmm")}


def clustering_command(library, algorithm, threads, size, settings: Settings) -> list[str]:
    n_samples, n_features = size
    iterations = settings.clustering_iterations
    repeats = settings.clustering_repeats
    if (library, algorithm) in SLOW_CASES:
        iterations, repeats = (iterations[0], iterations[0] + 2), 1
    command = [
        sys.executable,
        "-m",
        "benchmarks.clustering_case",
        f"--library={library}",
        f"--algorithm={algorithm}",
        f"--n-samples={n_samples}",
        f"--n-features={n_features}",
        "--iterations",
        *(str(count) for count in iterations),
        f"--repeats={repeats}",
    ]
    if threads is not None:
        command.append(f"--threads={threads}")
    return command


def run_clustering(settings: Settings) -> dict[str, Any]:
    records = []
    for size in settings.clustering_sizes:
        for library, algorithm, threads in CLUSTERING_CASES:
            logger.info("clustering: %s %s threads=%s on %s", library, algorithm, threads, size)
            command = clustering_command(library, algorithm, threads, size, settings)
            completed = subprocess.run(
                command, capture_output=True, text=True, cwd=REPOSITORY, timeout=1800
            )
            if completed.returncode == 0:
                record = json.loads(completed.stdout.strip().splitlines()[-1])
            else:
                error_lines = completed.stderr.strip().splitlines()
                last_line = error_lines[-1] if error_lines else "no output"
                logger.error("clustering case failed: %s", last_line)
                record = {
                    "library": library,
                    "algorithm": algorithm,
                    "threads": threads,
                    "n_samples": size[0],
                    "n_features": size[1],
                    "error": last_line,
                }
            record["command"] = shlex.join(["python", *command[1:]])
            records.append(record)
    return {"records": records}


def run_peers(settings: Settings) -> dict[str, Any]:
    logger.info("ClustPy peer: %d samples", settings.peer_samples)
    return peers.compare_with_clustpy(
        settings.peer_samples, settings.peer_pretrain_epochs, settings.peer_epochs
    )


def run_running(settings: Settings) -> dict[str, Any]:
    records = []
    for name in settings.running_configs:
        logger.info("running cluster statistics vs a clustering sample: %s", name)
        config = training.get_config(name)
        if config.pretrain_epochs:
            # Pretraining changes the weights, not the step's shapes or work.
            config = config.replace(pretrain_epochs=0)
        records.append(
            training.running_vs_sample(
                name, 196, settings.running_steps[name], settings.running_repeats, config
            )
        )
    return {"records": records}


RUNNERS = {
    "scan": run_scan,
    "seeds": run_seeds,
    "clustering": run_clustering,
    "peers": run_peers,
    "running": run_running,
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description="Benchmark dcan_jax against its peers."
    )
    parser.add_argument(
        "--quick", action="store_true", help="smaller sizes, under 3 minutes on 2 cores"
    )
    parser.add_argument(
        "--only", nargs="+", choices=SECTIONS, default=list(SECTIONS), help="sections to run"
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="Markdown page to write")
    parser.add_argument("--json", type=Path, default=None, help="also write the raw results here")
    parser.add_argument(
        "--from-json",
        type=Path,
        default=None,
        help="write the page from results saved with --json, without measuring",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    args = parse_args(argv)
    if args.from_json is not None:
        args.out.write_text(report.render(json.loads(args.from_json.read_text())))
        logger.info("wrote %s from %s", args.out, args.from_json)
        return

    settings = QUICK if args.quick else FULL
    command = shlex.join(["python", "-m", "benchmarks", *(sys.argv[1:] if argv is None else argv)])
    start = time.perf_counter()
    results: dict[str, Any] = {"machine": machine_info(), "command": command}
    results["settings"] = dataclasses.asdict(settings)
    for section in SECTIONS:
        if section in args.only:
            section_start = time.perf_counter()
            results[section] = RUNNERS[section](settings)
            results[section]["seconds"] = time.perf_counter() - section_start
            results[section]["load_average_end"] = load_average()
    results["total_seconds"] = time.perf_counter() - start
    results["machine"]["load_average_end"] = load_average()

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(report.render(results))
    logger.info("wrote %s in %.0f s", args.out, results["total_seconds"])
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=1, default=str))
