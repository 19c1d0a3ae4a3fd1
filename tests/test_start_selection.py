"""Label-free choice among k-means partitions, on real digits."""

import json

import pytest

from dcan_jax import get_config
from dcan_jax.data import Dataset
from experiments import start_selection

CONFIG = get_config(
    "default",
    encoder_widths=(32, 5),
    pretrain_epochs=2,
    pretrain_batch_size=100,
    n_steps=1,
    log_every=1,
    batch_size=32,
    cluster_sample_size=64,
    init_cluster_sample_size=200,
)


@pytest.fixture(scope="module")
def results(embedded_digits, tmp_path_factory):
    x, y = embedded_digits
    dataset = Dataset("digits-subset", x[:1500], y[:1500])
    folder = tmp_path_factory.mktemp("start-selection")
    return start_selection.run(
        dataset, CONFIG, (0, 1), restarts=5, sample=500, cache_dir=folder, out=folder
    ), folder


def test_each_criterion_picks_a_scored_partition(results):
    for record in results[0]["seeds"].values():
        accs = [p["acc"] for p in record["partitions"]]
        summary = record["summary"]
        assert len(accs) == 5
        for name, _, _ in start_selection.CRITERIA:
            assert summary[name] in accs
        assert summary["worst"] == min(accs)
        assert summary["best"] == max(accs)


def test_inertia_picks_the_lowest_inertia(results):
    for record in results[0]["seeds"].values():
        partitions = record["partitions"]
        lowest = min(partitions, key=lambda p: p["inertia"])
        assert record["summary"]["inertia"] == lowest["acc"]


def test_consensus_is_a_mean_rand_index(results):
    for record in results[0]["seeds"].values():
        for partition in record["partitions"]:
            assert -1.0 <= partition["consensus"] <= 1.0


def test_results_file_and_table(results):
    saved = json.loads((results[1] / "start-selection-digits-subset.json").read_text())
    assert sorted(saved["seeds"]) == ["0", "1"]
    table = start_selection.format_table({s: r["summary"] for s, r in saved["seeds"].items()})
    assert table.splitlines()[0].startswith("| seed | mean | worst | inertia")
    assert table.splitlines()[-1].startswith("| mean |")


def test_one_restart_is_refused(capsys):
    with pytest.raises(SystemExit):
        start_selection.main(["--restarts", "1"])
    assert "--restarts=1: choosing needs at least 2 partitions" in capsys.readouterr().err
