"""20 Newsgroups ("bydate" split, 20 classes) as DEC-style tf-idf features.

Two sources, tried in this order by `source="auto"`:

1. `mat`: `<data_dir>/20newsgroups/20Newsgroups.mat` in D. Cai's MATLAB layout:
   `fea`, a sparse term-count matrix `(n_documents, n_words)`; `gnd`, labels
   1..20; `trainIdx` and `testIdx`, 1-based row numbers of the two splits.
2. `sklearn`: scikit-learn's cached `fetch_20newsgroups` texts, counted with
   scikit-learn's tokenizer and English stop-word list.

Both go through `dcan_jax.data.text.tfidf_features`: the 2,000 words with the
largest total count in the training split, sublinear tf-idf with the training
split's idf, and rows scaled to L2 norm `sqrt(2000)`. Nothing is downloaded.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import pathlib

import numpy as np
import scipy.sparse

from dcan_jax.data.base import DataNotFoundError, Dataset, resolve_data_dir
from dcan_jax.data.files import read_mat
from dcan_jax.data.text import N_TERMS, count_texts, resolve_sklearn_data_home, tfidf_features
from dcan_jax.data.validation import check_features, check_labels

logger = logging.getLogger(__name__)

FOLDER = "20newsgroups"
MAT_FILE = "20Newsgroups.mat"
SOURCES = ("auto", "mat", "sklearn")
SKLEARN_CACHE_FILE = "20news-bydate_py3.pkz"
# The message headers name the newsgroup, which is the class, so they are dropped.
DEFAULT_REMOVE = ("headers",)


def _split_rows(indices: np.ndarray, n_documents: int, name: str, path) -> np.ndarray:
    """Convert 1-based MATLAB row numbers to 0-based rows, checking their range."""
    rows = np.asarray(indices).ravel().astype(np.int64) - 1
    if rows.size == 0:
        raise ValueError(f"{name} in {str(path)!r} is empty; the split needs documents.")
    if rows.min() < 0 or rows.max() >= n_documents:
        raise ValueError(
            f"{name} in {str(path)!r} contains row numbers {rows.min() + 1}..{rows.max() + 1}, "
            f"outside 1..{n_documents} (MATLAB's 1-based rows of fea); the file is corrupt."
        )
    if np.unique(rows).size != rows.size:
        raise ValueError(f"{name} in {str(path)!r} repeats row numbers; the file is corrupt.")
    return rows


def read_cai_mat(path: str | os.PathLike) -> dict[str, np.ndarray | scipy.sparse.csr_matrix]:
    """Read a term-count `.mat` file in D. Cai's layout.

    Returns:
      A dict with `counts` (CSR, `(n_documents, n_words)`), `labels` (int64 ids
      0..n_classes-1 in the order of `gnd`'s sorted values), and `train_rows` and
      `test_rows` (0-based).

    Raises:
      ValueError: for missing variables, mismatched lengths, overlapping or
        out-of-range splits, and the errors of `read_mat`.
    """
    path = pathlib.Path(path)
    variables = read_mat(path)
    missing = [name for name in ("fea", "gnd", "trainIdx", "testIdx") if name not in variables]
    if missing:
        raise ValueError(
            f"{str(path)!r} lacks the variables {missing} of D. Cai's layout (it contains "
            f"{sorted(variables)}); load it with load_array_file and x_key=/y_key= instead."
        )
    counts = scipy.sparse.csr_matrix(variables["fea"])
    labels = check_labels(variables["gnd"], counts.shape[0], f"gnd in {str(path)!r}")
    _, labels = np.unique(labels, return_inverse=True)
    n_documents = counts.shape[0]
    train_rows = _split_rows(variables["trainIdx"], n_documents, "trainIdx", path)
    test_rows = _split_rows(variables["testIdx"], n_documents, "testIdx", path)
    overlap = np.intersect1d(train_rows, test_rows)
    if overlap.size:
        raise ValueError(
            f"trainIdx and testIdx in {str(path)!r} share {overlap.size} rows (first: "
            f"{overlap[0] + 1}); the splits must be disjoint."
        )
    return {
        "counts": counts,
        "labels": labels.astype(np.int64),
        "train_rows": train_rows,
        "test_rows": test_rows,
    }


def _load_mat(path: pathlib.Path, n_terms: int, row_norm: float | None) -> Dataset:
    content = read_cai_mat(path)
    counts, labels = content["counts"], content["labels"]
    train, test = content["train_rows"], content["test_rows"]
    x_train, x_test = tfidf_features(counts[train], counts[test], n_terms, row_norm)
    return Dataset(
        name="20newsgroups",
        x_train=check_features(x_train, f"20 Newsgroups training split of {path}"),
        y_train=labels[train],
        x_test=x_test,
        y_test=labels[test],
        source=f"{path} (train {train.size} / test {test.size} documents)",
    )


def _fetch_sklearn(home: pathlib.Path, subset: str, remove: tuple[str, ...]):
    from sklearn.datasets import fetch_20newsgroups

    # scikit-learn prints the reason of a failed cache read to stdout, then raises OSError.
    printed = io.StringIO()
    try:
        with contextlib.redirect_stdout(printed):
            return fetch_20newsgroups(
                data_home=str(home), subset=subset, remove=remove, download_if_missing=False
            )
    except OSError as error:
        detail = " ".join(printed.getvalue().split()).strip("_ ") or str(error)
        raise ValueError(
            f"Cannot read scikit-learn's 20 Newsgroups cache {str(home / SKLEARN_CACHE_FILE)!r} "
            f"({detail}); delete it and run sklearn.datasets.fetch_20newsgroups() on a machine "
            "with internet."
        ) from error


def _load_sklearn(
    home: pathlib.Path, n_terms: int, row_norm: float | None, remove: tuple[str, ...]
) -> Dataset:
    train = _fetch_sklearn(home, "train", remove)
    test = _fetch_sklearn(home, "test", remove)
    train_counts, test_counts, _ = count_texts(
        train.data, test.data, n_terms=n_terms, stop_words="english"
    )
    x_train, x_test = tfidf_features(train_counts, test_counts, n_terms, row_norm)
    return Dataset(
        name="20newsgroups",
        x_train=check_features(x_train, "20 Newsgroups training split"),
        y_train=np.asarray(train.target, np.int64),
        x_test=x_test,
        y_test=np.asarray(test.target, np.int64),
        source=f"scikit-learn cache {home / SKLEARN_CACHE_FILE} (removed: {list(remove)})",
    )


def load_newsgroups(
    data_dir: str | os.PathLike | None = None,
    *,
    source: str = "auto",
    sklearn_data_home: str | os.PathLike | None = None,
    n_terms: int = N_TERMS,
    row_norm: float | None = None,
    remove: tuple[str, ...] = DEFAULT_REMOVE,
) -> Dataset:
    """Load 20 Newsgroups with its bydate train/test split as tf-idf features.

    Args:
      data_dir: folder holding `20newsgroups/20Newsgroups.mat`; defaults to
        `$DCAN_JAX_DATA`.
      source: "auto" (the `.mat` file when present, else scikit-learn's cache),
        "mat" or "sklearn".
      sklearn_data_home: scikit-learn's data home; defaults to
        `$SCIKIT_LEARN_DATA` or `~/scikit_learn_data`.
      n_terms: vocabulary size.
      row_norm: L2 norm of each row; `None` uses `sqrt(n_terms)`.
      remove: parts of each message that scikit-learn strips for the "sklearn"
        source ("headers", "footers", "quotes"). The `.mat` file's counts are
        used as they are.

    Returns:
      A `Dataset` whose train and test splits are the bydate splits.

    Raises:
      DataNotFoundError: when the chosen source is absent; the message lists
        where it looked.
    """
    if source not in SOURCES:
        raise ValueError(f"source={source!r} is not supported; choose one of {list(SOURCES)}.")
    root = resolve_data_dir(data_dir)
    mat_path = None if root is None else root / FOLDER / MAT_FILE
    home = resolve_sklearn_data_home(sklearn_data_home)
    cache_path = home / SKLEARN_CACHE_FILE
    if source in ("auto", "mat") and mat_path is not None and mat_path.is_file():
        dataset = _load_mat(mat_path, n_terms, row_norm)
    elif source in ("auto", "sklearn") and cache_path.is_file():
        dataset = _load_sklearn(home, n_terms, row_norm, tuple(remove))
    else:
        looked = [str(mat_path or f"<data_dir>/{FOLDER}/{MAT_FILE} (no data_dir given)")]
        if source != "mat":
            looked.append(str(cache_path))
        raise DataNotFoundError(
            f"20 Newsgroups ({source}) not found; looked for {looked}. Put {MAT_FILE} in "
            f"<data_dir>/{FOLDER}/ and pass --data-dir or set $DCAN_JAX_DATA, or run "
            "sklearn.datasets.fetch_20newsgroups() on a machine with internet."
        )
    logger.info(
        "Data: 20newsgroups train %d x %d, test %d from %s",
        *dataset.x_train.shape,
        dataset.x_test.shape[0],
        dataset.source,
    )
    return dataset
