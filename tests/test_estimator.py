"""The scikit-learn estimator `DCAN`: fitting, seed selection, scaling, bad input."""

from __future__ import annotations

import logging

import jax
import numpy as np
import pytest
from sklearn.preprocessing import MinMaxScaler, StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from dcan_jax import DCAN, get_config, train
from dcan_jax.estimator import inertia_ratios, predict_all, reconstruction_errors

# Small enough that a fit on 300 digits takes about a second once compiled.
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

# The smallest config that still clusters scikit-learn's test blobs: every
# check_estimator check with new data shapes compiles a new program, so the
# compile time of this config bounds the time of the checks.
CHECKS_OVERRIDES = {
    "log_every": 2,
    "encoder_widths": (2,),
    "discriminator_widths": (),
    "cluster_sample_size": 16,
    "init_cluster_sample_size": 64,
    "init_cluster_iters": 1,
}
CHECKS_CONFIG = get_config("paper", n_steps=2, batch_size=8, **CHECKS_OVERRIDES)

# These checks set n_clusters=1 before fitting, and DCAN rejects it: with one
# cluster every point has the same positive distribution, so there is no
# clustering to learn. test_single_rows_match_batch, test_one_feature_fits,
# test_one_sample_raises, test_1d_input_raises and test_fit_sets_only_trailing_
# underscore_attributes check the same properties with n_clusters=2.
N_CLUSTERS_ONE = "sets n_clusters=1, which DCAN rejects because it needs n_clusters >= 2"
EXPECTED_FAILED_CHECKS = {
    "check_dont_overwrite_parameters": N_CLUSTERS_ONE,
    "check_methods_subset_invariance": N_CLUSTERS_ONE,
    "check_fit2d_1sample": N_CLUSTERS_ONE,
    "check_fit2d_1feature": N_CLUSTERS_ONE,
    "check_fit2d_predict1d": N_CLUSTERS_ONE,
}


@pytest.mark.slow
@parametrize_with_checks(
    # Parameters rather than a DCANConfig keep the test ids short.
    [
        DCAN(
            n_clusters=3,
            config="paper",
            n_steps=2,
            batch_size=8,
            config_overrides=CHECKS_OVERRIDES,
            random_state=0,
        )
    ],
    expected_failed_checks=lambda estimator: EXPECTED_FAILED_CHECKS,
)
def test_sklearn_compatible(estimator, check):
    check(estimator)


@pytest.fixture(scope="module")
def digits(embedded_digits):
    x, y = embedded_digits
    # The digits are sorted by class, so draw rows from all of them.
    rows = np.random.default_rng(0).permutation(x.shape[0])[:300]
    return x[rows].astype(np.float64), y[rows]


@pytest.fixture(scope="module")
def fitted(digits):
    """Two seeds trained together on 300 digits; one is kept."""
    return DCAN(n_clusters=10, config=TINY, n_seeds=2, random_state=0).fit(digits[0])


def _leaves(tree):
    leaves = []
    for leaf in jax.tree.leaves(tree):
        if jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
            leaf = jax.random.key_data(leaf)
        leaves.append(np.asarray(leaf))
    return leaves


def test_fitted_attributes(fitted, digits):
    x, _ = digits
    assert fitted.labels_.shape == (300,)
    assert fitted.labels_.dtype == np.int32
    assert fitted.labels_.min() >= 0
    assert fitted.labels_.max() < 10
    assert fitted.cluster_centers_.shape == (10, 4)
    assert fitted.n_iter_ == 20
    assert fitted.n_features_in_ == 196
    assert fitted.seeds_ == (0, 1)
    assert fitted.selection_scores_.shape == (2,)
    assert fitted.history_["discriminator_loss"].shape == (2, 20)
    np.testing.assert_array_equal(fitted.predict(x), fitted.labels_)
    np.testing.assert_array_equal(fitted.fit_predict(x), fitted.labels_)


def test_transform_gives_latent_points(fitted, digits):
    x, _ = digits
    z = fitted.transform(x)
    assert z.shape == (300, 4)
    assert z.dtype == np.float32
    assert list(fitted.get_feature_names_out()) == ["dcan0", "dcan1", "dcan2", "dcan3"]
    # Each label is the nearest latent cluster centre (k-means assignment).
    distances = ((z[:, None, :] - fitted.cluster_centers_[None]) ** 2).sum(axis=-1)
    np.testing.assert_array_equal(np.argmin(distances, axis=1), fitted.labels_)


def test_kept_seed_has_lowest_inertia_ratio(fitted, digits):
    x, _ = digits
    best = int(np.argmin(fitted.selection_scores_))
    assert fitted.selected_seed_ == fitted.seeds_[best]
    # The kept seed's score, recomputed from the public attributes.
    z = fitted.transform(x).astype(np.float64)
    within = np.sum((z - fitted.cluster_centers_[fitted.labels_]) ** 2)
    total = np.sum((z - z.mean(axis=0)) ** 2)
    np.testing.assert_allclose(within / total, fitted.selection_scores_[best], rtol=1e-5)
    assert 0.0 < fitted.selection_scores_.max() < 1.0


def test_random_state_names_the_trained_seeds(digits):
    x, _ = digits
    model = DCAN(n_clusters=10, config=TINY, n_seeds=2, random_state=5).fit(x)
    direct = train.fit(model.scale_inputs(x), TINY, seeds=(5, 6))
    assert model.seeds_ == (5, 6)
    kept = model.seeds_.index(model.selected_seed_)
    for a, b in zip(_leaves(model.state_), _leaves(direct.state), strict=True):
        np.testing.assert_array_equal(a[0], b[kept])


def test_reconstruction_selection(digits):
    x, _ = digits
    model = DCAN(
        n_clusters=10, config=TINY, n_seeds=2, selection="reconstruction", random_state=0
    ).fit(x)
    kept = model.seeds_.index(model.selected_seed_)
    assert kept == int(np.argmin(model.selection_scores_))
    errors = reconstruction_errors(model.state_, model.scale_inputs(x))
    np.testing.assert_allclose(errors[0], model.selection_scores_[kept], rtol=1e-5)


def test_minmax_scaling_is_stored_and_reused(fitted, digits):
    x, _ = digits
    scaler = MinMaxScaler().fit(x)
    np.testing.assert_allclose(fitted.input_scale_, scaler.scale_, rtol=1e-12)
    np.testing.assert_allclose(fitted.input_offset_, scaler.min_, rtol=1e-12, atol=1e-12)
    new = x[:50] * 1.5
    expected = predict_all(fitted.state_, scaler.transform(new).astype(np.float32))[0]
    np.testing.assert_array_equal(fitted.predict(new), expected)


@pytest.mark.parametrize("scaling", ["standard", "none"])
def test_other_scalings(digits, scaling):
    x, _ = digits
    model = DCAN(n_clusters=10, config=TINY, n_seeds=2, scaling=scaling, random_state=0).fit(x)
    if scaling == "standard":
        expected = StandardScaler().fit_transform(x)
    else:
        expected = x
    np.testing.assert_allclose(model.scale_inputs(x), expected, rtol=1e-5, atol=1e-5)


def test_single_rows_match_batch(fitted, digits):
    x, _ = digits
    rows = x[:12]
    one_by_one = np.concatenate([fitted.predict(row[None]) for row in rows])
    np.testing.assert_array_equal(one_by_one, fitted.predict(rows))
    latent = np.concatenate([fitted.transform(row[None]) for row in rows])
    np.testing.assert_array_equal(latent, fitted.transform(rows))
    shuffled = np.random.default_rng(0).permutation(12)
    np.testing.assert_array_equal(fitted.predict(rows[shuffled]), fitted.predict(rows)[shuffled])


def test_one_feature_fits():
    x = np.concatenate([np.zeros(20), np.ones(20)])[:, None]
    x += np.random.default_rng(0).normal(scale=0.01, size=x.shape)
    model = DCAN(n_clusters=2, config=CHECKS_CONFIG, random_state=0).fit(x)
    assert model.transform(x).shape == (40, 2)
    assert set(model.labels_[:20]).isdisjoint(model.labels_[20:])


def test_one_sample_raises():
    with pytest.raises(ValueError, match=r"n_samples=1 should be >= n_clusters=2"):
        DCAN(n_clusters=2, config=CHECKS_CONFIG).fit(np.ones((1, 3)))


def test_1d_input_raises(fitted):
    with pytest.raises(ValueError, match="Expected 2D array"):
        fitted.predict(np.ones(196))


def test_fit_sets_only_trailing_underscore_attributes(fitted):
    params = set(DCAN().get_params())
    public = {name for name in vars(fitted) if not name.startswith("_")}
    assert {name for name in public - params if not name.endswith("_")} == set()
    assert fitted.get_params()["config"] is TINY


def test_verbose_logs_progress(digits, caplog):
    x, _ = digits
    with caplog.at_level(logging.INFO, logger="dcan_jax"):
        DCAN(n_clusters=10, config=TINY, n_seeds=2, random_state=0, verbose=True).fit(x)
    assert "step 10/20" in caplog.text
    assert "step 20/20" in caplog.text


@pytest.mark.parametrize(
    ("params", "error", "message"),
    [
        ({"config_overrides": {"bogus": 1}}, ValueError, r"Unknown config keys \['bogus'\]"),
        ({"n_steps": "20"}, TypeError, r"n_steps='20' has type str, but it should be int"),
        ({"learning_rate": "fast"}, TypeError, r"learning_rate='fast' has type str"),
        ({"config_overrides": {"encoder_widths": 4}}, TypeError, r"encoder_widths=4 has type"),
        ({"config": 3}, TypeError, r"config=3 should be a config name"),
        ({"config": "nope"}, ValueError, r"Unknown config 'nope'"),
        ({"config_overrides": [1]}, TypeError, r"config_overrides=\[1\] should be a dict"),
        (
            {"n_steps": 5, "config_overrides": {"n_steps": 5}},
            ValueError,
            r"repeats the parameters \['n_steps'\]",
        ),
        ({"n_clusters": 1}, ValueError, r"n_clusters=1 should be >= 2"),
        ({"scaling": "log"}, ValueError, r"scaling='log' is not supported"),
        ({"n_seeds": 0}, ValueError, r"n_seeds=0 should be an int >= 1"),
        ({"selection": "best"}, ValueError, r"selection='best' is not supported"),
        ({"random_state": -1}, ValueError, r"[Ss]eed must be between"),
        (
            {"config": "paper", "selection": "reconstruction"},
            ValueError,
            r"selection='reconstruction' needs a decoder",
        ),
    ],
)
def test_invalid_params_raise(params, error, message):
    x = np.random.default_rng(0).normal(size=(30, 3))
    params = {"n_clusters": 2, **params}
    with pytest.raises(error, match=message):
        DCAN(**params).fit(x)


def test_invalid_data_raises(fitted):
    with pytest.raises(ValueError, match="X has 5 features, but DCAN is expecting 196"):
        fitted.predict(np.ones((3, 5)))
    with pytest.raises(ValueError, match="Input X contains NaN"):
        DCAN(n_clusters=2).fit(np.full((4, 3), np.nan))


def test_inertia_ratio_of_collapsed_latent_space_is_one(fitted):
    collapsed = fitted.state_.replace(
        encoder_params=jax.tree.map(np.zeros_like, fitted.state_.encoder_params)
    )
    np.testing.assert_allclose(inertia_ratios(collapsed, np.ones((5, 196))), [1.0], rtol=0)
