"""The tf-idf features of DEC-era text clustering, built with scikit-learn.

The recipe follows `make_reuters_data` in DEC (Xie, Girshick and Farhadi, 2016,
github.com/piiswrong/dec, `dec/dec.py`), which Reuters-10k results of that era
share:

1. Vocabulary: the `n_terms` (2,000) words with the largest total count over
   the corpus, i.e. the sum of their counts over all documents, not the number
   of documents containing them. This is what `CountVectorizer(max_features=...)`
   selects.
2. Weights: `TfidfTransformer(sublinear_tf=True, norm="l2")`, i.e.
   `(1 + log tf) * idf` with the smoothed `idf = 1 + log((1 + n) / (1 + df))`,
   then each row divided by its L2 norm.
3. Scale: DEC multiplies every row by `sqrt(n_terms)`, so a document's squared
   entries sum to `n_terms` and average 1. Under the LeCun-normal initialisation
   of `flax.linen.Dense` each first-layer pre-activation then has variance 1,
   whereas unit-norm rows give variance `1 / n_terms` (0.0005 for 2,000 words),
   which leaves tanh layers almost linear at the start. `row_norm` sets
   another scale.

Documents without any kept word stay all-zero rows. The vocabulary and the idf
are fitted on the training documents only and then applied to held-out ones.
"""

from __future__ import annotations

import logging
import os
import pathlib
from collections.abc import Sequence

import numpy as np
import scipy.sparse
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.feature_extraction.text import CountVectorizer, TfidfTransformer
from sklearn.pipeline import make_pipeline

logger = logging.getLogger(__name__)

N_TERMS = 2000


def _check_n_terms(n_terms: int) -> None:
    if isinstance(n_terms, bool) or not isinstance(n_terms, (int, np.integer)) or n_terms < 1:
        raise ValueError(f"n_terms={n_terms!r} should be a positive int, e.g. {N_TERMS}.")


def _check_counts(counts, name: str) -> scipy.sparse.csr_matrix:
    if not scipy.sparse.issparse(counts):
        counts = np.asarray(counts)
        if counts.dtype.kind not in "biuf":
            raise TypeError(f"{name} should contain numeric term counts, got dtype {counts.dtype}.")
    if counts.ndim != 2:
        raise ValueError(
            f"{name} should have shape (n_documents, n_words), got shape {counts.shape}."
        )
    counts = scipy.sparse.csr_matrix(counts, dtype=np.float64)
    if counts.nnz and not np.all(np.isfinite(counts.data)):
        raise ValueError(f"{name} contains NaN or infinite counts; pass finite term counts.")
    if counts.nnz and counts.data.min() < 0:
        raise ValueError(
            f"{name} contains negative values (minimum {counts.data.min()}); tf-idf needs "
            "non-negative term counts."
        )
    return counts


def frequent_term_indices(counts, n_terms: int = N_TERMS) -> np.ndarray:
    """Return the columns of the `n_terms` words with the largest total count.

    Ties are broken toward the lower column index. Words with a total count of 0
    are never kept. The indices are returned in increasing order, so the kept
    columns keep their original order.

    Args:
      counts: term counts, shape `(n_documents, n_words)`, dense or sparse.
      n_terms: number of words to keep; all columns are kept when there are fewer.

    Returns:
      int64 array of shape `(n_terms_kept,)`, at most `n_terms` long.

    Raises:
      ValueError: when no word occurs at all.
    """
    _check_n_terms(n_terms)
    counts = _check_counts(counts, "counts")
    totals = np.asarray(counts.sum(axis=0)).ravel()
    order = np.argsort(-totals, kind="stable")[:n_terms]
    order = order[totals[order] > 0]
    if order.size == 0:
        raise ValueError(
            f"No word occurs in the {counts.shape[0]} documents (all counts are 0); pass "
            "the term counts of non-empty documents."
        )
    return np.sort(order).astype(np.int64)


class FrequentTermSelector(TransformerMixin, BaseEstimator):
    """Keep the `n_terms` columns of a count matrix with the largest total count.

    A scikit-learn transformer, so it chains with `TfidfTransformer` in a
    `Pipeline` and selects the vocabulary on the training documents only.

    Attributes:
      indices_: kept columns in increasing order, shape `(n_terms_kept,)`.
    """

    def __init__(self, n_terms: int = N_TERMS):
        self.n_terms = n_terms

    def fit(self, counts, y=None):
        self.indices_ = frequent_term_indices(counts, self.n_terms)
        self.n_features_in_ = counts.shape[1]
        return self

    def transform(self, counts):
        counts = _check_counts(counts, "counts")
        if counts.shape[1] != self.n_features_in_:
            raise ValueError(
                f"counts have {counts.shape[1]} words but the selector was fitted on "
                f"{self.n_features_in_}; pass counts over the same vocabulary."
            )
        return counts[:, self.indices_]


def count_texts(
    train_texts: Sequence[str],
    test_texts: Sequence[str] | None = None,
    n_terms: int = N_TERMS,
    stop_words: str | None = None,
) -> tuple[scipy.sparse.csr_matrix, scipy.sparse.csr_matrix | None, np.ndarray]:
    """Count the `n_terms` most frequent words of `train_texts` in each document.

    Tokens are scikit-learn's defaults: lower-cased runs of 2 or more word
    characters. CountVectorizer orders tied totals with a non-stable sort, so
    which of several equally frequent words fills the last places is unspecified.

    Returns:
      `(train_counts, test_counts, vocabulary)`: sparse float64 counts of shape
      `(n_documents, n_terms_kept)` (`test_counts` is `None` without test texts)
      and the kept words in column order.
    """
    _check_n_terms(n_terms)
    if len(train_texts) == 0:
        raise ValueError("train_texts is empty; pass at least one document.")
    vectorizer = CountVectorizer(max_features=n_terms, stop_words=stop_words, dtype=np.float64)
    try:
        train_counts = vectorizer.fit_transform(train_texts)
    except ValueError as error:
        # CountVectorizer raises "empty vocabulary" when no document has a token.
        raise ValueError(
            f"No words found in {len(train_texts)} training documents ({error}); check "
            "that the documents contain text."
        ) from error
    test_counts = None if test_texts is None else vectorizer.transform(test_texts)
    return train_counts.tocsr(), test_counts, vectorizer.get_feature_names_out()


def _scale_rows(x: scipy.sparse.csr_matrix, row_norm: float | None) -> scipy.sparse.csr_matrix:
    scale = np.sqrt(x.shape[1]) if row_norm is None else float(row_norm)
    return (x * scale).astype(np.float32).tocsr()


def tfidf_features(
    train_counts,
    test_counts=None,
    n_terms: int = N_TERMS,
    row_norm: float | None = None,
    dense: bool = True,
):
    """Turn term counts into DEC-style tf-idf features (see the module docstring).

    Args:
      train_counts: term counts, shape `(n_train, n_words)`, dense or sparse; the
        vocabulary and idf are fitted on these.
      test_counts: optional held-out counts over the same words, shape
        `(n_test, n_words)`.
      n_terms: number of most frequent words to keep.
      row_norm: L2 norm of every non-empty output row; `None` uses
        `sqrt(n_terms_kept)` as DEC does. Must be > 0.
      dense: return numpy arrays; `False` returns float32 CSR matrices, for
        callers that select rows before densifying.

    Returns:
      `(x_train, x_test)`, float32 with `n_terms_kept` columns; `x_test` is `None`
      without `test_counts`.
    """
    _check_n_terms(n_terms)
    if row_norm is not None and not row_norm > 0:
        raise ValueError(f"row_norm={row_norm} should be > 0, or None for sqrt(n_terms).")
    train_counts = _check_counts(train_counts, "train_counts")
    if train_counts.shape[0] == 0:
        raise ValueError("train_counts has no rows; pass at least one document.")
    pipeline = make_pipeline(
        FrequentTermSelector(n_terms), TfidfTransformer(norm="l2", sublinear_tf=True)
    )
    x_train = _scale_rows(pipeline.fit_transform(train_counts), row_norm)
    x_test = None
    if test_counts is not None:
        test_counts = _check_counts(test_counts, "test_counts")
        x_test = _scale_rows(pipeline.transform(test_counts), row_norm)
    n_empty = int(np.sum(np.diff(x_train.indptr) == 0))
    if n_empty:
        logger.info(
            "%d of %d training documents contain none of the kept words.", n_empty, x_train.shape[0]
        )
    if dense:
        return x_train.toarray(), None if x_test is None else x_test.toarray()
    return x_train, x_test


def resolve_sklearn_data_home(data_home: str | os.PathLike | None = None) -> pathlib.Path:
    """Return scikit-learn's data home without creating it, unlike `get_data_home`.

    The order is scikit-learn's: the argument, `$SCIKIT_LEARN_DATA`, then
    `~/scikit_learn_data`.
    """
    if data_home is None:
        data_home = os.environ.get("SCIKIT_LEARN_DATA", "~/scikit_learn_data")
    return pathlib.Path(data_home).expanduser()
