"""Baselines for DCAN: k-means, GMM, AE + k-means, ABC, DC-GMM, DEC and IDEC.

Every baseline is a pure run function of one PRNG key that `jax.vmap`s over
seeds and traced hyperparameters. `run_method` compiles it once and shards the
runs over all devices, and `run_dcan` returns DCAN's own runs in the same shape.

Example:
  >>> import numpy as np
  >>> from dcan_jax import baselines
  >>> x = np.random.default_rng(0).random((200, 8), np.float32)
  >>> config = baselines.BaselineConfig().replace(kmeans_restarts=2, kmeans_iters=5)
  >>> result = baselines.run_method("kmeans", x, config, seeds=[0, 1])
  >>> result.labels.shape
  (2, 200)
"""

from dcan_jax.baselines.common import MethodOutput
from dcan_jax.baselines.config import BaselineConfig
from dcan_jax.baselines.runner import (
    METHODS,
    Pretrained,
    RunResult,
    make_mesh,
    pretrain,
    run_dcan,
    run_method,
)

__all__ = [
    "METHODS",
    "BaselineConfig",
    "MethodOutput",
    "Pretrained",
    "RunResult",
    "make_mesh",
    "pretrain",
    "run_dcan",
    "run_method",
]
