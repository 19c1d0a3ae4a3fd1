"""Settings of the baseline methods, sharing the DCAN config's autoencoder.

A `BaselineConfig` is frozen and hashable, so it is a static argument of the
compiled runs. Its `network` field is a `DCANConfig`, which gives the
autoencoder architecture and its pretraining, the number of clusters, the
fine-tuning budget (`n_steps`, `batch_size`) and the clustering updates
(`cluster_sample_size`, `cluster_momentum`, `covariance_reg`,
`final_cluster_iters`). A baseline and DCAN built on the same `network` share
everything but the clustering loss. Learning rates and loss weights here are
only defaults, because the runs take them as traced arrays so that grids over
them vmap.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from dcan_jax import config as dcan_config

KL_DECODE_INPUTS = ("sample", "mean")


@dataclasses.dataclass(frozen=True)
class BaselineConfig:
    """Settings of k-means, GMM, AE + k-means, ABC, DC-GMM, DEC and IDEC runs.

    Attributes:
      network: autoencoder, pretraining, cluster count, step budget and
        clustering-update settings, as DCAN uses them.
      kmeans_restarts: k-means++ restarts of every full k-means fit; the fit
        with the lowest inertia is kept, a label-free choice.
      kmeans_iters: Lloyd iterations of each restart, and E-M iterations of the
        GMM baseline.
      learning_rate: Adam learning rate of ABC and DC-GMM fine-tuning.
      abc_weight: ABC's lambda, the weight of the squared distance to the
        assigned k-means centre beside the reconstruction error.
      kl_weight: DC-GMM's weight of the KL divergence beside the reconstruction
        error.
      kl_decode: what DC-GMM's decoder reconstructs from: "sample" (a draw
        from the encoder's Gaussian, as in a VAE) or "mean" (the encoder mean,
        so the variance head enters only the KL term).
      dec_learning_rate: Adam learning rate of DEC and IDEC fine-tuning.
      dec_alpha: degrees of freedom of DEC's Student-t kernel.
      target_update_interval: steps between recomputations of DEC's target
        distribution over all training points.
      idec_gamma: IDEC's weight of the clustering loss beside the
        reconstruction error; 0.1 is the value the IDEC paper uses.
    """

    network: dcan_config.DCANConfig = dcan_config.DEFAULT
    kmeans_restarts: int = 10
    kmeans_iters: int = 100
    learning_rate: float = 1e-4
    abc_weight: float = 0.1
    kl_weight: float = 1e-3
    kl_decode: str = "sample"
    dec_learning_rate: float = 1e-3
    dec_alpha: float = 1.0
    target_update_interval: int = 140
    idec_gamma: float = 0.1

    def __post_init__(self):
        _validate(self)

    def replace(self, **changes: Any) -> BaselineConfig:
        """Return a copy with `changes` applied and validated."""
        names = [field.name for field in dataclasses.fields(self)]
        unknown = sorted(set(changes) - set(names))
        if unknown:
            raise ValueError(f"Unknown baseline config keys {unknown}; valid keys are {names}.")
        return dataclasses.replace(self, **changes)

    def replace_network(self, **changes: Any) -> BaselineConfig:
        """Return a copy whose `network` has `changes` applied."""
        return dataclasses.replace(self, network=self.network.replace(**changes))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _validate(config: BaselineConfig) -> None:
    if not isinstance(config.network, dcan_config.DCANConfig):
        raise TypeError(f"network should be a DCANConfig, got {type(config.network).__name__}.")
    for name in ("kmeans_restarts", "kmeans_iters", "target_update_interval"):
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name}={value!r} should be a positive int.")
    for name in ("learning_rate", "dec_learning_rate", "dec_alpha"):
        value = getattr(config, name)
        if not value > 0:
            raise ValueError(f"{name}={value} should be > 0.")
    if config.kl_decode not in KL_DECODE_INPUTS:
        raise ValueError(
            f"kl_decode={config.kl_decode!r} is not supported; choose one of "
            f"{list(KL_DECODE_INPUTS)}."
        )
    for name in ("abc_weight", "kl_weight", "idec_gamma"):
        value = getattr(config, name)
        if not value >= 0:
            raise ValueError(f"{name}={value} should be >= 0.")
