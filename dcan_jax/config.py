"""Typed, validated configurations for DCAN training.

A `DCANConfig` is frozen and hashable, so it can be a static argument of a jitted
function. Named configurations come from `get_config(name)`.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import Any

ACTIVATIONS = ("tanh", "relu", "sigmoid", "linear")
CLUSTER_METHODS = ("kmeans", "gmm")
CLUSTER_UPDATES = ("sample", "running")
ENCODER_LOSSES = ("saturating", "non_saturating")
DISCRIMINATOR_INPUTS = ("raw", "cluster", "total")
OPTIMIZERS = ("sgd", "adam")
PRETRAIN_SCHEDULES = ("constant", "cosine")


@dataclasses.dataclass(frozen=True)
class DCANConfig:
    """Settings of one DCAN run. Shape-determining fields are static under `jit`.

    Attributes:
      n_clusters: number of clusters K.
      encoder_widths: widths of the encoder's hidden layers followed by the latent
        size; the input size comes from the data.
      discriminator_widths: widths of the discriminator's hidden layers; its output
        is one logit.
      decoder_widths: widths of the decoder's hidden layers; the output size is the
        input size. `None` mirrors the encoder.
      activation: hidden-layer activation of the encoder and decoder.
      discriminator_activation: hidden-layer activation of the discriminator.
        tanh saturates, so the discriminator cannot grow without bound far from
        the data, where an encoder could otherwise chase it.
      latent_activation: activation of the encoder's output layer.
      decoder_output_activation: activation of the decoder's output layer.
      n_steps: number of DCAN training steps.
      batch_size: minibatch size of each step.
      cluster_sample_size: points encoded for each clustering update.
      cluster_update: "sample" encodes `cluster_sample_size` fresh points for
        each clustering update. "running" updates running cluster statistics
        from the minibatch the step encodes anyway, an online E-M that forgets
        a fraction `batch_size * (1 - cluster_momentum) / cluster_sample_size`
        of its statistics per step, so both modes average over about as many
        points.
      cluster_method: "kmeans" (hard assignments) or "gmm" (diagonal covariances).
      cluster_momentum: weight of the previous cluster statistics in each update, in
        [0, 1). 0 replaces them with one E-M step's estimate.
      covariance_reg: variance floor added to every cluster variance.
      positive_scale: positives are drawn with this times the cluster's standard
        deviation; 1.0 draws from the cluster's own Gaussian.
      condition_discriminator: whether the discriminator also receives the one-hot
        assigned cluster.
      discriminator_input: what the discriminator receives. "raw" passes latent
        points as they are. "cluster" standardises each point by its assigned
        cluster's mean and standard deviation. "total" centres it on the
        assigned cluster's mean and divides by the latent space's total
        standard deviation.
      encoder_loss: "saturating" descends log(1 - D(E(x))) as written in the
        objective; "non_saturating" descends -log D(E(x)).
      reconstruction_weight: weight of the decoder's mean squared error in the
        encoder loss; 0 trains no decoder during DCAN steps.
      adversarial_weight: weight of the adversarial term in the encoder loss; 0
        turns DCAN steps into plain autoencoder training, a control run.
      optimizer: "sgd" (with momentum) or "adam", for both networks.
      learning_rate: encoder (and decoder) learning rate.
      discriminator_learning_rate: `None` uses `learning_rate`.
      momentum: SGD momentum.
      pretrain_epochs: autoencoder pretraining epochs before DCAN, 0 for none.
      pretrain_batch_size: pretraining minibatch size.
      pretrain_learning_rate: Adam learning rate of pretraining.
      pretrain_schedule: "constant" keeps `pretrain_learning_rate`; "cosine"
        decays it to 0 over the pretraining steps.
      pretrain_input_noise: fraction of input entries set to 0 in each
        pretraining minibatch, in [0, 1); the decoder still reconstructs the
        clean input (a denoising autoencoder). 0 trains a plain autoencoder.
      init_cluster_sample_size: points encoded for the initial clustering.
      init_cluster_iters: k-means iterations of the initial clustering, after
        k-means++ seeding.
      init_cluster_restarts: k-means++ seedings of the initial clustering; the
        one with the lowest inertia is kept.
      final_cluster_iters: E-M iterations over all training points after training,
        warm-started from the training clustering, 0 for none.
      log_every: steps between progress lines; also the compiled chunk length.
    """

    n_clusters: int = 10
    encoder_widths: tuple[int, ...] = (384, 256)
    discriminator_widths: tuple[int, ...] = (16,)
    decoder_widths: tuple[int, ...] | None = None
    activation: str = "tanh"
    discriminator_activation: str = "tanh"
    latent_activation: str = "linear"
    decoder_output_activation: str = "sigmoid"
    n_steps: int = 500
    batch_size: int = 16
    cluster_sample_size: int = 600
    cluster_update: str = "sample"
    cluster_method: str = "kmeans"
    cluster_momentum: float = 0.0
    covariance_reg: float = 1e-4
    positive_scale: float = 1.0
    condition_discriminator: bool = False
    discriminator_input: str = "raw"
    encoder_loss: str = "saturating"
    reconstruction_weight: float = 0.0
    adversarial_weight: float = 1.0
    optimizer: str = "sgd"
    learning_rate: float = 1e-3
    discriminator_learning_rate: float | None = None
    momentum: float = 0.9
    pretrain_epochs: int = 0
    pretrain_batch_size: int = 256
    pretrain_learning_rate: float = 1e-3
    pretrain_schedule: str = "constant"
    pretrain_input_noise: float = 0.0
    init_cluster_sample_size: int = 10_000
    init_cluster_iters: int = 20
    init_cluster_restarts: int = 1
    final_cluster_iters: int = 0
    log_every: int = 100

    def __post_init__(self):
        _validate(self)

    @property
    def running_cluster_rate(self) -> float:
        """Fraction of the running cluster statistics replaced per step, in (0, 1]."""
        rate = self.batch_size * (1.0 - self.cluster_momentum) / self.cluster_sample_size
        return min(rate, 1.0)

    @property
    def latent_size(self) -> int:
        return self.encoder_widths[-1]

    @property
    def resolved_decoder_widths(self) -> tuple[int, ...]:
        """Decoder hidden widths, mirroring the encoder when not given."""
        if self.decoder_widths is not None:
            return self.decoder_widths
        return tuple(reversed(self.encoder_widths[:-1]))

    @property
    def uses_decoder(self) -> bool:
        return self.reconstruction_weight > 0 or self.pretrain_epochs > 0

    def replace(self, **changes: Any) -> DCANConfig:
        """Return a copy with `changes` applied and validated."""
        unknown = sorted(set(changes) - {f.name for f in dataclasses.fields(self)})
        if unknown:
            raise ValueError(f"Unknown config keys {unknown}; valid keys are {field_names()}.")
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# Fields that fix the autoencoder and its pretraining; configs that agree on
# them can share one pretrained autoencoder per seed.
AUTOENCODER_FIELDS = (
    "encoder_widths",
    "decoder_widths",
    "activation",
    "latent_activation",
    "decoder_output_activation",
    "pretrain_epochs",
    "pretrain_batch_size",
    "pretrain_learning_rate",
    "pretrain_schedule",
    "pretrain_input_noise",
)


def field_names() -> list[str]:
    return [f.name for f in dataclasses.fields(DCANConfig)]


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name}={value!r} is not supported; choose one of {list(choices)}.")


def _check_positive_ints(name: str, values: tuple[int, ...], allow_empty: bool) -> None:
    if not isinstance(values, tuple) or (not values and not allow_empty):
        raise TypeError(f"{name}={values!r} should be a non-empty tuple of ints.")
    for width in values:
        if isinstance(width, bool) or not isinstance(width, int) or width < 1:
            raise ValueError(f"{name}={values!r} should contain only positive ints.")


def _validate(config: DCANConfig) -> None:
    for name in (
        "n_clusters",
        "n_steps",
        "batch_size",
        "cluster_sample_size",
        "pretrain_batch_size",
        "init_cluster_sample_size",
        "init_cluster_restarts",
        "log_every",
    ):
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name}={value!r} should be a positive int.")
    for name in ("pretrain_epochs", "init_cluster_iters", "final_cluster_iters"):
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{name}={value!r} should be an int >= 0.")
    if config.n_clusters < 2:
        raise ValueError(f"n_clusters={config.n_clusters} should be >= 2.")
    _check_positive_ints("encoder_widths", config.encoder_widths, allow_empty=False)
    _check_positive_ints("discriminator_widths", config.discriminator_widths, allow_empty=True)
    if config.decoder_widths is not None:
        _check_positive_ints("decoder_widths", config.decoder_widths, allow_empty=True)
    for name in (
        "activation",
        "discriminator_activation",
        "latent_activation",
        "decoder_output_activation",
    ):
        _check_choice(name, getattr(config, name), ACTIVATIONS)
    _check_choice("cluster_method", config.cluster_method, CLUSTER_METHODS)
    _check_choice("cluster_update", config.cluster_update, CLUSTER_UPDATES)
    _check_choice("encoder_loss", config.encoder_loss, ENCODER_LOSSES)
    _check_choice("discriminator_input", config.discriminator_input, DISCRIMINATOR_INPUTS)
    _check_choice("optimizer", config.optimizer, OPTIMIZERS)
    _check_choice("pretrain_schedule", config.pretrain_schedule, PRETRAIN_SCHEDULES)
    if not 0.0 <= config.pretrain_input_noise < 1.0:
        raise ValueError(
            f"pretrain_input_noise={config.pretrain_input_noise} should be in [0, 1), "
            "the fraction of input entries set to 0."
        )
    if not 0.0 <= config.cluster_momentum < 1.0:
        raise ValueError(f"cluster_momentum={config.cluster_momentum} should be in [0, 1).")
    if not 0.0 <= config.momentum < 1.0:
        raise ValueError(f"momentum={config.momentum} should be in [0, 1).")
    for name in ("learning_rate", "pretrain_learning_rate", "covariance_reg", "positive_scale"):
        value = getattr(config, name)
        if not value > 0:
            raise ValueError(f"{name}={value} should be > 0.")
    lr = config.discriminator_learning_rate
    if lr is not None and not lr > 0:
        raise ValueError(f"discriminator_learning_rate={lr} should be > 0 or None.")
    if config.adversarial_weight < 0:
        raise ValueError(f"adversarial_weight={config.adversarial_weight} should be >= 0.")
    if config.reconstruction_weight < 0:
        raise ValueError(f"reconstruction_weight={config.reconstruction_weight} should be >= 0.")


# MNIST settings of Lim, "Deep clustering using adversarial net based clustering
# loss" (the DCAN paper, arXiv 2025): tanh 196-384-256 encoder, 256-16-1 discriminator,
# minibatch 16, 600 points per clustering update, one k-means iteration per step,
# 500 iterations, SGD with momentum (learning rate in [1e-5, 1e-3]).
PAPER_MNIST = DCANConfig()

# A pretrained ReLU autoencoder (the DEC-era 500-500-2000-10 shape) kept in the
# encoder loss beside the adversarial term, a tanh discriminator that receives the
# assigned cluster and trains ten times faster than the encoder, moving-average
# cluster statistics and positives at 0.3 times the cluster's spread. A
# reconstruction weight of 196 makes the mean squared error over 196 pixels
# weigh as the per-sample squared error; with weight 1 the adversarial term
# dominates and the latent space loses its structure. On MNIST these settings
# raise ACC over the pretrained start on each of 10 seeds; see docs/results.md.
DEFAULT = DCANConfig(
    encoder_widths=(500, 500, 2000, 10),
    discriminator_widths=(64,),
    activation="relu",
    discriminator_activation="tanh",
    decoder_output_activation="linear",
    n_steps=1000,
    batch_size=256,
    cluster_sample_size=1024,
    cluster_momentum=0.9,
    positive_scale=0.3,
    condition_discriminator=True,
    encoder_loss="non_saturating",
    reconstruction_weight=196.0,
    optimizer="adam",
    learning_rate=1e-4,
    discriminator_learning_rate=1e-3,
    pretrain_epochs=20,
    init_cluster_restarts=5,
    final_cluster_iters=20,
)

_CONFIGS: dict[str, DCANConfig] = {
    "default": DEFAULT,
    "paper": PAPER_MNIST,
    # Reuters-10k and CIFAR-10 networks as listed in the DCAN paper's experiments.
    "paper_reuters10k": DCANConfig(
        n_clusters=4, encoder_widths=(100, 500), discriminator_widths=(100,)
    ),
    "paper_cifar10": DCANConfig(encoder_widths=(1024, 512, 128), discriminator_widths=(16,)),
    # 20 Newsgroups enters as the same 2,000 tf-idf features as Reuters-10k, so it
    # keeps the paper's Reuters networks (2000-100-500 encoder, 500-100-1
    # discriminator) with 20 clusters.
    "newsgroups": DCANConfig(n_clusters=20, encoder_widths=(100, 500), discriminator_widths=(100,)),
}


def config_names() -> list[str]:
    return sorted(_CONFIGS)


def register_config(name: str, config: DCANConfig) -> None:
    """Make `config` available to `get_config(name)`."""
    _CONFIGS[name] = config


def get_config(name: str, **overrides: Any) -> DCANConfig:
    """Return the named configuration with `overrides` applied.

    Raises:
      ValueError: for an unknown name or an unknown override key.
    """
    if name not in _CONFIGS:
        raise ValueError(f"Unknown config {name!r}; available configs are {config_names()}.")
    return _CONFIGS[name].replace(**overrides) if overrides else _CONFIGS[name]


def config_from_mapping(values: Mapping[str, Any], base: DCANConfig | None = None) -> DCANConfig:
    """Build a config from a JSON-like mapping; lists become tuples."""
    if not isinstance(values, Mapping):
        raise TypeError(f"A config should be a mapping of keys to values, got {type(values)}.")
    converted = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
    return (base or DCANConfig()).replace(**converted)


def load_config_file(path: str) -> DCANConfig:
    """Read a config from a JSON file of overrides on the `paper` config's values."""
    try:
        with open(path) as f:
            values = json.load(f)
    except OSError as error:
        raise ValueError(f"Cannot read config file {path!r}: {error.strerror}.") from error
    except json.JSONDecodeError as error:
        raise ValueError(f"Config file {path!r} is not valid JSON: {error}.") from error
    return config_from_mapping(values)
