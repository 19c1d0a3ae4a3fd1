"""`DCAN`, a scikit-learn estimator that trains DCAN and clusters new data.

Example:
  >>> import numpy as np
  >>> from dcan_jax import DCAN
  >>> x = np.random.default_rng(0).normal(size=(200, 8))
  >>> model = DCAN(n_clusters=3, config="paper", n_steps=20, random_state=0).fit(x)
  >>> model.predict(x[:5]).shape
  (5,)
"""

from __future__ import annotations

import dataclasses
import numbers
import os
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from sklearn.base import (
    BaseEstimator,
    ClassNamePrefixFeaturesOutMixin,
    ClusterMixin,
    TransformerMixin,
)
from sklearn.preprocessing import MinMaxScaler, StandardScaler
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted, validate_data

from dcan_jax import checkpoint, nets, train
from dcan_jax.config import DCANConfig, config_names, get_config
from dcan_jax.progress import ProgressReporter

SCALINGS = ("minmax", "standard", "none")
SELECTIONS = ("inertia_ratio", "reconstruction")

# Config fields that are also constructor parameters; `None` keeps the config's value.
CONFIG_PARAMS = (
    "n_steps",
    "batch_size",
    "learning_rate",
    "pretrain_epochs",
    "reconstruction_weight",
    "cluster_method",
)

# Prediction and encoding run on zero-padded blocks of this many rows, so one
# compiled program serves inputs of every length and a row's result does not
# depend on the other rows passed with it.
_BLOCK_ROWS = 512

# Seed selection scores at most this many rows, drawn with a fixed seed.
_SELECTION_ROWS = 10_000

_MODEL_KIND = "estimator"


def _field_matches(value: Any, hint: Any) -> bool:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_field_matches(value, option) for option in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if origin is tuple:
        return isinstance(value, tuple) and all(_field_matches(v, int) for v in value)
    if hint is float:
        return isinstance(value, numbers.Real) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, numbers.Integral) and not isinstance(value, bool)
    return isinstance(value, hint)


def _coerce(value: Any, hint: Any) -> Any:
    """Turn lists into tuples and NumPy scalars into Python numbers."""
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, list):
        return tuple(_coerce(v, int) for v in value)
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return float(value) if hint is float or hint == float | None else int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    return value


def apply_overrides(base: DCANConfig, overrides: Mapping[str, Any]) -> DCANConfig:
    """Apply `overrides` to `base` after checking each key and value type.

    Lists become tuples and ints are accepted where a float is expected.

    Raises:
      ValueError: for an unknown key or an invalid value.
      TypeError: for a value of the wrong type, naming the expected type.
    """
    hints = typing.get_type_hints(DCANConfig)
    valid = [field.name for field in dataclasses.fields(DCANConfig)]
    unknown = sorted(set(overrides) - set(valid))
    if unknown:
        raise ValueError(f"Unknown config keys {unknown}; valid keys are {valid}.")
    checked = {}
    for name, value in overrides.items():
        hint = hints[name]
        value = _coerce(value, hint)
        if not _field_matches(value, hint):
            expected = str(hint).replace("typing.", "").replace("<class '", "").replace("'>", "")
            raise TypeError(
                f"Config field {name}={value!r} has type {type(value).__name__}, but it should "
                f"be {expected}, e.g. {name}={getattr(base, name)!r}."
            )
        checked[name] = value
    return base.replace(**checked)


def _select_rows(x: np.ndarray, max_rows: int) -> np.ndarray:
    if x.shape[0] <= max_rows:
        return x
    rows = np.sort(np.random.default_rng(0).choice(x.shape[0], max_rows, replace=False))
    return x[rows]


def _padded_blocks(x: np.ndarray):
    """Yield `(block, n_valid)` with every block of shape `(_BLOCK_ROWS, n_features)`."""
    for start in range(0, x.shape[0], _BLOCK_ROWS):
        rows = x[start : start + _BLOCK_ROWS]
        block = np.zeros((_BLOCK_ROWS, x.shape[1]), np.float32)
        block[: rows.shape[0]] = rows
        yield block, rows.shape[0]


def _map_blocks(function: Callable, state: train.TrainState, x: np.ndarray) -> np.ndarray:
    """Apply a seed-vmapped `function(state, block)` to `x` block by block.

    Returns the results concatenated along the sample axis, which is axis 1 after
    the leading seed axis.
    """
    outputs = [
        np.asarray(function(state, jnp.asarray(block)))[:, :n_valid]
        for block, n_valid in _padded_blocks(x)
    ]
    return np.concatenate(outputs, axis=1)


_encode_seeds = jax.jit(jax.vmap(train.encode, in_axes=(0, None)))
_predict_seeds = jax.jit(jax.vmap(train.predict_labels, in_axes=(0, None)))


def _reconstruct(state: train.TrainState, x: jax.Array) -> jax.Array:
    return nets.apply_decoder(state.decoder_params, train.encode(state, x), state.config)


_reconstruct_seeds = jax.jit(jax.vmap(_reconstruct, in_axes=(0, None)))


def encode_all(state: train.TrainState, x: np.ndarray) -> np.ndarray:
    """Encode `x` with every seed of a seed-stacked state; `(n_seeds, n_samples, latent_size)`."""
    return _map_blocks(_encode_seeds, state, np.asarray(x, np.float32))


def predict_all(state: train.TrainState, x: np.ndarray) -> np.ndarray:
    """Assign `x` to clusters with every seed; int32 of shape `(n_seeds, n_samples)`."""
    return _map_blocks(_predict_seeds, state, np.asarray(x, np.float32))


def inertia_ratios(state: train.TrainState, x: np.ndarray) -> np.ndarray:
    """Return each seed's within-cluster sum of squares over the total, shape `(n_seeds,)`.

    Both sums are taken in that seed's latent space, so the ratio does not depend
    on the scale of the latent space. It is in [0, 1], and lower means tighter,
    better separated clusters. A latent space with zero spread scores 1.0.
    """
    latent = encode_all(state, x).astype(np.float64)
    labels = predict_all(state, x)
    means = np.asarray(state.cluster.means, np.float64)
    ratios = []
    for seed_latent, seed_labels, seed_means in zip(latent, labels, means, strict=True):
        within = np.sum((seed_latent - seed_means[seed_labels]) ** 2)
        total = np.sum((seed_latent - seed_latent.mean(axis=0)) ** 2)
        ratios.append(within / total if total > 0 else 1.0)
    return np.asarray(ratios)


def reconstruction_errors(state: train.TrainState, x: np.ndarray) -> np.ndarray:
    """Return each seed's mean squared reconstruction error, shape `(n_seeds,)`."""
    x = np.asarray(x, np.float32)
    reconstruction = _map_blocks(_reconstruct_seeds, state, x).astype(np.float64)
    return np.mean((reconstruction - x[None].astype(np.float64)) ** 2, axis=(1, 2))


def selection_scores(state: train.TrainState, x: np.ndarray, selection: str) -> np.ndarray:
    """Score every seed of a seed-stacked state without labels; lower is better.

    Args:
      state: seed-stacked state, as `dcan_jax.fit` returns it.
      x: the (scaled) training inputs, `(n_samples, n_features)`; at most 10,000
        rows drawn with a fixed seed are scored.
      selection: "inertia_ratio" (see `inertia_ratios`) or "reconstruction" (see
        `reconstruction_errors`; needs a decoder).
    """
    _check_selection(selection, state.config)
    x = _select_rows(np.asarray(x, np.float32), _SELECTION_ROWS)
    if selection == "reconstruction":
        return reconstruction_errors(state, x)
    return inertia_ratios(state, x)


def _check_selection(selection: str, config: DCANConfig) -> None:
    _check_choice("selection", selection, SELECTIONS)
    if selection == "reconstruction" and not config.uses_decoder:
        raise ValueError(
            "selection='reconstruction' needs a decoder, but the config has "
            "pretrain_epochs=0 and reconstruction_weight=0; set one of them above 0 "
            "or use selection='inertia_ratio'."
        )


def _check_choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name}={value!r} is not supported; choose one of {list(choices)}.")


def _take_seed(state: train.TrainState, index: int) -> train.TrainState:
    """Keep one seed of a seed-stacked state, with a seed axis of length 1."""
    return jax.tree.map(lambda leaf: leaf[index : index + 1], state)


class DCAN(ClassNamePrefixFeaturesOutMixin, ClusterMixin, TransformerMixin, BaseEstimator):
    """Deep clustering with an adversarial-net clustering loss, as a scikit-learn estimator.

    `fit` scales the inputs, trains `n_seeds` runs in one vmapped program, keeps
    the run with the best label-free score and clusters the training data with
    it. `predict` applies the stored scaling and the kept run to new data, and
    `transform` maps data to its latent space.

    Parameters are stored as given and checked in `fit`.

    Args:
      n_clusters: number of clusters, >= 2.
      config: name of a built-in config (see `dcan_jax.config_names()`) or a
        `DCANConfig`; the parameters below override its fields.
      n_steps: DCAN training steps; `None` keeps the config's value.
      batch_size: minibatch size of each step; `None` keeps the config's value.
      learning_rate: encoder learning rate; `None` keeps the config's value.
      pretrain_epochs: autoencoder pretraining epochs; `None` keeps the config's
        value.
      reconstruction_weight: weight of the reconstruction loss beside the
        adversarial loss; `None` keeps the config's value.
      cluster_method: "kmeans" or "gmm"; `None` keeps the config's value.
      config_overrides: further config fields to override, e.g.
        `{"encoder_widths": (64, 8)}`; the keys must not repeat a parameter above.
      scaling: input scaling fitted on the training data and stored: "minmax"
        maps each feature to [0, 1] (scikit-learn's `MinMaxScaler`), "standard"
        to zero mean and unit variance (`StandardScaler`), "none" keeps the
        inputs as they are.
      n_seeds: independent runs trained together; one of them is kept.
      selection: label-free rule that picks the kept run by the lowest score.
        "inertia_ratio" scores the within-cluster sum of squares divided by the
        total sum of squares, both in that run's latent space. "reconstruction"
        scores the autoencoder's mean squared error and needs a decoder.
      random_state: an int `s` trains the seeds `s, s + 1, ..., s + n_seeds - 1`,
        the same runs as `dcan_jax.fit(x, config, seeds=range(s, s + n_seeds))`;
        `None` or a `numpy.random.RandomState` draws the first seed from NumPy.
      verbose: show a progress bar on a terminal, or log progress lines to the
        "dcan_jax" logger otherwise.

    Attributes:
      labels_: cluster of each training sample, int32 of shape `(n_samples,)`.
      cluster_centers_: cluster means in the latent space, shape
        `(n_clusters, latent_size)`.
      n_iter_: DCAN training steps taken.
      n_features_in_: number of input features.
      feature_names_in_: input column names, when fitted on a DataFrame with
        string column names.
      config_: the `DCANConfig` that was trained.
      state_: the kept run's `TrainState`, with a leading seed axis of length 1
        as `dcan_jax.fit` returns it.
      seeds_: the seeds trained, a tuple of ints.
      selected_seed_: the seed of the kept run.
      selection_scores_: score of every seed under `selection`, shape
        `(n_seeds,)`.
      input_scale_, input_offset_: the stored scaling, applied as
        `X * input_scale_ + input_offset_`, each of shape `(n_features,)`.
      history_: training metrics of every seed, each of shape
        `(n_seeds, n_steps_run)`; a resumed fit records only the steps it ran.
    """

    def __init__(
        self,
        n_clusters: int = 10,
        config: str | DCANConfig = "default",
        *,
        n_steps: int | None = None,
        batch_size: int | None = None,
        learning_rate: float | None = None,
        pretrain_epochs: int | None = None,
        reconstruction_weight: float | None = None,
        cluster_method: str | None = None,
        config_overrides: dict | None = None,
        scaling: str = "minmax",
        n_seeds: int = 1,
        selection: str = "inertia_ratio",
        random_state: int | np.random.RandomState | None = None,
        verbose: bool = False,
    ):
        self.n_clusters = n_clusters
        self.config = config
        self.n_steps = n_steps
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.pretrain_epochs = pretrain_epochs
        self.reconstruction_weight = reconstruction_weight
        self.cluster_method = cluster_method
        self.config_overrides = config_overrides
        self.scaling = scaling
        self.n_seeds = n_seeds
        self.selection = selection
        self.random_state = random_state
        self.verbose = verbose

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        # Training and inference run in float32 whatever the input dtype.
        tags.transformer_tags.preserves_dtype = ["float32"]
        return tags

    @property
    def _n_features_out(self) -> int:
        return self.config_.latent_size

    def build_config(self) -> DCANConfig:
        """Return the config that `fit` trains: `config` with the parameters applied.

        Raises:
          ValueError: for an unknown config name or key, or an invalid value.
          TypeError: for a value of the wrong type.
        """
        if isinstance(self.config, DCANConfig):
            base = self.config
        elif isinstance(self.config, str):
            base = get_config(self.config)
        else:
            raise TypeError(
                f"config={self.config!r} should be a config name (one of {config_names()}) "
                "or a DCANConfig."
            )
        overrides: dict[str, Any] = {"n_clusters": self.n_clusters}
        for name in CONFIG_PARAMS:
            if getattr(self, name) is not None:
                overrides[name] = getattr(self, name)
        extra = {} if self.config_overrides is None else self.config_overrides
        if not isinstance(extra, Mapping):
            raise TypeError(
                f"config_overrides={extra!r} should be a dict of config fields, "
                "e.g. {'encoder_widths': (64, 8)}."
            )
        repeated = sorted(set(extra) & set(overrides))
        if repeated:
            raise ValueError(
                f"config_overrides repeats the parameters {repeated}; set them only as "
                "parameters of DCAN."
            )
        return apply_overrides(base, {**overrides, **extra})

    def _check_params(self) -> None:
        _check_choice("scaling", self.scaling, SCALINGS)
        if (
            isinstance(self.n_seeds, bool)
            or not isinstance(self.n_seeds, numbers.Integral)
            or self.n_seeds < 1
        ):
            raise ValueError(f"n_seeds={self.n_seeds!r} should be an int >= 1.")

    def _draw_seeds(self) -> tuple[int, ...]:
        # check_random_state validates the value: an int in [0, 2**32 - 1], None or a RandomState.
        rng = check_random_state(self.random_state)
        if isinstance(self.random_state, numbers.Integral):
            first = int(self.random_state)
        else:
            first = int(rng.randint(np.iinfo(np.int32).max - self.n_seeds))
        return tuple(range(first, first + int(self.n_seeds)))

    def _fit_scaling(self, x: np.ndarray) -> None:
        if self.scaling == "minmax":
            scaler = MinMaxScaler().fit(x)
            self.input_scale_ = scaler.scale_.astype(np.float64)
            self.input_offset_ = scaler.min_.astype(np.float64)
        elif self.scaling == "standard":
            scaler = StandardScaler().fit(x)
            self.input_scale_ = 1.0 / scaler.scale_.astype(np.float64)
            self.input_offset_ = -scaler.mean_.astype(np.float64) * self.input_scale_
        else:
            self.input_scale_ = np.ones(x.shape[1])
            self.input_offset_ = np.zeros(x.shape[1])

    def scale_inputs(self, X: np.ndarray) -> np.ndarray:
        """Apply the stored input scaling; returns float32 of the same shape."""
        return (np.asarray(X, np.float64) * self.input_scale_ + self.input_offset_).astype(
            np.float32
        )

    def fit(self, X, y=None):
        """Train on `X` of shape `(n_samples, n_features)`; `y` is ignored.

        Returns:
          The fitted estimator.

        Raises:
          ValueError, TypeError: for invalid parameters or inputs.
          TrainingDivergedError: when the losses become non-finite or all
            sampled points fall in one cluster.
        """
        self.fit_with_callbacks(X)
        return self

    def fit_with_callbacks(
        self,
        X,
        *,
        log_fn: Callable[[int, dict[str, float]], None] | None = None,
        on_chunk: Callable[[train.TrainState, dict[str, np.ndarray]], None] | None = None,
        resume_from: train.TrainState | None = None,
    ) -> train.FitResult:
        """Train like `fit`, with the hooks of `dcan_jax.fit`.

        Args:
          X: training inputs, shape `(n_samples, n_features)`.
          log_fn: called after each chunk of `config.log_every` steps with the
            step count and seed-averaged metrics.
          on_chunk: called after each chunk with the seed-stacked state and the
            chunk's metrics, e.g. to write a checkpoint.
          resume_from: a seed-stacked state from an earlier run with the same
            parameters and data; training continues from its step count.

        Returns:
          The `FitResult` of all seeds, before one is kept.
        """
        X = validate_data(self, X, dtype=[np.float64, np.float32])
        config = self.build_config()
        self._check_params()
        _check_selection(self.selection, config)
        seeds = self._draw_seeds()
        self._fit_scaling(X)
        x = self.scale_inputs(X)

        reporter = None
        if self.verbose:
            start = 0 if resume_from is None else int(np.asarray(resume_from.step).ravel()[0])
            reporter = ProgressReporter(config.n_steps, start)

        def report(step: int, values: dict[str, float]) -> None:
            if reporter is not None:
                reporter.update(step, values)
            if log_fn is not None:
                log_fn(step, values)

        try:
            result = train.fit(
                x, config, seeds, log_fn=report, resume_from=resume_from, on_chunk=on_chunk
            )
        finally:
            if reporter is not None:
                reporter.close()

        scores = selection_scores(result.state, x, self.selection)
        best = int(np.argmin(scores))
        self.config_ = config
        self.seeds_ = seeds
        self.selection_scores_ = scores
        self.selected_seed_ = seeds[best]
        self.history_ = result.history
        self._set_state(_take_seed(result.state, best))
        self.labels_ = self._predict_scaled(x)
        return result

    def _set_state(self, state: train.TrainState) -> None:
        self.state_ = state
        self.cluster_centers_ = np.asarray(state.cluster.means[0])
        self.n_iter_ = int(np.asarray(state.step)[0])

    def _predict_scaled(self, x: np.ndarray) -> np.ndarray:
        return predict_all(self.state_, x)[0]

    def predict(self, X) -> np.ndarray:
        """Assign each row of `X`, shape `(n_samples, n_features)`, to a cluster.

        Returns:
          Cluster indices in `[0, n_clusters)`, int32 of shape `(n_samples,)`.
        """
        check_is_fitted(self)
        X = validate_data(self, X, dtype=[np.float64, np.float32], reset=False)
        return self._predict_scaled(self.scale_inputs(X))

    def transform(self, X) -> np.ndarray:
        """Encode `X`, shape `(n_samples, n_features)`, to `(n_samples, latent_size)`, float32."""
        check_is_fitted(self)
        X = validate_data(self, X, dtype=[np.float64, np.float32], reset=False)
        return encode_all(self.state_, self.scale_inputs(X))[0]

    def save(self, path: str | os.PathLike) -> None:
        """Write the fitted model to `path` atomically; `DCAN.load` reads it back exactly.

        The file contains the parameters, the trained state, the input scaling,
        `labels_` and the training history, in the versioned format of
        `dcan_jax.checkpoint`.
        """
        from dcan_jax import __version__

        check_is_fitted(self)
        fitted = {
            "seeds": list(self.seeds_),
            "selected_seed": int(self.selected_seed_),
            "n_features_in": int(self.n_features_in_),
        }
        if hasattr(self, "feature_names_in_"):
            fitted["feature_names_in"] = [str(name) for name in self.feature_names_in_]
        metadata = {
            "kind": _MODEL_KIND,
            "dcan_jax_version": __version__,
            "params": _params_to_json(self.get_params()),
            "state": checkpoint.state_metadata(self.state_),
            "fitted": fitted,
        }
        arrays = {
            "state": checkpoint.state_to_arrays(self.state_),
            "input_scale": self.input_scale_,
            "input_offset": self.input_offset_,
            "labels": self.labels_,
            "selection_scores": self.selection_scores_,
            "history": dict(self.history_),
        }
        checkpoint.write_file(path, metadata, arrays)

    @classmethod
    def load(cls, path: str | os.PathLike) -> DCAN:
        """Read a model written by `save`.

        Raises:
          CheckpointError: when the file is missing, truncated, corrupted, of
            another format version or not a saved `DCAN` model.
        """
        metadata, arrays = checkpoint.read_file(path)
        if metadata.get("kind") != _MODEL_KIND:
            raise checkpoint.CheckpointError(
                f"{str(path)!r} contains a {metadata.get('kind')!r}, not a DCAN model; load a "
                "train state with dcan_jax.checkpoint.load_state."
            )
        try:
            model = cls(**_params_from_json(metadata["params"]))
            fitted = metadata["fitted"]
            state = checkpoint.state_from_arrays(arrays["state"], metadata["state"], path)
            model.config_ = state.config
            model.seeds_ = tuple(int(seed) for seed in fitted["seeds"])
            model.selected_seed_ = int(fitted["selected_seed"])
            model.n_features_in_ = int(fitted["n_features_in"])
            if "feature_names_in" in fitted:
                model.feature_names_in_ = np.asarray(fitted["feature_names_in"], dtype=object)
            model.input_scale_ = np.asarray(arrays["input_scale"])
            model.input_offset_ = np.asarray(arrays["input_offset"])
            model.labels_ = np.asarray(arrays["labels"])
            model.selection_scores_ = np.asarray(arrays["selection_scores"])
            model.history_ = {name: np.asarray(v) for name, v in arrays["history"].items()}
        except (KeyError, TypeError) as error:
            raise checkpoint.CheckpointError(
                f"{str(path)!r} lacks a part of a DCAN model ({error!r}); it was not written "
                "by DCAN.save of this dcan_jax release."
            ) from error
        model._set_state(state)
        return model


def _params_to_json(params: dict[str, Any]) -> dict[str, Any]:
    """Make `get_params()` JSON-serialisable; a RandomState instance is stored as None."""
    converted = dict(params)
    if isinstance(params["config"], DCANConfig):
        converted["config"] = {"dcan_config": params["config"].to_dict()}
    if not (params["random_state"] is None or isinstance(params["random_state"], numbers.Integral)):
        converted["random_state"] = None
    else:
        converted["random_state"] = (
            None if params["random_state"] is None else int(params["random_state"])
        )
    if params["config_overrides"] is not None:
        converted["config_overrides"] = dict(params["config_overrides"])
    return converted


def _params_from_json(params: dict[str, Any]) -> dict[str, Any]:
    converted = dict(params)
    if isinstance(params.get("config"), dict):
        converted["config"] = apply_overrides(DCANConfig(), params["config"]["dcan_config"])
    if params.get("config_overrides") is not None:
        converted["config_overrides"] = {
            name: tuple(value) if isinstance(value, list) else value
            for name, value in params["config_overrides"].items()
        }
    return converted
