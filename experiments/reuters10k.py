"""DCAN on Reuters-10k: `python -m experiments.reuters10k [--data-dir DIR] [--seeds N]`.

Reads `<data-dir>/reuters10k/`: a prebuilt `reutersidf10k.npz` (or DEC-Keras's
pickled `reutersidf10k.npy` with `--allow-pickle`), else the LYRL2004 token
files with `rcv1-v2.topics.qrels` (DEC's exact recipe), else scikit-learn's
cached RCV1 vectors (an approximation). All 10,000 documents form the training
split; there is no test split.
"""

from __future__ import annotations

import argparse

from dcan_jax.data import Dataset, load_reuters10k
from dcan_jax.data.reuters import SOURCES
from experiments import common


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--reuters-source",
        choices=SOURCES,
        default="auto",
        help="prebuilt: reutersidf10k.npz/.npy; tokens: LYRL2004 token files and topic qrels; "
        "sklearn: scikit-learn's cached RCV1 (approximate); auto: the first one present",
    )
    parser.add_argument(
        "--sklearn-data-home",
        default=None,
        help="scikit-learn data home; defaults to $SCIKIT_LEARN_DATA or ~/scikit_learn_data",
    )
    parser.add_argument(
        "--reuters-cache-dir",
        default=None,
        help="folder where the Reuters-10k matrix built from tokens or RCV1 is kept and "
        "reused; built again on every run when not given",
    )
    parser.add_argument(
        "--allow-pickle",
        action="store_true",
        help="read a pickled reutersidf10k.npy; unpickling runs code from the file, so "
        "only for files you trust",
    )


def load(args: argparse.Namespace) -> Dataset:
    return load_reuters10k(
        args.data_dir,
        source=args.reuters_source,
        sklearn_data_home=args.sklearn_data_home,
        cache_dir=args.reuters_cache_dir,
        allow_pickle=args.allow_pickle,
    )


def main(argv=None) -> dict:
    return common.main(
        load, "Train DCAN on Reuters-10k.", "paper_reuters10k", argv, add_arguments=add_arguments
    )


if __name__ == "__main__":
    main()
