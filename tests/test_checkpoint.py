"""Model and state files: exact round trips, versions, damage and interrupted saves."""

from __future__ import annotations

import copy
import json
import os
import zipfile

import jax
import numpy as np
import pytest

from dcan_jax import DCAN, checkpoint, get_config, train
from dcan_jax.checkpoint import CheckpointError

TINY = get_config(
    "default",
    n_steps=20,
    log_every=10,
    encoder_widths=(32, 4),
    discriminator_widths=(8,),
    pretrain_epochs=1,
    pretrain_batch_size=64,
    batch_size=32,
    cluster_sample_size=128,
    init_cluster_sample_size=300,
    final_cluster_iters=2,
)


@pytest.fixture(scope="module")
def digits(embedded_digits):
    x = embedded_digits[0]
    # The digits are sorted by class, so draw rows from all of them.
    return x[np.random.default_rng(0).permutation(x.shape[0])[:300]]


@pytest.fixture(scope="module")
def fitted(digits):
    return DCAN(n_clusters=10, config=TINY, n_seeds=2, random_state=0).fit(digits)


@pytest.fixture(scope="module")
def run(digits):
    """The final state of a two-seed run and its state after 10 of 20 steps."""
    midway = {}

    def keep_step_10(state, _):
        if int(state.step[0]) == 10:
            midway["state"] = state

    result = train.fit(digits, TINY, seeds=(3, 4), on_chunk=keep_step_10)
    return result.state, midway["state"]


@pytest.fixture(scope="module")
def stacked_state(run):
    return run[0]


def _leaves(tree):
    leaves = []
    for leaf in jax.tree.leaves(tree):
        if jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
            leaf = jax.random.key_data(leaf)
        leaves.append(np.asarray(leaf))
    return leaves


def _assert_states_equal(a, b):
    assert a.config == b.config
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for leaf_a, leaf_b in zip(_leaves(a), _leaves(b), strict=True):
        assert leaf_a.dtype == leaf_b.dtype
        np.testing.assert_array_equal(leaf_a, leaf_b)


def _rewrite_metadata(path, **changes):
    """Rewrite a file's metadata.json with `changes`, keeping its arrays."""
    with zipfile.ZipFile(path) as archive:
        metadata = json.loads(archive.read("metadata.json"))
        arrays = archive.read("arrays.msgpack")
    metadata.update(changes)
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("metadata.json", json.dumps(metadata))
        archive.writestr("arrays.msgpack", arrays)


def test_model_round_trip_is_exact(fitted, digits, tmp_path):
    fitted.save(tmp_path / "model.dcan")
    loaded = DCAN.load(tmp_path / "model.dcan")
    assert loaded.get_params() == fitted.get_params()
    _assert_states_equal(loaded.state_, fitted.state_)
    assert loaded.config_ == fitted.config_
    assert loaded.seeds_ == fitted.seeds_
    assert loaded.selected_seed_ == fitted.selected_seed_
    assert loaded.n_features_in_ == 196
    assert loaded.n_iter_ == fitted.n_iter_
    np.testing.assert_array_equal(loaded.input_scale_, fitted.input_scale_)
    np.testing.assert_array_equal(loaded.input_offset_, fitted.input_offset_)
    np.testing.assert_array_equal(loaded.labels_, fitted.labels_)
    np.testing.assert_array_equal(loaded.cluster_centers_, fitted.cluster_centers_)
    np.testing.assert_array_equal(loaded.selection_scores_, fitted.selection_scores_)
    for name, values in fitted.history_.items():
        np.testing.assert_array_equal(loaded.history_[name], values)
    np.testing.assert_array_equal(loaded.predict(digits), fitted.predict(digits))
    np.testing.assert_array_equal(loaded.transform(digits), fitted.transform(digits))


def test_model_with_config_object_round_trips(fitted, tmp_path):
    model = copy.deepcopy(fitted)
    model.set_params(config=TINY.replace(n_clusters=10), random_state=np.random.RandomState(0))
    model.save(tmp_path / "model.dcan")
    loaded = DCAN.load(tmp_path / "model.dcan")
    assert loaded.get_params()["config"] == TINY.replace(n_clusters=10)
    # A RandomState cannot be stored; the trained seeds are kept in seeds_.
    assert loaded.get_params()["random_state"] is None
    assert loaded.seeds_ == fitted.seeds_


def test_model_keeps_feature_names(digits, tmp_path):
    pandas = pytest.importorskip("pandas")
    frame = pandas.DataFrame(digits, columns=[f"pixel{i}" for i in range(196)])
    model = DCAN(n_clusters=10, config=TINY, n_seeds=2, random_state=0).fit(frame)
    model.save(tmp_path / "model.dcan")
    loaded = DCAN.load(tmp_path / "model.dcan")
    np.testing.assert_array_equal(loaded.feature_names_in_, model.feature_names_in_)
    np.testing.assert_array_equal(loaded.predict(frame), model.predict(frame))


def test_stacked_state_round_trip_is_exact(stacked_state, tmp_path):
    checkpoint.save_state(tmp_path / "state.dcan", stacked_state, {"note": "two seeds"})
    loaded = checkpoint.load_state(tmp_path / "state.dcan")
    _assert_states_equal(loaded, stacked_state)
    assert checkpoint.read_metadata(tmp_path / "state.dcan")["user"] == {"note": "two seeds"}


def test_single_seed_state_round_trip_is_exact(stacked_state, tmp_path):
    single = jax.tree.map(lambda leaf: leaf[1], stacked_state)
    checkpoint.save_state(tmp_path / "state.dcan", single)
    loaded = checkpoint.load_state(tmp_path / "state.dcan")
    _assert_states_equal(loaded, single)
    assert loaded.step.shape == ()


def test_loaded_state_resumes_like_the_original(run, digits, tmp_path):
    final, midway = run
    checkpoint.save_state(tmp_path / "state.dcan", midway)
    loaded = checkpoint.load_state(tmp_path / "state.dcan")
    resumed = train.fit(digits, TINY, seeds=(3, 4), resume_from=loaded)
    _assert_states_equal(resumed.state, final)


def test_unknown_format_version_raises(fitted, tmp_path):
    path = tmp_path / "model.dcan"
    fitted.save(path)
    _rewrite_metadata(path, format_version=99, dcan_jax_version="9.0.0")
    with pytest.raises(CheckpointError, match=r"format version 99.*reads only version 1.*9\.0\.0"):
        DCAN.load(path)


def test_truncated_file_raises(fitted, tmp_path):
    path = tmp_path / "model.dcan"
    fitted.save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated, corrupted or of another kind"):
        DCAN.load(path)


def test_changed_byte_is_detected(fitted, tmp_path):
    path = tmp_path / "model.dcan"
    fitted.save(path)
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo("arrays.msgpack")
    data = bytearray(path.read_bytes())
    # The member's bytes follow its 30-byte local header, name and extra field.
    offset = info.header_offset + 30 + len(info.filename) + len(info.extra) + info.file_size // 2
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"is corrupted \(arrays.msgpack: Bad CRC-32"):
        DCAN.load(path)


def test_other_files_raise(fitted, stacked_state, tmp_path):
    with pytest.raises(CheckpointError, match="No model or checkpoint file"):
        DCAN.load(tmp_path / "missing.dcan")
    (tmp_path / "text.dcan").write_text("not a model")
    with pytest.raises(CheckpointError, match="is not a readable dcan_jax file"):
        DCAN.load(tmp_path / "text.dcan")
    with zipfile.ZipFile(tmp_path / "other.zip", "w") as archive:
        archive.writestr("metadata.json", json.dumps({"format": "other"}))
    with pytest.raises(CheckpointError, match="is not a dcan_jax model or checkpoint file"):
        DCAN.load(tmp_path / "other.zip")
    checkpoint.save_state(tmp_path / "state.dcan", stacked_state)
    with pytest.raises(CheckpointError, match="contains a 'train_state', not a DCAN model"):
        DCAN.load(tmp_path / "state.dcan")
    fitted.save(tmp_path / "model.dcan")
    with pytest.raises(CheckpointError, match="contains a 'estimator', not a train state"):
        checkpoint.load_state(tmp_path / "model.dcan")


def test_arrays_that_contradict_the_config_raise(stacked_state, tmp_path):
    path = tmp_path / "state.dcan"
    checkpoint.save_state(path, stacked_state)
    metadata = checkpoint.read_metadata(path)
    metadata["state"]["config"]["encoder_widths"] = [64, 4]
    _rewrite_metadata(path, state=metadata["state"])
    with pytest.raises(CheckpointError, match="do not match its config"):
        checkpoint.load_state(path)


@pytest.mark.parametrize("failing", ["writestr", "replace"])
def test_interrupted_save_keeps_previous_file(fitted, digits, tmp_path, monkeypatch, failing):
    path = tmp_path / "model.dcan"
    fitted.save(path)
    before = path.read_bytes()

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    if failing == "writestr":
        monkeypatch.setattr(zipfile.ZipFile, "writestr", interrupt)
    else:
        monkeypatch.setattr(os, "replace", interrupt)
    with pytest.raises(KeyboardInterrupt):
        fitted.save(path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.dcan"]
    np.testing.assert_array_equal(DCAN.load(path).predict(digits), fitted.predict(digits))


def test_unfitted_model_cannot_be_saved(tmp_path):
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        DCAN().save(tmp_path / "model.dcan")
