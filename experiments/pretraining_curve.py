"""A pretraining curve: autoencoder + k-means scored as pretraining epochs go on.

    python -m experiments.pretraining_curve --dataset mnist --seeds 2 --epochs 60 --every 10

Pretrains one autoencoder per seed (all seeds vmapped) with the config's
settings, in chunks of `--every` epochs that continue the same Adam state. After
each chunk it encodes the whole training split and fits k-means, keeping the
restart with the lowest inertia as the Table 2 harness does. It records the
reconstruction loss, the label-free ratio of within-cluster to total sum of
squares, and ACC, NMI and ARI. Labels are used only for those scores. Results
go to `<out>/pretraining-<dataset>.json` after every chunk, so an interrupted
run keeps what it measured.

The epoch shuffles follow one key per epoch split from the seed's pretraining
key for the whole `--epochs` budget. So the curve is that of one run of
`--epochs` epochs, and its first chunks are not the runs of shorter budgets.
"""

from __future__ import annotations

import argparse
import functools
import logging
import pathlib
import time
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from dcan_jax import cluster as clustering
from dcan_jax import metrics, nets, train
from dcan_jax.baselines.common import fit_kmeans
from dcan_jax.data import load_image_dataset
from dcan_jax.step import init_train_state
from experiments import common

logger = logging.getLogger("experiments.pretraining_curve")


def start_params(seed: int, config, n_features: int) -> dict:
    """Return the untrained autoencoder `train.fit` would pretrain for `seed`."""
    params_key = jax.random.split(jax.random.key(seed), 4)[0]
    return init_train_state(params_key, config, n_features).autoencoder_params


def epoch_keys(seed: int, n_epochs: int) -> jax.Array:
    """Return one shuffle key per epoch, from the seed's pretraining key."""
    pretrain_key = jax.random.split(jax.random.key(seed), 4)[1]
    return jax.random.split(pretrain_key, n_epochs)


def make_chunk(config, x: jax.Array):
    """Return a jitted, seed-vmapped function that runs epochs and clusters."""
    tx = train.pretrain_optimizer(config, x.shape[0])
    epoch = functools.partial(train._pretrain_epoch, x=x, config=config, tx=tx)

    def one_seed(params, opt_state, keys, kmeans_key, kmeans_iters, kmeans_restarts):
        (params, opt_state), losses = jax.lax.scan(epoch, (params, opt_state), keys)
        z = nets.apply_encoder(params["encoder"], x, config)
        cluster, _ = fit_kmeans(
            kmeans_key, z, config.n_clusters, kmeans_iters, kmeans_restarts, config.covariance_reg
        )
        labels = clustering.predict(cluster, z, "kmeans")
        within = clustering.inertia(cluster, z)
        total = jnp.sum((z - jnp.mean(z, axis=0)) ** 2)
        return params, opt_state, losses, labels, within / total

    def run(params, opt_state, keys, kmeans_keys, kmeans_iters, kmeans_restarts):
        return jax.vmap(lambda p, o, k, c: one_seed(p, o, k, c, kmeans_iters, kmeans_restarts))(
            params, opt_state, keys, kmeans_keys
        )

    return jax.jit(run, static_argnums=(4, 5)), tx


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--dataset", choices=("mnist", "fashion-mnist"), default="mnist")
    parser.add_argument("--data-dir", default=None, help="defaults to $DCAN_JAX_DATA")
    parser.add_argument("--config", default="default", help="config name of the autoencoder")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one config field, e.g. --set pretrain_batch_size=64",
    )
    parser.add_argument("--seeds", type=int, default=2, help="number of seeds, run vmapped")
    parser.add_argument("--first-seed", type=int, default=0, help="first seed of the range")
    parser.add_argument("--epochs", type=int, default=60, help="total pretraining epochs")
    parser.add_argument("--every", type=int, default=10, help="epochs between measurements")
    parser.add_argument("--kmeans-restarts", type=int, default=10)
    parser.add_argument("--kmeans-iters", type=int, default=100)
    parser.add_argument("--out", default="runs/pretraining", help="output directory")
    return parser


def check_args(args: argparse.Namespace) -> None:
    for name in ("seeds", "epochs", "every", "kmeans_restarts", "kmeans_iters"):
        value = getattr(args, name)
        if value < 1:
            raise SystemExit(f"invalid --{name.replace('_', '-')}={value}: it should be >= 1.")
    if args.epochs % args.every:
        raise SystemExit(
            f"invalid --epochs={args.epochs}: it should be a multiple of --every={args.every}, "
            f"e.g. --epochs {args.epochs - args.epochs % args.every or args.every}."
        )


def main(argv: Sequence[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    check_args(args)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    overrides = common.parse_overrides(args.set)
    config = common.resolve_config(args.config, {**overrides, "pretrain_epochs": args.epochs})
    dataset = load_image_dataset(args.dataset, data_dir=args.data_dir, allow_embedded=False)
    x = jnp.asarray(dataset.x_train, jnp.float32)
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))

    chunk, tx = make_chunk(config, x)
    params = jax.tree.map(
        lambda *leaves: jnp.stack(leaves),
        *[start_params(seed, config, x.shape[1]) for seed in seeds],
    )
    opt_state = jax.vmap(tx.init)(params)
    keys = jnp.stack([epoch_keys(seed, args.epochs) for seed in seeds])

    out = pathlib.Path(args.out) / f"pretraining-{args.dataset}.json"
    record = {
        "config": config.to_dict(),
        "seeds": seeds,
        "kmeans": {"restarts": args.kmeans_restarts, "iters": args.kmeans_iters},
        "command": "python -m experiments.pretraining_curve " + " ".join(argv or []),
        "points": [],
    }
    for done in range(args.every, args.epochs + 1, args.every):
        start = time.perf_counter()
        kmeans_keys = jnp.stack([jax.random.fold_in(jax.random.key(s), done) for s in seeds])
        params, opt_state, losses, labels, ratio = chunk(
            params,
            opt_state,
            keys[:, done - args.every : done],
            kmeans_keys,
            args.kmeans_iters,
            args.kmeans_restarts,
        )
        labels = np.asarray(labels)
        scores = [metrics.evaluate(dataset.y_train, row) for row in labels]
        point = {
            "epochs": done,
            "reconstruction_loss": np.asarray(losses)[:, -1].tolist(),
            "within_over_total": np.asarray(ratio).tolist(),
            "scores": scores,
            "summary": {name: common.summarize([s[name] for s in scores]) for name in scores[0]},
            "seconds": time.perf_counter() - start,
        }
        record["points"].append(point)
        common.write_json_atomic(out, record)
        logger.info(
            "%d epochs: ACC %s, within/total %s, loss %s (%.0f s)",
            done,
            [round(s["acc"], 4) for s in scores],
            [round(float(r), 4) for r in point["within_over_total"]],
            [round(float(v), 5) for v in point["reconstruction_loss"]],
            point["seconds"],
        )
    return record


if __name__ == "__main__":
    main()
