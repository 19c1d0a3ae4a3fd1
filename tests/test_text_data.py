"""The tf-idf pipeline, Reuters-10k and 20 Newsgroups loaders, on files written here.

Every source format is generated in `tmp_path`: LYRL2004 token files with a
topic qrels file, scikit-learn's RCV1 and 20 Newsgroups caches, DEC's prebuilt
arrays and D. Cai's `.mat` layout. Sockets are blocked, so any download attempt
fails the test.
"""

from __future__ import annotations

import codecs
import dataclasses
import gzip
import logging
import pickle
import socket

import joblib
import numpy as np
import pytest
import scipy.io
import scipy.sparse
from sklearn.datasets import fetch_20newsgroups
from sklearn.feature_extraction.text import CountVectorizer, TfidfTransformer
from sklearn.utils import Bunch

from dcan_jax.config import get_config
from dcan_jax.data import DataNotFoundError, cache, load_newsgroups, load_reuters10k, text
from dcan_jax.data import newsgroups as newsgroups_lib
from dcan_jax.data import reuters as reuters_lib
from experiments import common, kmeans_text
from experiments import newsgroups as newsgroups_experiment
from experiments import reuters10k as reuters_experiment

TOPIC_WORDS = {
    "CCAT": ["compani", "share", "profit", "merger", "quarter"],
    "GCAT": ["govern", "minist", "elect", "parti", "vote"],
    "MCAT": ["market", "price", "bond", "trade", "yield"],
    "ECAT": ["econom", "inflat", "growth", "rate", "deficit"],
}
COMMON_WORDS = ["said", "year", "percent", "week", "report", "offici", "newsroom"]


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    def reject_connection(*args, **kwargs):
        raise AssertionError(f"a test tried to open a network connection: {args}")

    monkeypatch.setattr(socket.socket, "connect", reject_connection)
    monkeypatch.setattr(socket, "create_connection", reject_connection)


@pytest.fixture(autouse=True)
def isolated_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("DCAN_JAX_DATA", raising=False)
    monkeypatch.setenv("SCIKIT_LEARN_DATA", str(tmp_path / "empty_sklearn_home"))


# --- the tf-idf pipeline -------------------------------------------------------


def test_frequent_terms_rank_by_total_count():
    # Word 0 occurs in one document 10 times, word 1 once in each of 3 documents.
    counts = np.array([[10, 1, 0], [0, 1, 0], [0, 1, 2]])
    assert text.frequent_term_indices(counts, 1).tolist() == [0]
    assert text.frequent_term_indices(counts, 2).tolist() == [0, 1]


def test_frequent_terms_break_ties_by_index():
    counts = np.array([[1, 2, 2, 2], [0, 0, 0, 0]])
    assert text.frequent_term_indices(counts, 2).tolist() == [1, 2]


def test_frequent_terms_keep_all_when_few():
    counts = scipy.sparse.csr_matrix(np.array([[1, 0], [0, 3]]))
    assert text.frequent_term_indices(counts, 5).tolist() == [0, 1]


def test_frequent_terms_skip_absent_words():
    counts = np.array([[1, 0, 2], [0, 0, 1]])
    assert text.frequent_term_indices(counts, 3).tolist() == [0, 2]
    with pytest.raises(ValueError, match="No word occurs in the 2 documents"):
        text.frequent_term_indices(np.zeros((2, 3)), 3)


def test_tfidf_matches_formula():
    counts = np.array([[3, 0, 1, 0], [0, 2, 0, 0], [1, 1, 1, 4], [0, 0, 0, 0]], float)
    x_train, x_test = text.tfidf_features(counts, n_terms=3)
    # Column 3 (total 4) and columns 0, 1 (total 4 and 3) beat column 2 (total 2).
    kept = counts[:, [0, 1, 3]]
    n = kept.shape[0]
    idf = np.log((1 + n) / (1 + (kept > 0).sum(axis=0))) + 1
    tf = np.where(kept > 0, 1 + np.log(np.where(kept > 0, kept, 1)), 0)
    weights = tf * idf
    norms = np.linalg.norm(weights, axis=1, keepdims=True)
    expected = np.divide(weights, norms, out=np.zeros_like(weights), where=norms > 0) * np.sqrt(3)
    assert x_test is None
    assert x_train.dtype == np.float32
    np.testing.assert_allclose(x_train, expected, rtol=1e-6, atol=1e-6)


def test_tfidf_row_norms():
    rng = np.random.default_rng(0)
    counts = rng.poisson(0.5, size=(40, 30))
    counts[5] = 0
    x, _ = text.tfidf_features(counts, n_terms=20)
    norms = np.linalg.norm(x, axis=1)
    assert norms[5] == 0.0
    np.testing.assert_allclose(np.delete(norms, 5), np.sqrt(20), rtol=1e-5)
    x_unit, _ = text.tfidf_features(counts, n_terms=20, row_norm=1.0)
    np.testing.assert_allclose(np.linalg.norm(np.delete(x_unit, 5, 0), axis=1), 1.0, rtol=1e-5)


def test_tfidf_fits_on_training_split():
    train = np.array([[2, 1, 0], [0, 1, 1], [1, 0, 3]], float)
    # The test document repeats training row 0 and adds a word that training
    # lacks, so its features must equal row 0's: same vocabulary and idf.
    test = np.array([[2, 1, 0], [0, 0, 0]], float)
    test_with_new_word = np.hstack([test, [[5], [5]]])
    train_with_new_word = np.hstack([train, np.zeros((3, 1))])
    x_train, x_test = text.tfidf_features(train_with_new_word, test_with_new_word, n_terms=3)
    np.testing.assert_allclose(x_test[0], x_train[0], rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(x_test[1], 0.0, atol=0)


def test_sparse_and_dense_counts_agree():
    rng = np.random.default_rng(1)
    counts = rng.poisson(1.0, size=(25, 12))
    dense, _ = text.tfidf_features(counts, n_terms=6)
    sparse, _ = text.tfidf_features(scipy.sparse.csr_matrix(counts), n_terms=6, dense=False)
    assert scipy.sparse.issparse(sparse)
    np.testing.assert_allclose(sparse.toarray(), dense, rtol=1e-6, atol=1e-7)


def test_count_matrix_route_matches_text_route():
    rng = np.random.default_rng(2)
    words = [f"w{i:02d}" for i in range(30)]
    # Distinct word rates give distinct totals, so no tie sits at the cut.
    rates = np.linspace(0.1, 3.0, len(words))
    texts = [
        " ".join(w for w, k in zip(words, rng.poisson(rates), strict=True) for _ in range(k))
        for _ in range(50)
    ]
    full = CountVectorizer().fit_transform(texts)
    from_counts, _ = text.tfidf_features(full, n_terms=10)
    limited, _, vocabulary = text.count_texts(texts, n_terms=10)
    from_texts, _ = text.tfidf_features(limited, n_terms=10)
    assert len(vocabulary) == 10
    np.testing.assert_allclose(from_counts, from_texts, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize(
    ("counts", "options", "error", "match"),
    [
        (np.array([[1, -1], [0, 2]]), {}, ValueError, "negative values"),
        (np.array([[1, np.nan], [0, 2]]), {}, ValueError, "NaN or infinite"),
        (np.array([["a", "b"]]), {}, TypeError, "numeric term counts"),
        (np.array([1, 2, 3]), {}, ValueError, "shape \\(n_documents, n_words\\)"),
        (np.array([[1, 2]]), {"n_terms": 0}, ValueError, "n_terms=0"),
        (np.array([[1, 2]]), {"row_norm": 0.0}, ValueError, "row_norm=0.0"),
    ],
)
def test_tfidf_rejects_bad_input(counts, options, error, match):
    with pytest.raises(error, match=match):
        text.tfidf_features(counts, **options)


def test_count_texts_rejects_empty_corpus():
    with pytest.raises(ValueError, match="train_texts is empty"):
        text.count_texts([])
    with pytest.raises(ValueError, match="No words found in 2 training documents"):
        text.count_texts(["!", "?"])


# --- Reuters-10k fixtures -------------------------------------------------------


@dataclasses.dataclass
class FixtureDocument:
    doc_id: int
    part: str
    topics: list[str]
    tokens: str


def make_documents(seed: int = 0) -> list[FixtureDocument]:
    """Documents spread over the five LYRL2004 parts with realistic topic mixes."""
    rng = np.random.default_rng(seed)
    parts = [name.removesuffix(".dat") for name in reuters_lib.TOKEN_FILES]
    # Training ids come first, as in RCV1-v2; test ids follow in part order.
    first_ids = {parts[4]: 2286, parts[0]: 26151, parts[1]: 40000, parts[2]: 60000}
    first_ids[parts[3]] = 80000
    topic_sets = [["CCAT"], ["GCAT", "GPOL"], ["MCAT", "M14"], ["ECAT"], ["CCAT", "C15"]]
    topic_sets += [["CCAT", "GCAT"], ["GSPO"]]  # two roots and no root: both excluded
    documents = []
    for part in parts:
        for i in range(14):
            topics = topic_sets[rng.integers(len(topic_sets))]
            roots = [t for t in topics if t in TOPIC_WORDS]
            own = [w for t in roots for w in TOPIC_WORDS[t]] or COMMON_WORDS[:2]
            words = list(rng.choice(own, size=8)) + list(rng.choice(COMMON_WORDS, size=4))
            lines = [" ".join(words[:6]), " ".join(words[6:])]
            documents.append(
                FixtureDocument(first_ids[part] + 3 * i, part, topics, "\n".join(lines))
            )
    return documents


def write_token_files(folder, documents, compress: bool = False, skip=()):
    folder.mkdir(parents=True, exist_ok=True)
    for name in reuters_lib.TOKEN_FILES:
        if name in skip:
            continue
        part = name.removesuffix(".dat")
        body = "".join(f".I {d.doc_id}\n.W\n{d.tokens}\n\n" for d in documents if d.part == part)
        if compress:
            with gzip.open(folder / f"{name}.gz", "wt", encoding="latin-1") as f:
                f.write(body)
        else:
            (folder / name).write_text(body, encoding="latin-1")
    # The qrels file lists documents by id, one line per topic.
    lines = [
        f"{t} {d.doc_id} 1" for d in sorted(documents, key=lambda d: d.doc_id) for t in d.topics
    ]
    (folder / reuters_lib.QRELS_FILE).write_text("\n".join(lines) + "\n")
    return folder


def qualifying(documents):
    """Documents with exactly one root topic, in DEC's file order."""
    order = [name.removesuffix(".dat") for name in reuters_lib.TOKEN_FILES]
    kept = [d for d in documents if len(set(d.topics) & set(TOPIC_WORDS)) == 1]
    return sorted(kept, key=lambda d: (order.index(d.part), d.doc_id))


def reference_reuters(documents, n_documents, seed, n_terms):
    """DEC's recipe written out with scikit-learn, for comparison."""
    kept = qualifying(documents)
    counts = CountVectorizer(max_features=n_terms).fit_transform([d.tokens for d in kept])
    x = TfidfTransformer(sublinear_tf=True).fit_transform(counts).toarray()
    x *= np.sqrt(counts.shape[1])
    labels = np.array(
        [reuters_lib.ROOT_TOPICS.index(next(t for t in d.topics if t in TOPIC_WORDS)) for d in kept]
    )
    rows = np.random.RandomState(seed).permutation(len(kept))[:n_documents]
    return x[rows], labels[rows]


# --- Reuters-10k from the token files ---------------------------------------------


def test_qrels_keep_exactly_one_root(tmp_path):
    path = tmp_path / "topics.qrels"
    path.write_text("CCAT 10 1\nC15 10 1\nCCAT 11 1\nGCAT 11 1\nGSPO 12 1\nECAT 13 1\n")
    assert reuters_lib.read_topic_labels(path) == {10: 0, 13: 3}


def test_token_documents_parse_plain_and_gzip(tmp_path):
    documents = make_documents()
    plain = write_token_files(tmp_path / "plain", documents)
    packed = write_token_files(tmp_path / "gz", documents, compress=True)
    name = reuters_lib.TOKEN_FILES[4]
    parsed = list(reuters_lib.iter_token_documents(plain / name))
    expected = [(d.doc_id, d.tokens) for d in documents if d.part == name.removesuffix(".dat")]
    assert [doc_id for doc_id, _ in parsed] == [doc_id for doc_id, _ in expected]
    assert [tokens.split() for _, tokens in parsed] == [t.split() for _, t in expected]
    assert list(reuters_lib.iter_token_documents(packed / f"{name}.gz")) == parsed


def test_reuters_tokens_follow_dec_recipe(tmp_path):
    documents = make_documents()
    folder = write_token_files(tmp_path / "reuters10k", documents)
    x, y = reuters_lib.build_from_tokens(folder, n_documents=20, seed=1234, n_terms=12)
    expected_x, expected_y = reference_reuters(documents, 20, 1234, 12)
    assert x.shape == (20, 12)
    assert x.dtype == np.float32
    np.testing.assert_array_equal(y, expected_y)
    np.testing.assert_allclose(x, expected_x, rtol=1e-5, atol=1e-6)


def test_reuters_draw_depends_on_seed(tmp_path):
    folder = write_token_files(tmp_path / "reuters10k", make_documents())
    x_a, y_a = reuters_lib.build_from_tokens(folder, n_documents=20, seed=1, n_terms=12)
    x_b, _ = reuters_lib.build_from_tokens(folder, n_documents=20, seed=1, n_terms=12)
    x_c, _ = reuters_lib.build_from_tokens(folder, n_documents=20, seed=2, n_terms=12)
    np.testing.assert_array_equal(x_a, x_b)
    assert not np.array_equal(x_a, x_c)
    assert set(np.unique(y_a)) <= {0, 1, 2, 3}


def test_load_reuters_from_tokens(tmp_path):
    write_token_files(tmp_path / "reuters10k", make_documents(), compress=True)
    dataset = load_reuters10k(tmp_path, n_documents=25, n_terms=12)
    assert dataset.name == "reuters10k"
    assert dataset.x_train.shape == (25, 12)
    assert dataset.y_train.shape == (25,)
    assert dataset.x_test is None
    assert "LYRL2004 token files" in dataset.source


def test_reuters_missing_token_file(tmp_path):
    write_token_files(tmp_path / "reuters10k", make_documents(), skip=[reuters_lib.TOKEN_FILES[2]])
    with pytest.raises(DataNotFoundError, match="lyrl2004_tokens_test_pt2.dat"):
        load_reuters10k(tmp_path, source="tokens", n_documents=10)


def test_reuters_nothing_found_lists_places(tmp_path):
    (tmp_path / "data").mkdir()
    with pytest.raises(DataNotFoundError, match="reuters10k.*fetch_rcv1"):
        load_reuters10k(tmp_path / "data")


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ("stray text\n.I 5\n.W\nword\n", "outside a document"),
        (".I 5\n.W\nword\n.I 6\n", "ends before document 6"),
        (".I 5\nword\n", "outside a document"),
        (".I five\n.W\nword\n", "expected '.I <document id>'"),
        (".I 5\n.W\nword\n.I 6\n.W\n.W\n", "unexpected .W"),
    ],
)
def test_corrupt_token_file(tmp_path, content, match):
    path = tmp_path / "tokens.dat"
    path.write_text(content)
    with pytest.raises(ValueError, match=match):
        list(reuters_lib.iter_token_documents(path))


def test_truncated_gzip_token_file(tmp_path):
    documents = make_documents()
    folder = write_token_files(tmp_path / "reuters10k", documents, compress=True)
    path = folder / f"{reuters_lib.TOKEN_FILES[0]}.gz"
    path.write_bytes(path.read_bytes()[:-20])
    with pytest.raises(ValueError, match="Cannot read .*replace the file"):
        reuters_lib.build_from_tokens(folder, n_documents=5, n_terms=12)


def test_malformed_qrels_line(tmp_path):
    folder = write_token_files(tmp_path / "reuters10k", make_documents())
    qrels = folder / reuters_lib.QRELS_FILE
    lines = qrels.read_text().splitlines()
    lines[2] = "CCAT twelve 1"
    qrels.write_text("\n".join(lines))
    with pytest.raises(ValueError, match="line 3 is 'CCAT twelve 1'"):
        reuters_lib.build_from_tokens(folder, n_documents=5, n_terms=12)


def test_duplicate_document_id(tmp_path):
    documents = make_documents()
    documents[1].doc_id = documents[0].doc_id
    folder = write_token_files(tmp_path / "reuters10k", documents)
    with pytest.raises(ValueError, match=f"Document {documents[0].doc_id} appears twice"):
        reuters_lib.build_from_tokens(folder, n_documents=5, n_terms=12)


def test_reuters_too_few_documents(tmp_path):
    documents = make_documents()
    folder = write_token_files(tmp_path / "reuters10k", documents)
    available = len(qualifying(documents))
    with pytest.raises(ValueError, match=f"n_documents=10000 is more than the {available}"):
        reuters_lib.build_from_tokens(folder)


# --- Reuters-10k from a prebuilt file ---------------------------------------------


def test_prebuilt_npy_needs_allow_pickle(tmp_path):
    rng = np.random.default_rng(3)
    x, y = rng.random((30, 8)), rng.integers(0, 4, 30)
    folder = tmp_path / "reuters10k"
    folder.mkdir()
    np.save(folder / "reutersidf10k.npy", {"data": x, "label": y})
    with pytest.raises(ValueError, match="allow_pickle=True"):
        load_reuters10k(tmp_path)
    dataset = load_reuters10k(tmp_path, allow_pickle=True)
    assert dataset.x_train.dtype == np.float32
    np.testing.assert_allclose(dataset.x_train, x, rtol=1e-6)
    np.testing.assert_array_equal(dataset.y_train, y)
    assert "prebuilt" in dataset.source


def test_prebuilt_npz_preferred_over_tokens(tmp_path):
    rng = np.random.default_rng(4)
    x, y = rng.random((30, 8)), rng.integers(0, 4, 30)
    folder = write_token_files(tmp_path / "reuters10k", make_documents())
    np.savez(folder / "reutersidf10k.npz", data=x, label=y)
    dataset = load_reuters10k(tmp_path)
    assert dataset.x_train.shape == (30, 8)
    np.testing.assert_array_equal(dataset.y_train, y)
    tokens = load_reuters10k(tmp_path, source="tokens", n_documents=20, n_terms=12)
    assert tokens.x_train.shape == (20, 12)


def test_prebuilt_without_labels(tmp_path):
    folder = tmp_path / "reuters10k"
    folder.mkdir()
    np.savez(folder / "reutersidf10k.npz", data=np.random.default_rng(0).random((10, 4)))
    with pytest.raises(ValueError, match="has no labels"):
        load_reuters10k(tmp_path)


# --- Reuters-10k from scikit-learn's RCV1 cache -----------------------------------


def write_rcv1_cache(home, documents, n_features: int = 40):
    """Write the four files `fetch_rcv1` reads, in its order: training part first."""
    rng = np.random.default_rng(5)
    ordered = sorted(documents, key=lambda d: d.doc_id)
    features = scipy.sparse.random(len(ordered), n_features, density=0.3, random_state=rng)
    topics = sorted({t for d in documents for t in d.topics})
    targets = np.zeros((len(ordered), len(topics)), np.uint8)
    for row, d in enumerate(ordered):
        for t in d.topics:
            targets[row, topics.index(t)] = 1
    folder = home / "RCV1"
    folder.mkdir(parents=True)
    joblib.dump(features.tocsr(), folder / "samples_py3.pkl")
    joblib.dump(np.array([d.doc_id for d in ordered], np.uint32), folder / "sample_id_py3.pkl")
    joblib.dump(scipy.sparse.csr_matrix(targets), folder / "sample_topics_py3.pkl")
    joblib.dump(np.array(topics, dtype=object), folder / "topics_names_py3.pkl")
    return home


def test_rcv1_cache_draws_token_route_documents(tmp_path, caplog):
    documents = make_documents()
    home = write_rcv1_cache(tmp_path / "sklearn", documents)
    write_token_files(tmp_path / "data" / "reuters10k", documents)
    with caplog.at_level(logging.WARNING, logger="dcan_jax.data.reuters"):
        dataset = load_reuters10k(
            source="sklearn", sklearn_data_home=home, n_documents=20, n_terms=10
        )
    _, token_labels = reference_reuters(documents, 20, reuters_lib.SEED, 12)
    # Same documents in the same drawn order, so the same labels.
    np.testing.assert_array_equal(dataset.y_train, token_labels)
    assert dataset.x_train.shape == (20, 10)
    norms = np.linalg.norm(dataset.x_train, axis=1)
    np.testing.assert_allclose(norms[norms > 0], np.sqrt(10), rtol=1e-5)
    assert "approximation" in caplog.text
    assert "approximate" in dataset.source


def test_rcv1_cache_used_by_auto_without_local_files(tmp_path, monkeypatch):
    home = write_rcv1_cache(tmp_path / "sklearn", make_documents())
    monkeypatch.setenv("SCIKIT_LEARN_DATA", str(home))
    dataset = load_reuters10k(n_documents=15, n_terms=10)
    assert dataset.x_train.shape == (15, 10)


def test_rcv1_cache_incomplete(tmp_path):
    home = write_rcv1_cache(tmp_path / "sklearn", make_documents())
    (home / "RCV1" / "sample_topics_py3.pkl").unlink()
    with pytest.raises(DataNotFoundError, match="sample_topics_py3.pkl"):
        reuters_lib.build_from_sklearn(home, n_documents=5)


def test_rcv1_cache_corrupt(tmp_path):
    home = write_rcv1_cache(tmp_path / "sklearn", make_documents())
    (home / "RCV1" / "samples_py3.pkl").write_bytes(b"not a pickle")
    with pytest.raises(ValueError, match="Cannot read scikit-learn's RCV1 cache"):
        reuters_lib.build_from_sklearn(home, n_documents=5)


# --- the build cache --------------------------------------------------------------


def test_cache_reuses_built_matrix(tmp_path, monkeypatch):
    write_token_files(tmp_path / "reuters10k", make_documents())
    options = {"n_documents": 20, "n_terms": 12, "cache_dir": tmp_path / "cache"}
    first = load_reuters10k(tmp_path, **options)
    cached = list((tmp_path / "cache").glob("*.npz"))
    assert len(cached) == 1

    def fail(*args, **kwargs):
        raise AssertionError("rebuilt despite a valid cache")

    monkeypatch.setattr(reuters_lib, "build_from_tokens", fail)
    second = load_reuters10k(tmp_path, **options)
    assert second.source.startswith("cache ")
    np.testing.assert_array_equal(second.x_train, first.x_train)
    np.testing.assert_array_equal(second.y_train, first.y_train)


def test_cache_rebuilds_truncated_file(tmp_path, caplog):
    write_token_files(tmp_path / "reuters10k", make_documents())
    options = {"n_documents": 20, "n_terms": 12, "cache_dir": tmp_path / "cache"}
    first = load_reuters10k(tmp_path, **options)
    (path,) = (tmp_path / "cache").glob("*.npz")
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with caplog.at_level(logging.WARNING, logger="dcan_jax.data.cache"):
        second = load_reuters10k(tmp_path, **options)
    assert "unreadable cache file" in caplog.text
    assert "LYRL2004" in second.source
    np.testing.assert_array_equal(second.x_train, first.x_train)


def test_cache_key_follows_settings(tmp_path):
    write_token_files(tmp_path / "reuters10k", make_documents())
    load_reuters10k(tmp_path, n_documents=20, n_terms=12, cache_dir=tmp_path / "cache")
    load_reuters10k(tmp_path, n_documents=20, n_terms=12, seed=7, cache_dir=tmp_path / "cache")
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 2


def test_cache_detects_altered_array(tmp_path, caplog):
    settings = {"seed": 1}
    path = tmp_path / "arrays.npz"
    cache.save_arrays(path, {"x": np.arange(6.0)}, settings)
    assert cache.load_arrays(path, {"seed": 2}) is None
    with np.load(path) as stored:
        record = stored["__record__"]
    np.savez(path, x=np.arange(6.0) + 1, __record__=record)
    with caplog.at_level(logging.WARNING, logger="dcan_jax.data.cache"):
        assert cache.load_arrays(path, settings) is None
    assert "checksum" in caplog.text


def test_cache_write_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "arrays.npz"
    cache.save_arrays(path, {"x": np.arange(4.0)}, {"v": 1})

    def crash(file, **arrays):
        file.write(b"PK\x03\x04 half written")
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", crash)
    with pytest.raises(OSError, match="disk full"):
        cache.save_arrays(path, {"x": np.arange(9.0)}, {"v": 2})
    monkeypatch.undo()
    assert [p.name for p in tmp_path.iterdir()] == ["arrays.npz"]
    np.testing.assert_array_equal(cache.load_arrays(path, {"v": 1})["x"], np.arange(4.0))


# --- 20 Newsgroups ----------------------------------------------------------------


def write_cai_mat(folder, n_documents=60, n_words=50, seed=6, **overrides):
    rng = np.random.default_rng(seed)
    labels = np.arange(n_documents) % 4 + 1
    rates = np.full((4, n_words), 0.05)
    for k in range(4):
        rates[k, 10 * k : 10 * k + 10] = 1.5
    counts = rng.poisson(rates[labels - 1])
    train = np.arange(1, n_documents + 1)[rng.permutation(n_documents)][: n_documents * 2 // 3]
    test = np.setdiff1d(np.arange(1, n_documents + 1), train)
    variables = {
        "fea": scipy.sparse.csc_matrix(counts.astype(float)),
        "gnd": labels.reshape(-1, 1).astype(np.uint8),
        "trainIdx": train.reshape(-1, 1).astype(np.uint16),
        "testIdx": test.reshape(-1, 1).astype(np.uint16),
    }
    variables.update(overrides)
    variables = {k: v for k, v in variables.items() if v is not None}
    folder.mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(folder / newsgroups_lib.MAT_FILE, variables)
    return counts, labels - 1, train - 1, test - 1


def test_newsgroups_mat_splits_and_features(tmp_path):
    counts, labels, train, test = write_cai_mat(tmp_path / "20newsgroups")
    dataset = load_newsgroups(tmp_path, n_terms=30)
    expected_train, expected_test = text.tfidf_features(counts[train], counts[test], n_terms=30)
    assert dataset.name == "20newsgroups"
    np.testing.assert_array_equal(dataset.y_train, labels[train])
    np.testing.assert_array_equal(dataset.y_test, labels[test])
    np.testing.assert_allclose(dataset.x_train, expected_train, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(dataset.x_test, expected_test, rtol=1e-6, atol=1e-7)
    assert dataset.x_train.dtype == np.float32


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"trainIdx": np.array([[0], [1], [2]])}, "outside 1..60"),
        ({"testIdx": np.array([[61]])}, "outside 1..60"),
        ({"trainIdx": np.array([[1], [2], [2]])}, "repeats row numbers"),
        ({"trainIdx": np.array([[1], [2]]), "testIdx": np.array([[2], [3]])}, "share 1 rows"),
        ({"gnd": np.ones((59, 1))}, "60 samples but 59 labels"),
        ({"testIdx": None}, "lacks the variables \\['testIdx'\\]"),
    ],
)
def test_newsgroups_mat_rejects_bad_layout(tmp_path, overrides, match):
    write_cai_mat(tmp_path / "20newsgroups", **overrides)
    with pytest.raises(ValueError, match=match):
        load_newsgroups(tmp_path)


def test_newsgroups_mat_v73_is_explained(tmp_path):
    folder = tmp_path / "20newsgroups"
    folder.mkdir()
    # A MATLAB v7.3 header: 116 bytes of text, 8 of subsystem offset, version 0x0200, "IM".
    header = b"MATLAB 7.3 MAT-file, Platform: GLNXA64".ljust(116) + bytes(8) + b"\x00\x02IM"
    (folder / newsgroups_lib.MAT_FILE).write_bytes(header + bytes(384))
    with pytest.raises(ValueError, match="v7.3.*'-v7'"):
        load_newsgroups(tmp_path)


def test_newsgroups_mat_truncated(tmp_path):
    write_cai_mat(tmp_path / "20newsgroups")
    path = tmp_path / "20newsgroups" / newsgroups_lib.MAT_FILE
    path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(ValueError, match="corrupt or truncated"):
        load_newsgroups(tmp_path)


def test_newsgroups_not_found(tmp_path):
    (tmp_path / "data").mkdir()
    with pytest.raises(DataNotFoundError, match="20Newsgroups.mat.*20news-bydate_py3.pkz"):
        load_newsgroups(tmp_path / "data")
    with pytest.raises(DataNotFoundError, match="no data_dir given"):
        load_newsgroups(source="mat")


NEWSGROUP_WORDS = [
    ["graphics", "render", "polygon", "shading"],
    ["hockey", "goalie", "playoff", "season"],
    ["space", "orbit", "launch", "shuttle"],
]


def write_newsgroups_cache(home, n_per_class=8, seed=7):
    """Write `20news-bydate_py3.pkz` as `fetch_20newsgroups` stores it."""
    rng = np.random.default_rng(seed)
    names = ["comp.graphics", "rec.sport.hockey", "sci.space"]

    def split(subset):
        data, target = [], []
        for label, words in enumerate(NEWSGROUP_WORDS):
            for i in range(n_per_class):
                body = " ".join(rng.choice(words + ["the", "and", "people"], size=20))
                header = f"From: user{i}@example.org\nNewsgroups: {names[label]}\nSubject: s\n"
                data.append(f"{header}\n{body}\n")
                target.append(label)
        filenames = np.array([f"{subset}/{i}" for i in range(len(data))])
        return Bunch(data=data, target=np.array(target), filenames=filenames, target_names=names)

    home.mkdir(parents=True, exist_ok=True)
    content = pickle.dumps({"train": split("train"), "test": split("test")})
    (home / newsgroups_lib.SKLEARN_CACHE_FILE).write_bytes(codecs.encode(content, "zlib_codec"))
    return home


def test_newsgroups_from_sklearn_cache(tmp_path):
    home = write_newsgroups_cache(tmp_path / "sklearn")
    dataset = load_newsgroups(source="sklearn", sklearn_data_home=home, n_terms=8)
    train = fetch_20newsgroups(
        data_home=str(home), subset="train", remove=("headers",), download_if_missing=False
    )
    test = fetch_20newsgroups(
        data_home=str(home), subset="test", remove=("headers",), download_if_missing=False
    )
    vectorizer = CountVectorizer(max_features=8, stop_words="english")
    expected_train, expected_test = text.tfidf_features(
        vectorizer.fit_transform(train.data), vectorizer.transform(test.data), n_terms=8
    )
    np.testing.assert_array_equal(dataset.y_train, train.target)
    np.testing.assert_array_equal(dataset.y_test, test.target)
    np.testing.assert_allclose(dataset.x_train, expected_train, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(dataset.x_test, expected_test, rtol=1e-6, atol=1e-7)
    # Headers are dropped, so the header-only words are not in the vocabulary.
    assert "example" not in vectorizer.get_feature_names_out()
    assert "removed: ['headers']" in dataset.source


def test_newsgroups_sklearn_cache_corrupt(tmp_path):
    home = tmp_path / "sklearn"
    home.mkdir()
    (home / newsgroups_lib.SKLEARN_CACHE_FILE).write_bytes(b"\x78\x9c truncated")
    with pytest.raises(ValueError, match="Cannot read scikit-learn's 20 Newsgroups cache"):
        load_newsgroups(sklearn_data_home=home)


def test_newsgroups_real_file(real_data_dir):
    from sklearn.cluster import KMeans

    from dcan_jax import metrics

    dataset = load_newsgroups(real_data_dir)
    assert dataset.x_train.shape == (11314, 2000)
    assert dataset.x_test.shape == (7532, 2000)
    assert np.unique(dataset.y_train).tolist() == list(range(20))
    assert np.all(np.isfinite(dataset.x_train))
    norms = np.linalg.norm(dataset.x_train, axis=1)
    np.testing.assert_allclose(norms[norms > 0], np.sqrt(2000), rtol=1e-5)
    # The features carry class information: k-means on 3,000 documents beats the
    # NMI of about 0 that random clusters get.
    x, y = dataset.x_train[:3000], dataset.y_train[:3000]
    labels = KMeans(20, n_init=1, random_state=0).fit_predict(x)
    assert metrics.normalized_mutual_info(y, labels) > 0.2


# --- the experiments' options -------------------------------------------------------


def test_newsgroups_experiment_options(tmp_path):
    write_cai_mat(tmp_path / "20newsgroups", n_documents=90)
    parser = common.build_parser("test", "newsgroups")
    newsgroups_experiment.add_arguments(parser)
    args = parser.parse_args(["--data-dir", str(tmp_path), "--newsgroups-source", "mat"])
    dataset = newsgroups_experiment.load(args)
    assert (dataset.x_train.shape[0], dataset.x_test.shape[0]) == (60, 30)
    assert get_config(args.config).n_clusters == 20


def test_reuters_experiment_options(tmp_path):
    write_token_files(tmp_path / "reuters10k", make_documents())
    parser = common.build_parser("test", "paper_reuters10k")
    reuters_experiment.add_arguments(parser)
    args = parser.parse_args(
        [
            "--data-dir",
            str(tmp_path),
            "--reuters-source",
            "tokens",
            "--reuters-cache-dir",
            str(tmp_path / "cache"),
        ]
    )
    assert (args.reuters_source, args.allow_pickle) == ("tokens", False)
    assert args.reuters_cache_dir == str(tmp_path / "cache")
    with pytest.raises(ValueError, match="n_documents=10000 is more than"):
        reuters_experiment.load(args)
    assert get_config(args.config).n_clusters == 4


def test_reuters_experiment_bad_source(capsys):
    with pytest.raises(SystemExit) as info:
        reuters_experiment.main(["--reuters-source", "web"])
    assert info.value.code == 2
    assert "invalid choice: 'web'" in capsys.readouterr().err


def test_reuters_experiment_missing_data(tmp_path, capsys):
    (tmp_path / "data").mkdir()
    with pytest.raises(SystemExit) as info:
        reuters_experiment.main(
            ["--data-dir", str(tmp_path / "data"), "--reuters-source", "tokens"]
        )
    assert info.value.code == 2
    assert "Reuters-10k (tokens) not found" in capsys.readouterr().err


def test_kmeans_reference_scores_splits(tmp_path):
    write_cai_mat(tmp_path / "20newsgroups", n_documents=90)
    out = tmp_path / "kmeans"
    payload = kmeans_text.main(
        ["newsgroups", "--data-dir", str(tmp_path), "--seeds", "2", "--out", str(out)]
    )
    assert payload["seeds"] == [0, 1]
    assert payload["n_clusters"] == 4
    assert (out / "results.json").is_file()
    # The four classes use disjoint word blocks, so k-means recovers them.
    for split in ("train", "test"):
        assert len(payload["scores"][split]) == 2
        assert payload["summary"][split]["acc"]["mean"] > 0.9
