"""Time ClustPy's autoencoder pretraining, AEC and DEC; prints one JSON object.

This script runs in a separate virtual environment with PyTorch and ClustPy
(`benchmarks/requirements-torch.txt`) and imports nothing from dcan_jax:

    .venv-bench-torch/bin/python benchmarks/clustpy_peer.py --data inputs.npz \\
        --pretrain-epochs 2 --clustering-epochs 2

AEC is ClustPy's name for the ABC loss: reconstruction error plus a weighted
squared distance to the assigned centre. Both methods start from the same
pretrained autoencoder. ClustPy's training loops iterate over `tqdm.trange`
(ClustPy 0.0.3), so `EpochClock` swaps in a progress bar that records the wall
time of each loop body. That time is one epoch, free of the fixed costs of a
fit (copying the network, encoding the data, the k-means runs before and after
training).
"""

from __future__ import annotations

import argparse
import json
import time
from importlib import metadata

import numpy as np
import torch
import tqdm
from clustpy.deep import AEC, DEC
from clustpy.deep.neural_networks import FeedforwardAutoencoder
from sklearn.cluster import KMeans


class EpochClock:
    """Record the wall seconds of each iteration of every `tqdm.trange` loop, by label."""

    def __init__(self):
        self.seconds: dict[str, list[float]] = {}

    def __enter__(self) -> EpochClock:
        self._original = tqdm.trange
        clock = self

        class TimedProgress(tqdm.tqdm):
            def __iter__(self):
                times = clock.seconds.setdefault(self.desc, [])
                last = time.perf_counter()
                for item in super().__iter__():
                    yield item
                    now = time.perf_counter()
                    times.append(now - last)
                    last = now

        tqdm.trange = lambda *args, **kwargs: TimedProgress(range(*args), **kwargs)
        return self

    def __exit__(self, *exc_info) -> None:
        tqdm.trange = self._original


def pretrain(x: np.ndarray, args: argparse.Namespace) -> tuple[FeedforwardAutoencoder, list]:
    """Train the autoencoder on reconstruction alone and return it with its epoch seconds."""
    layers = [x.shape[1], *args.layers]
    network = FeedforwardAutoencoder(
        layers=layers, activation_fn=torch.nn.ReLU, random_state=args.seed
    )
    with EpochClock() as clock:
        network.fit(
            n_epochs=args.pretrain_epochs,
            optimizer_params={"lr": args.pretrain_learning_rate},
            batch_size=args.batch_size,
            data=x,
        )
    (epochs,) = clock.seconds.values()
    return network, epochs


def make_aec(network, n_epochs: int, args: argparse.Namespace) -> AEC:
    return AEC(
        n_clusters=args.n_clusters,
        batch_size=args.batch_size,
        clustering_optimizer_params={"lr": args.abc_learning_rate},
        pretrain_epochs=0,
        clustering_epochs=n_epochs,
        clustering_loss_weight=args.abc_weight,
        neural_network=network,
        # Without an initial clustering class AEC starts from random labels.
        # k-means matches the start of dcan_jax's ABC and of ClustPy's DEC.
        initial_clustering_class=KMeans,
        device="cpu",
        random_state=args.seed,
    )


def make_dec(network, n_epochs: int, args: argparse.Namespace) -> DEC:
    return DEC(
        n_clusters=args.n_clusters,
        batch_size=args.batch_size,
        clustering_optimizer_params={"lr": args.dec_learning_rate},
        pretrain_epochs=0,
        clustering_epochs=n_epochs,
        neural_network=network,
        device="cpu",
        random_state=args.seed,
    )


def time_method(make, network, x: np.ndarray, args: argparse.Namespace) -> dict:
    """Fit once and return the fit's seconds, its shortest epoch and the labels."""
    with EpochClock() as clock:
        start = time.perf_counter()
        trained = make(network, args.clustering_epochs, args).fit(x)
        seconds = time.perf_counter() - start
    (epochs,) = clock.seconds.values()
    # DEC's labels_ come from a k-means run after training, and dec_labels_ are DEC's own.
    labels = getattr(trained, "dec_labels_", trained.labels_)
    return {
        "seconds": seconds,
        "epoch_seconds": epochs,
        "epoch_s": min(epochs),
        "labels": np.asarray(labels).astype(int).tolist(),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help=".npz file with the matrix under key x")
    parser.add_argument("--n-clusters", type=int, default=10)
    parser.add_argument(
        "--layers", type=int, nargs="+", default=[500, 500, 2000, 10], help="encoder widths"
    )
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--pretrain-epochs", type=int, default=2)
    parser.add_argument("--clustering-epochs", type=int, default=2)
    parser.add_argument("--pretrain-learning-rate", type=float, default=1e-3)
    parser.add_argument("--abc-learning-rate", type=float, default=1e-4)
    parser.add_argument("--abc-weight", type=float, default=0.1, help="weight of the ABC term")
    parser.add_argument("--dec-learning-rate", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.pretrain_epochs < 1 or args.clustering_epochs < 1:
        parser.error("--pretrain-epochs and --clustering-epochs should be >= 1.")

    torch.manual_seed(args.seed)
    x = np.load(args.data)["x"].astype(np.float32)
    # One untimed epoch on two batches starts PyTorch's thread pool and allocator.
    warm_up = argparse.Namespace(**{**vars(args), "pretrain_epochs": 1})
    pretrain(x[: 2 * args.batch_size], warm_up)
    network, pretrain_epochs = pretrain(x, args)
    record = {
        "torch": torch.__version__,
        "clustpy": metadata.version("clustpy"),
        "torch_threads": torch.get_num_threads(),
        "pretrain": {"epoch_seconds": pretrain_epochs, "epoch_s": min(pretrain_epochs)},
        "abc": time_method(make_aec, network, x, args),
        "dec": time_method(make_dec, network, x, args),
    }
    print(json.dumps(record))


if __name__ == "__main__":
    main()
