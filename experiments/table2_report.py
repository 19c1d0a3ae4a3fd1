"""Results store and rendering of the Table 2 comparison: JSON, CSV and Markdown.

Every call of `experiments.table2` merges its records into `table2.json`, where
a record is one method (or grid) on one dataset in one mode. It then renders
`table2.csv` and `table2.md` again from all stored records. So runs of different
datasets or modes can be made separately and still land in one table.
"""

from __future__ import annotations

import csv
import io
import json
import pathlib
from collections.abc import Iterable, Sequence
from typing import Any

from experiments.common import write_json_atomic

# ACC values of the DCAN paper's Table 2 (Reuters-10k k-means from its text).
# Keys are (dataset, method) as this project names them.
PAPER_ACC: dict[tuple[str, str], float] = {
    ("mnist", "abc"): 0.760,
    ("mnist", "dec"): 0.843,
    ("mnist", "dc-gmm"): 0.8555,
    ("mnist", "dcan-paper"): 0.8565,
    ("reuters10k", "kmeans"): 0.6018,
    ("reuters10k", "abc"): 0.7019,
    ("reuters10k", "dec"): 0.7217,
    ("reuters10k", "dc-gmm"): 0.6906,
    ("reuters10k", "dcan-paper"): 0.7867,
    ("cifar10", "abc"): 0.435,
    ("cifar10", "dec"): 0.469,
    ("cifar10", "dcan-paper"): 0.5844,
}

DATASET_TITLES = {
    "mnist": "MNIST",
    "fashion-mnist": "Fashion-MNIST",
    "newsgroups": "20 Newsgroups",
    "reuters10k": "Reuters-10k",
    "cifar10": "CIFAR-10",
}

METHOD_TITLES = {
    "kmeans": "k-means (input features)",
    "gmm": "diagonal GMM (input features)",
    "ae-kmeans": "autoencoder + k-means",
    "abc": "ABC",
    "dc-gmm": "DC-GMM (KL variant)",
    "dec": "DEC",
    "idec": "IDEC",
    "dcan": "DCAN, `default` config",
    "dcan-paper": "DCAN, `paper` config",
}

# Datasets whose data is not on this machine, with the command that adds them.
NOT_RUN_HERE = {
    "reuters10k": (
        "DCAN_JAX_DATA=<data-dir> python -m experiments.table2 --datasets reuters10k --seeds 10"
    ),
    "cifar10": (
        "DCAN_JAX_DATA=<data-dir> python -m experiments.table2 --datasets cifar10 --seeds 10"
    ),
}

MODE_TITLES = {
    "quick": "Quick mode (subsets, fewer steps; a smoke run, not a result)",
    "full": "Full configuration (whole training split, unchanged settings)",
}

# Seeds per row that a published table calls for.
TABLE_SEEDS = 10
FULL_COMMAND = (
    f"python -m experiments.table2 --datasets mnist fashion-mnist newsgroups --seeds {TABLE_SEEDS}"
)

SCORES = ("acc", "nmi", "ari")

# Methods whose rows start from the dataset's shared pretrained autoencoders.
SHARED_AUTOENCODER = ("ae-kmeans", "abc", "dc-gmm", "dec", "idec", "dcan")


def record_key(record: dict[str, Any]) -> tuple[str, ...]:
    """Identify a record: a later record with the same key replaces it."""
    grid_name = record.get("grid_name", "")
    return (record["mode"], record["kind"], record["dataset"], record["method"], grid_name)


def load_records(path: pathlib.Path) -> list[dict[str, Any]]:
    """Read the stored records, or return `[]` when `path` does not exist."""
    if not path.exists():
        return []
    try:
        payload = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(
            f"{str(path)!r} is not valid JSON ({error}); move it away to start a new table."
        ) from error
    if not isinstance(payload, dict) or not isinstance(payload.get("records"), list):
        raise ValueError(f"{str(path)!r} has no 'records' list; move it away to start a new table.")
    return payload["records"]


def merge_records(
    stored: Iterable[dict[str, Any]], new: Iterable[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Replace stored records that a new record has the key of; keep the rest."""
    merged = {record_key(record): record for record in stored}
    for record in new:
        merged[record_key(record)] = record
    return list(merged.values())


def _mean_std(record: dict[str, Any], score: str) -> str:
    summary = record.get("summary", {}).get(score)
    if summary is None:
        return "–"
    return f"{summary['mean']:.3f} ± {summary['std']:.3f}"


def _paper(dataset: str, method: str) -> str:
    value = PAPER_ACC.get((dataset, method))
    return "–" if value is None else f"{value:.4g}"


def _ordered(records: list[dict[str, Any]], methods: Sequence[str]) -> list[dict[str, Any]]:
    rank = {name: i for i, name in enumerate(methods)}
    return sorted(records, key=lambda r: rank.get(r["method"], len(rank)))


def _method_rows(records: list[dict[str, Any]], dataset: str) -> list[str]:
    rows = [
        "| method | ACC | NMI | ARI | runs | seconds (compile + run) | paper ACC (quoted) |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for record in _ordered(records, list(METHOD_TITLES)):
        title = METHOD_TITLES.get(record["method"], record["method"])
        if record.get("error"):
            scores = f"failed: {record['error']} | – | –"
        else:
            scores = " | ".join(_mean_std(record, score) for score in SCORES)
        seconds = f"{record['compile_seconds']:.0f} + {record['run_seconds']:.0f}"
        paper = _paper(dataset, record["method"])
        rows.append(f"| {title} | {scores} | {len(record['seeds'])} | {seconds} | {paper} |")
    return rows


def autoencoder_sets(records: list[dict[str, Any]]) -> tuple[list[list[str]], list[str]]:
    """Group the rows that start from pretrained autoencoders by the autoencoders used.

    Two rows fall in one group when their per-seed weight fingerprints
    (`autoencoder_digests`) agree on every seed both ran.

    Returns:
      The groups, each a list of method names in table order, and the methods
      whose records carry no fingerprints.
    """
    groups: list[tuple[dict[int, str], list[str]]] = []
    unrecorded = []
    for record in _ordered(records, list(METHOD_TITLES)):
        if record["method"] not in SHARED_AUTOENCODER or record.get("error"):
            continue
        digests = record.get("autoencoder_digests")
        if digests is None:
            unrecorded.append(record["method"])
            continue
        by_seed = dict(zip(record["seeds"], digests, strict=True))
        for known, methods in groups:
            common = by_seed.keys() & known.keys()
            if common and all(known[seed] == by_seed[seed] for seed in common):
                known.update(by_seed)
                methods.append(record["method"])
                break
        else:
            groups.append((by_seed, [record["method"]]))
    return [methods for _, methods in groups], unrecorded


def _autoencoder_note(records: list[dict[str, Any]]) -> list[str]:
    groups, unrecorded = autoencoder_sets(records)
    if len(groups) + bool(unrecorded) < 2:
        return []

    def titles(methods: list[str]) -> str:
        return ", ".join(METHOD_TITLES.get(m, m) for m in methods)

    parts = [f"set {i}: {titles(methods)}" for i, methods in enumerate(groups, start=1)]
    if unrecorded:
        parts.append(f"not recorded: {titles(unrecorded)}")
    return [
        "NOTE: the deep rows here start from more than one set of pretrained "
        "autoencoders (for example, caches filled on different machines), so "
        "compare them within a set. By the weight fingerprints in `table2.json`, "
        + "; ".join(parts)
        + ".",
        "",
    ]


def _dates_note(records: list[dict[str, Any]]) -> list[str]:
    """Return a line that names each day's rows when the rows ran on several days."""
    dates: dict[str, list[str]] = {}
    for record in _ordered(records, list(METHOD_TITLES)):
        title = METHOD_TITLES.get(record["method"], record["method"])
        dates.setdefault(record.get("date", "unknown date"), []).append(title)
    if len(dates) < 2:
        return []
    parts = [f"{date}: {', '.join(titles)}" for date, titles in sorted(dates.items())]
    return [
        "Timing: these rows ran on different days (" + "; ".join(parts) + "), on "
        "machines that may differ in speed, so compare seconds between rows of one day.",
        "",
    ]


def _grid_rows(records: list[dict[str, Any]]) -> list[str]:
    rows = []
    for record in records:
        name = record["grid_name"]
        rows.append(f"Grid over {record['method']}'s `{name}`, all values in one vmapped program:")
        rows.append("")
        rows.append(f"| {name} | ACC | NMI | ARI | runs |")
        rows.append("| --- | --- | --- | --- | --- |")
        for point in record["grid_points"]:
            scores = " | ".join(
                f"{point['summary'][s]['mean']:.3f} ± {point['summary'][s]['std']:.3f}"
                for s in SCORES
            )
            rows.append(f"| {point['value']:g} | {scores} | {point['n_runs']} |")
        rows.append("")
    return rows


def _dataset_section(records: list[dict[str, Any]], dataset: str) -> list[str]:
    first = records[0]
    lines = [
        f"### {DATASET_TITLES.get(dataset, dataset)}",
        "",
        f"{first['n_samples']} points × {first['n_features']} features "
        f"({first['data_source']}), split `{first['split']}`; scores are on the "
        "clustered points.",
        "",
    ]
    methods = [r for r in records if r["kind"] == "method"]
    if methods:
        lines += _method_rows(methods, dataset) + [""]
        lines += _autoencoder_note(methods) + _dates_note(methods)
    lines += _grid_rows([r for r in records if r["kind"] == "grid"])
    commands = sorted({r["command"] for r in records})
    lines.append("Command" + ("s" if len(commands) > 1 else "") + ":")
    lines.append("")
    lines += [f"    {command}" for command in commands]
    lines.append("")
    return lines


def _mode_section(records: list[dict[str, Any]], mode: str) -> list[str]:
    lines = [f"## {MODE_TITLES.get(mode, mode)}", ""]
    first = records[0]
    machine = f"Machine: {first['device']}; jax {first['versions']['jax']}."
    # Rows of methods without an autoencoder (raw k-means, the `paper` DCAN)
    # carry no pretraining time, so they must not overwrite a dataset's entry.
    pretrain_seconds = {
        r["dataset"]: r["pretrain_seconds"] for r in records if "pretrain_seconds" in r
    }
    if pretrain_seconds:
        machine += (
            " Pretraining the shared autoencoders and fitting k-means on them (with "
            "`--cache-dir`, reading them from the cache instead of pretraining) is timed "
            "separately: "
            + ", ".join(
                f"{DATASET_TITLES.get(d, d)} {s:.0f} s" for d, s in sorted(pretrain_seconds.items())
            )
            + "."
        )
    lines.append(machine)
    lines.append("")
    fewest = min(len(r["seeds"]) for r in records)
    if mode == "full" and fewest < TABLE_SEEDS:
        lines += [
            f"Some rows here use {fewest} seeds, fewer than the {TABLE_SEEDS} a table calls "
            f"for. The complete table comes from `{FULL_COMMAND}`.",
            "",
        ]
    for dataset in DATASET_TITLES:
        chosen = [r for r in records if r["dataset"] == dataset]
        if chosen:
            lines += _dataset_section(chosen, dataset)
    return lines


def render_markdown(records: list[dict[str, Any]]) -> str:
    """Render every stored record as the `table2.md` page."""
    lines = [
        "# Table 2: DCAN and deep clustering baselines",
        "",
        "Written by `python -m experiments.table2`; every number comes from the",
        "command printed under its table. Scores are mean ± standard deviation over",
        "the runs (one per seed, seeds 0..N-1). ACC is the Hungarian-matched",
        "accuracy, NMI uses the arithmetic normalisation (scikit-learn's default;",
        "`table2.json` also has the geometric one), ARI is the adjusted Rand index.",
        "Labels are used only for these scores: every method runs a fixed budget,",
        "and k-means restarts are chosen by inertia. The complete settings of every",
        "row, as run, are in its `config` entry in `table2.json`.",
        "",
        "The last column quotes the ACC of the DCAN paper's Table 2 (its",
        "Reuters-10k k-means value is from its text). The paper reports one DCAN",
        "number per dataset, shown beside the `paper` config. Its MNIST protocol",
        "(50,000 training digits) differs from the splits here, and the `default`",
        "config is this project's, not the paper's.",
        "",
    ]
    for mode in ("full", "quick"):
        chosen = [r for r in records if r["mode"] == mode]
        if chosen:
            lines += _mode_section(chosen, mode)
    run_datasets = {r["dataset"] for r in records}
    missing = [d for d in NOT_RUN_HERE if d not in run_datasets]
    if missing:
        lines += [
            "## Not run here",
            "",
            "These datasets are not on the machine that wrote this page. On a machine",
            "that has them (see `python -m experiments.reuters10k --help` and",
            "`python -m experiments.cifar10 --help` for the files each reads):",
            "",
            "| dataset | paper ACC (quoted): ABC / DEC / DC-GMM / DCAN | command |",
            "| --- | --- | --- |",
        ]
        for dataset in missing:
            quoted = " / ".join(
                _paper(dataset, method) for method in ("abc", "dec", "dc-gmm", "dcan-paper")
            )
            title = DATASET_TITLES[dataset]
            lines.append(f"| {title} | {quoted} | `{NOT_RUN_HERE[dataset]}` |")
        lines.append("")
    return "\n".join(lines)


def render_csv(records: list[dict[str, Any]]) -> str:
    """Render one row per (mode, dataset, method) and, for grids, per grid value."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(
        ["mode", "dataset", "method", "grid", "n_runs", "n_samples"]
        + [f"{s}_{stat}" for s in SCORES for stat in ("mean", "std")]
        + ["paper_acc", "compile_seconds", "run_seconds", "error"]
    )
    for record in records:
        base = [record["mode"], record["dataset"], record["method"]]
        paper = PAPER_ACC.get((record["dataset"], record["method"]), "")
        timing = [f"{record['compile_seconds']:.2f}", f"{record['run_seconds']:.2f}"]
        if record["kind"] == "grid":
            for point in record["grid_points"]:
                stats = _stats(point["summary"])
                grid = f"{record['grid_name']}={point['value']:g}"
                writer.writerow(
                    base + [grid, point["n_runs"], record["n_samples"]] + stats + ["", *timing, ""]
                )
            continue
        stats = _stats(record.get("summary", {}))
        n_runs = len(record["seeds"])
        row = base + ["", n_runs, record["n_samples"]] + stats
        writer.writerow(row + [paper, *timing, record.get("error", "")])
    return buffer.getvalue()


def _stats(summary: dict[str, dict[str, float]]) -> list[str]:
    values = []
    for score in SCORES:
        for stat in ("mean", "std"):
            values.append(f"{summary[score][stat]:.4f}" if score in summary else "")
    return values


def render_console(records: list[dict[str, Any]]) -> str:
    """Render the records of one call as a plain-text table."""
    lines = [f"{'dataset':<14} {'method':<11} {'ACC':>15} {'NMI':>15} {'ARI':>15}  paper ACC"]
    for record in records:
        if record["kind"] != "method":
            continue
        if record.get("error"):
            scores = f"failed: {record['error']}"
        else:
            scores = " ".join(f"{_mean_std(record, s):>15}" for s in SCORES)
        paper = _paper(record["dataset"], record["method"])
        lines.append(f"{record['dataset']:<14} {record['method']:<11} {scores}  {paper}")
    return "\n".join(lines)


def write_outputs(out_dir: pathlib.Path, new_records: list[dict[str, Any]]) -> list[dict]:
    """Merge `new_records` into `out_dir/table2.json` and rewrite the CSV and page."""
    json_path = out_dir / "table2.json"
    records = merge_records(load_records(json_path), new_records)
    write_json_atomic(json_path, {"records": records})
    (out_dir / "table2.csv").write_text(render_csv(records))
    (out_dir / "table2.md").write_text(render_markdown(records))
    return records
