"""DCAN on 20 Newsgroups: `python -m experiments.newsgroups [--data-dir DIR] [--seeds N]`.

Reads `<data-dir>/20newsgroups/20Newsgroups.mat` (D. Cai's term counts, or
`$DCAN_JAX_DATA/20newsgroups/`), else scikit-learn's cached 20 Newsgroups texts.
Documents become tf-idf features over the 2,000 most frequent training words,
as `dcan_jax.data.text` describes. The bydate split gives 11,314 training and
7,532 test documents.
"""

from __future__ import annotations

import argparse

from dcan_jax.data import Dataset, load_newsgroups
from dcan_jax.data.newsgroups import SOURCES
from experiments import common


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--newsgroups-source",
        choices=SOURCES,
        default="auto",
        help="mat: <data-dir>/20newsgroups/20Newsgroups.mat; sklearn: scikit-learn's cached "
        "texts; auto: the .mat file when present",
    )
    parser.add_argument(
        "--sklearn-data-home",
        default=None,
        help="scikit-learn data home; defaults to $SCIKIT_LEARN_DATA or ~/scikit_learn_data",
    )


def load(args: argparse.Namespace) -> Dataset:
    return load_newsgroups(
        args.data_dir, source=args.newsgroups_source, sklearn_data_home=args.sklearn_data_home
    )


def main(argv=None) -> dict:
    return common.main(
        load, "Train DCAN on 20 Newsgroups.", "newsgroups", argv, add_arguments=add_arguments
    )


if __name__ == "__main__":
    main()
