"""`load_array_file` and the feature and label checks, on files written here."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.io
import scipy.sparse

from dcan_jax.data import ConstantFeatureWarning, DataNotFoundError, load_array_file, validation


@pytest.fixture
def features():
    rng = np.random.default_rng(0)
    return rng.normal(size=(12, 4)), rng.integers(0, 3, 12)


def test_npy_plain_array(tmp_path, features):
    x, _ = features
    np.save(tmp_path / "x.npy", x)
    dataset = load_array_file(tmp_path / "x.npy")
    assert dataset.name == "x"
    assert dataset.x_train.dtype == np.float32
    assert dataset.y_train is None
    np.testing.assert_allclose(dataset.x_train, x, rtol=1e-6)


def test_npz_with_x_and_y(tmp_path, features):
    x, y = features
    np.savez(tmp_path / "d.npz", x=x, y=y)
    dataset = load_array_file(tmp_path / "d.npz")
    np.testing.assert_allclose(dataset.x_train, x, rtol=1e-6)
    np.testing.assert_array_equal(dataset.y_train, y)
    assert dataset.y_train.dtype == np.int64


def test_npz_dec_layout_and_explicit_keys(tmp_path, features):
    x, y = features
    np.savez(tmp_path / "dec.npz", data=x, label=y)
    np.testing.assert_array_equal(load_array_file(tmp_path / "dec.npz").y_train, y)
    np.savez(tmp_path / "named.npz", emb=x, cls=y, other=y + 1)
    dataset = load_array_file(tmp_path / "named.npz", x_key="emb", y_key="other")
    np.testing.assert_array_equal(dataset.y_train, y + 1)


def test_npz_key_errors_list_contents(tmp_path, features):
    x, y = features
    np.savez(tmp_path / "named.npz", emb=x, cls=y)
    with pytest.raises(ValueError, match="contains \\['cls', 'emb'\\].*pass x_key="):
        load_array_file(tmp_path / "named.npz")
    with pytest.raises(ValueError, match="no labels named 'label'; it contains \\['cls', 'emb'\\]"):
        load_array_file(tmp_path / "named.npz", x_key="emb", y_key="label")


def test_npy_pickled_dict_needs_opt_in(tmp_path, features):
    x, y = features
    np.save(tmp_path / "dec.npy", {"data": x, "label": y})
    with pytest.raises(ValueError, match="pickled Python object.*allow_pickle=True"):
        load_array_file(tmp_path / "dec.npy")
    dataset = load_array_file(tmp_path / "dec.npy", allow_pickle=True)
    np.testing.assert_array_equal(dataset.y_train, y)


def test_sparse_npz_densified_or_kept(tmp_path):
    dense = np.zeros((6, 5))
    dense[[0, 2, 5], [1, 3, 4]] = [1.0, 2.0, 3.0]
    dense[1, 0] = 4.0
    dense[3, 2] = 5.0
    scipy.sparse.save_npz(tmp_path / "s.npz", scipy.sparse.csr_matrix(dense))
    dataset = load_array_file(tmp_path / "s.npz")
    assert isinstance(dataset.x_train, np.ndarray)
    np.testing.assert_allclose(dataset.x_train, dense, rtol=0, atol=0)
    kept = load_array_file(tmp_path / "s.npz", dense=False)
    assert scipy.sparse.issparse(kept.x_train)
    assert kept.x_train.dtype == np.float32
    np.testing.assert_allclose(kept.x_train.toarray(), dense, rtol=0, atol=0)


def test_sparse_densify_memory_check(tmp_path):
    matrix = scipy.sparse.random(1000, 500, density=0.01, random_state=0, format="csr")
    scipy.sparse.save_npz(tmp_path / "s.npz", matrix)
    with pytest.raises(
        ValueError, match="needs 0.0 GiB, more than max_dense_bytes=1000 .*dense=False"
    ):
        load_array_file(tmp_path / "s.npz", max_dense_bytes=1000)


def test_mat_v5_named_and_cai_keys(tmp_path, features):
    x, y = features
    scipy.io.savemat(tmp_path / "cai.mat", {"fea": scipy.sparse.csc_matrix(x), "gnd": y[:, None]})
    dataset = load_array_file(tmp_path / "cai.mat")
    np.testing.assert_allclose(dataset.x_train, x, rtol=1e-6)
    np.testing.assert_array_equal(dataset.y_train, y)
    scipy.io.savemat(tmp_path / "named.mat", {"emb": x, "cls": y})
    dataset = load_array_file(tmp_path / "named.mat", x_key="emb", y_key="cls")
    np.testing.assert_array_equal(dataset.y_train, y)


def test_mat_v73_is_explained(tmp_path):
    header = b"MATLAB 7.3 MAT-file, Platform: GLNXA64".ljust(116) + bytes(8) + b"\x00\x02IM"
    (tmp_path / "big.mat").write_bytes(header + bytes(384))
    with pytest.raises(ValueError, match="v7.3 \\(HDF5\\).*save\\(filename, ..., '-v7'\\)"):
        load_array_file(tmp_path / "big.mat")


@pytest.mark.parametrize("suffix", [".npy", ".npz", ".mat"])
def test_truncated_binary_files(tmp_path, features, suffix):
    x, y = features
    path = tmp_path / f"d{suffix}"
    if suffix == ".npy":
        np.save(path, x)
    elif suffix == ".npz":
        np.savez(path, x=x, y=y)
    else:
        scipy.io.savemat(path, {"x": x, "y": y})
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ValueError, match="corrupt or truncated"):
        load_array_file(path)


def test_missing_file_and_bad_suffix(tmp_path):
    with pytest.raises(DataNotFoundError, match="No file at '.*absent.npz'.*check the path"):
        load_array_file(tmp_path / "absent.npz")
    (tmp_path / "d.parquet").write_bytes(b"PAR1")
    with pytest.raises(ValueError, match="unsupported suffix '.parquet'"):
        load_array_file(tmp_path / "d.parquet")


# --- CSV ------------------------------------------------------------------------


def test_csv_header_and_label_by_name(tmp_path):
    (tmp_path / "d.csv").write_text("a,label,b\n1.5,0,2\n3,1,4\n5,1,6.25\n")
    dataset = load_array_file(tmp_path / "d.csv", label_column="label")
    np.testing.assert_allclose(dataset.x_train, [[1.5, 2], [3, 4], [5, 6.25]], rtol=0, atol=0)
    np.testing.assert_array_equal(dataset.y_train, [0, 1, 1])


def test_csv_without_header_label_by_index(tmp_path):
    (tmp_path / "d.csv").write_text("1,2,7\n3,4,8\n5,6,7\n")
    dataset = load_array_file(tmp_path / "d.csv", label_column=-1)
    np.testing.assert_allclose(dataset.x_train, [[1, 2], [3, 4], [5, 6]], rtol=0, atol=0)
    np.testing.assert_array_equal(dataset.y_train, [7, 8, 7])


def test_csv_text_labels_are_encoded(tmp_path):
    # The first row has text only in the label column, so it is data, not a header.
    (tmp_path / "d.csv").write_text("1,2,dog\n3,4,cat\n5,6,dog\n")
    dataset = load_array_file(tmp_path / "d.csv", label_column=2)
    assert dataset.x_train.shape == (3, 2)
    np.testing.assert_array_equal(dataset.y_train, [1, 0, 1])


def test_csv_header_inferred(tmp_path):
    (tmp_path / "d.csv").write_text("f1,f2,kind\n1,2,dog\n3,4,cat\n")
    dataset = load_array_file(tmp_path / "d.csv", label_column="kind")
    assert dataset.x_train.shape == (2, 2)
    (tmp_path / "plain.csv").write_text("a,b\n1,2\n3,4\n")
    assert load_array_file(tmp_path / "plain.csv").x_train.shape == (2, 2)


@pytest.mark.parametrize(
    ("content", "options", "match"),
    [
        ("1,2\n3,abc\n", {}, "not a numeric CSV.*'abc'.*drop or encode text columns"),
        ("1,2\n3,\n", {}, "not a numeric CSV.*fill empty cells"),
        ("1,2\n3,4,5\n", {}, "line 2 has 3 fields but the first row has 2"),
        ("1,2,0\n3,4,1,9\n", {"label_column": 2}, "line 2 has 4 fields but the first row has 3"),
        ("", {}, "is empty"),
        ("a,b\n", {"header": True}, "has a header but no data rows"),
        (
            "1,2\n3,4\n",
            {"label_column": "y"},
            "label_column='y' is a column name, but the first row",
        ),
        ("a,b\n1,2\n", {"label_column": "y"}, "no column named 'y'; its header is \\['a', 'b'\\]"),
        ("1,2\n3,4\n", {"label_column": 5}, "label_column=5 is out of range.*2 columns"),
        ("1,2,0.5\n3,4,1\n", {"label_column": 2}, "should be class ids, got 0.5 at row 0"),
    ],
)
def test_csv_rejects_bad_content(tmp_path, content, options, match):
    (tmp_path / "d.csv").write_text(content)
    with pytest.raises(ValueError, match=match):
        load_array_file(tmp_path / "d.csv", **options)


def test_csv_not_utf8(tmp_path):
    (tmp_path / "d.csv").write_bytes(b"\xff\xfe1,2\n")
    with pytest.raises(ValueError, match="not UTF-8 text"):
        load_array_file(tmp_path / "d.csv")


# --- checks on values -------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "match"),
    [
        (np.nan, "contains 1 NaN or infinite values \\(first at row 2, column 1\\)"),
        (np.inf, "contains 1 NaN or infinite values"),
        (1e300, "beyond the float32 range"),
    ],
)
def test_non_finite_values_rejected(tmp_path, features, value, match):
    x, _ = features
    x[2, 1] = value
    np.save(tmp_path / "x.npy", x)
    with pytest.raises(ValueError, match=match):
        load_array_file(tmp_path / "x.npy")


def test_non_finite_sparse_value_located():
    matrix = scipy.sparse.csr_matrix(np.array([[0, 1.0], [np.nan, 0], [2.0, 0]]))
    with pytest.raises(ValueError, match="first at row 1, column 0"):
        validation.check_features(matrix, "m")


def test_constant_features_warn_with_count(tmp_path, features):
    x, _ = features
    x[:, [0, 3]] = 5.0
    np.save(tmp_path / "x.npy", x)
    with pytest.warns(ConstantFeatureWarning, match="2 of 4 features .* \\[0, 3\\]"):
        dataset = load_array_file(tmp_path / "x.npy")
    assert dataset.x_train.shape == (12, 4)


def test_all_constant_features_rejected(tmp_path):
    np.save(tmp_path / "x.npy", np.ones((5, 3)))
    with pytest.raises(ValueError, match="All 3 features of .* are constant"):
        load_array_file(tmp_path / "x.npy")


@pytest.mark.parametrize(
    ("x", "error", "match"),
    [
        (np.array([["a", "b"], ["c", "d"]]), TypeError, "non-numeric values \\(dtype <U1\\)"),
        (np.ones((3, 2)) * 1j, TypeError, "complex values"),
        (np.arange(5.0), ValueError, "has shape \\(5,\\).*x.reshape\\(-1, 1\\)"),
        (np.ones((1, 3)), ValueError, "at least 2 samples"),
    ],
)
def test_wrong_dtype_or_shape(tmp_path, x, error, match):
    np.save(tmp_path / "x.npy", x)
    with pytest.raises(error, match=match):
        load_array_file(tmp_path / "x.npy")


def test_label_length_mismatch(tmp_path, features):
    x, y = features
    np.savez(tmp_path / "d.npz", x=x, y=y[:-1])
    with pytest.raises(ValueError, match="has 12 samples but 11 labels"):
        load_array_file(tmp_path / "d.npz")


def test_labels_with_nan_or_bad_shape():
    with pytest.raises(ValueError, match="NaN or infinite values \\(first at row 1\\)"):
        validation.check_labels(np.array([0.0, np.nan, 1.0]), 3, "y")
    with pytest.raises(ValueError, match="shape \\(2, 2\\); pass one label per sample"):
        validation.check_labels(np.zeros((2, 2)), 2, "y")
    np.testing.assert_array_equal(validation.check_labels(np.array([[2.0], [1.0]]), 2, "y"), [2, 1])


def test_more_clusters_than_samples(tmp_path, features):
    x, _ = features
    np.save(tmp_path / "x.npy", x)
    with pytest.raises(ValueError, match="n_clusters=13 is more than the n_samples=12"):
        load_array_file(tmp_path / "x.npy", n_clusters=13)
    with pytest.raises(ValueError, match="n_clusters=1 should be >= 2"):
        load_array_file(tmp_path / "x.npy", n_clusters=1)
    assert load_array_file(tmp_path / "x.npy", n_clusters=12).x_train.shape == (12, 4)
