"""dcan_jax: deep clustering with an adversarial-net clustering loss, in JAX."""

from dcan_jax import checkpoint, cluster, data, losses, metrics, nets, step, train
from dcan_jax.checkpoint import CheckpointError, load_state, save_state
from dcan_jax.cluster import ClusterState
from dcan_jax.config import DCANConfig, config_names, get_config
from dcan_jax.estimator import DCAN
from dcan_jax.metrics import adjusted_rand_index, cluster_accuracy, normalized_mutual_info
from dcan_jax.step import TrainState, create_train_state, train_step
from dcan_jax.train import FitResult, TrainingDivergedError, fit

__version__ = "0.1.0"

__all__ = [
    "CheckpointError",
    "ClusterState",
    "DCAN",
    "DCANConfig",
    "FitResult",
    "TrainState",
    "TrainingDivergedError",
    "adjusted_rand_index",
    "checkpoint",
    "cluster",
    "cluster_accuracy",
    "config_names",
    "create_train_state",
    "data",
    "fit",
    "get_config",
    "load_state",
    "losses",
    "metrics",
    "nets",
    "normalized_mutual_info",
    "save_state",
    "step",
    "train",
    "train_step",
]
