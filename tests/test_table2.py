"""The Table 2 harness end to end in `--quick` mode on a few hundred real digits."""

from __future__ import annotations

import contextlib
import csv
import io
import json

import numpy as np
import pytest

from experiments import table2, table2_report


@pytest.fixture(scope="module")
def quick_run(real_data_dir, tmp_path_factory):
    """Run kmeans and AE + k-means on 300 MNIST digits; newsgroups is absent."""
    data_dir = tmp_path_factory.mktemp("data")
    (data_dir / "mnist").symlink_to(real_data_dir / "mnist", target_is_directory=True)
    out_dir = tmp_path_factory.mktemp("docs")
    argv = [
        "--quick",
        "--datasets",
        "mnist",
        "newsgroups",
        "--methods",
        "kmeans",
        "ae-kmeans",
        "--seeds",
        "2",
        "--subset",
        "300",
        "--data-dir",
        str(data_dir),
        "--out",
        str(out_dir),
    ]
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        records = table2.main(argv)
    return records, out_dir, printed.getvalue()


def test_quick_run_records_each_method(quick_run):
    records, *_ = quick_run
    assert [(r["dataset"], r["method"]) for r in records] == [
        ("mnist", "kmeans"),
        ("mnist", "ae-kmeans"),
    ]
    for record in records:
        assert record["mode"] == "quick"
        assert record["n_samples"] == 300
        assert record["seeds"] == [0, 1]
        assert len(record["scores"]) == 2
        assert record["config"]["network"]["pretrain_epochs"] == 10
        for score in record["scores"]:
            assert 0.0 < score["acc"] <= 1.0
            assert 0.0 <= score["nmi"] <= 1.0


def test_quick_run_leaves_out_missing_dataset(quick_run):
    records, _, printed = quick_run
    assert all(r["dataset"] != "newsgroups" for r in records)
    assert "newsgroups: left out: 20 Newsgroups (auto) not found" in printed


def test_quick_run_prints_table(quick_run):
    _, _, printed = quick_run
    assert "mnist          kmeans" in printed
    assert "mnist          ae-kmeans" in printed


def test_quick_run_writes_json_csv_markdown(quick_run):
    records, out_dir, _ = quick_run
    stored = json.loads((out_dir / "table2.json").read_text())["records"]
    assert len(stored) == len(records)
    rows = list(csv.DictReader(io.StringIO((out_dir / "table2.csv").read_text())))
    assert [row["method"] for row in rows] == ["kmeans", "ae-kmeans"]
    mean = np.mean([s["acc"] for s in records[0]["scores"]])
    assert float(rows[0]["acc_mean"]) == pytest.approx(mean, abs=1e-4)
    page = (out_dir / "table2.md").read_text()
    assert "## Quick mode" in page
    assert "| k-means (input features) |" in page
    assert "python -m experiments.table2 --quick" in page
    assert "## Not run here" in page
    assert "0.7867" in page  # DCAN's Reuters-10k ACC in the DCAN paper's Table 2


def test_deep_rows_store_digests(quick_run):
    records, out_dir, _ = quick_run
    by_method = {r["method"]: r for r in records}
    assert "autoencoder_digests" not in by_method["kmeans"]
    digests = by_method["ae-kmeans"]["autoencoder_digests"]
    assert len(digests) == 2
    assert digests[0] != digests[1]
    for digest in digests:
        assert len(digest) == 12
        assert set(digest) <= set("0123456789abcdef")
    assert "NOTE: the deep rows" not in (out_dir / "table2.md").read_text()


def test_mixed_autoencoders_are_flagged(quick_run):
    records, *_ = quick_run
    ae_kmeans = next(r for r in records if r["method"] == "ae-kmeans")
    first, second = ae_kmeans["autoencoder_digests"]
    dec = {**ae_kmeans, "method": "dec", "seeds": [0, 1, 2]}
    dec["autoencoder_digests"] = [first, second, "c" * 12]
    dcan = {**ae_kmeans, "method": "dcan", "autoencoder_digests": ["d" * 12, "e" * 12]}
    abc = {k: v for k, v in ae_kmeans.items() if k != "autoencoder_digests"}
    abc["method"] = "abc"
    rows = [records[0], ae_kmeans, dec, dcan, abc]
    groups, unrecorded = table2_report.autoencoder_sets(rows)
    assert groups == [["ae-kmeans", "dec"], ["dcan"]]
    assert unrecorded == ["abc"]
    page = table2_report.render_markdown(rows)
    assert (
        "set 1: autoencoder + k-means, DEC; set 2: DCAN, `default` config; not recorded: ABC."
        in " ".join(page.split())
    )


def test_pretraining_time_skips_raw_rows(quick_run):
    records, *_ = quick_run
    ae_kmeans = next(r for r in records if r["method"] == "ae-kmeans")
    assert "pretrain_seconds" in ae_kmeans
    # A run of raw-feature methods alone pretrains nothing, so its rows carry no time.
    kmeans = next(r for r in records if r["method"] == "kmeans")
    kmeans = {k: v for k, v in kmeans.items() if k != "pretrain_seconds"}
    expected = f"MNIST {ae_kmeans['pretrain_seconds']:.0f} s."
    for rows in ([ae_kmeans, kmeans], [kmeans, ae_kmeans]):
        assert expected in table2_report.render_markdown(rows)
    assert "timed separately" not in table2_report.render_markdown([kmeans])


def test_timing_note_names_each_day(quick_run):
    records, *_ = quick_run
    same_day = table2_report.render_markdown(records)
    assert "Timing:" not in same_day
    older = {**records[0], "date": "2000-01-01"}
    page = table2_report.render_markdown([older, *records[1:]])
    assert "Timing: these rows ran on different days (2000-01-01: k-means (input" in page
    assert f"{records[1]['date']}: autoencoder + k-means)" in page


def test_merge_keeps_other_methods_and_replaces_same_key(quick_run):
    records, *_ = quick_run
    rerun = {**records[0], "run_seconds": 123.0}
    merged = table2_report.merge_records(records, [rerun])
    assert len(merged) == 2
    assert {r["method"]: r["run_seconds"] for r in merged}["kmeans"] == 123.0


def test_stored_file_without_records_is_rejected(tmp_path):
    path = tmp_path / "table2.json"
    path.write_text(json.dumps({"rows": []}))
    with pytest.raises(ValueError, match="has no 'records' list"):
        table2_report.load_records(path)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--methods", "dcn"], "Unknown methods \\['dcn'\\]"),
        (["--datasets", "svhn"], "Unknown datasets \\['svhn'\\]"),
        (["--seeds", "0"], "--seeds 0 should be >= 1"),
        (["--grid", "abc:cluster_weight"], "should look like METHOD:NAME=V1,V2"),
        (["--grid", "dcan:positive_scale=0.3"], "--grid method 'dcan' is not a baseline"),
        (["--grid", "dec:cluster_weight=0.1"], "dec has no traced hyperparameter 'cluster_weight'"),
        (["--grid", "abc:cluster_weight=low"], "values should be numbers"),
    ],
)
def test_invalid_arguments_exit_with_message(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        table2.main(argv)
    assert exit_info.value.code == 2
    assert message.replace("\\", "") in capsys.readouterr().err
