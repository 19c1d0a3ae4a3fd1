"""Users' own feature files: `.npy`, `.npz`, `.csv` and MATLAB `.mat`.

`load_array_file` reads one file into a `Dataset` with float32 features and
int64 labels, after the checks in `dcan_jax.data.validation`. Sparse matrices
(scipy `save_npz` files, sparse MATLAB variables) are densified when the dense
copy fits under `max_dense_bytes`, or kept as float32 CSR with `dense=False`.
"""

from __future__ import annotations

import csv
import logging
import os
import pathlib
import zipfile
from collections.abc import Mapping
from typing import Any

import numpy as np
import scipy.io
import scipy.sparse

from dcan_jax.data.base import DataNotFoundError, Dataset
from dcan_jax.data.validation import check_features, check_labels, check_n_clusters

logger = logging.getLogger(__name__)

SUFFIXES = (".npy", ".npz", ".csv", ".mat")
# Names tried, in order, when no key is given. "data"/"label" is DEC's layout,
# "fea"/"gnd" D. Cai's MATLAB layout.
X_KEYS = ("x", "X", "data", "features", "fea")
Y_KEYS = ("y", "Y", "label", "labels", "target", "gnd")
# Largest dense copy of a sparse matrix made without being asked: 4 GiB.
MAX_DENSE_BYTES = 4 * 2**30
_SPARSE_NPZ_KEYS = {"format", "shape", "data", "indices", "indptr"}


def _corrupt(path: pathlib.Path, error: BaseException) -> ValueError:
    return ValueError(
        f"Cannot read {str(path)!r}: the file is corrupt or truncated ({error}). "
        "Write it again from the source data."
    )


def _pickled_npy_error(path: pathlib.Path) -> ValueError:
    return ValueError(
        f"{str(path)!r} contains a pickled Python object, and unpickling runs code stored in "
        "the file. Pass allow_pickle=True if you trust the file, or re-save it as .npz "
        "with np.savez(path, x=features, y=labels)."
    )


def _read_npy(path: pathlib.Path, allow_pickle: bool) -> Any:
    try:
        array = np.load(path, allow_pickle=allow_pickle)
    except ValueError as error:
        if "allow_pickle" in str(error):
            raise _pickled_npy_error(path) from error
        raise _corrupt(path, error) from error
    except (OSError, EOFError) as error:
        raise _corrupt(path, error) from error
    # DEC-era code saves {"data": x, "label": y} with np.save, a 0-d object array.
    if array.dtype == object and array.shape == ():
        return array.item()
    return array


def _read_npz(path: pathlib.Path) -> Any:
    try:
        with np.load(path, allow_pickle=False) as stored:
            if _SPARSE_NPZ_KEYS <= set(stored.files):
                return scipy.sparse.load_npz(path)
            return {name: stored[name] for name in stored.files}
    except ValueError as error:
        if "allow_pickle" in str(error):
            raise ValueError(
                f"{str(path)!r} contains pickled object arrays, which are not loaded because "
                "unpickling runs code stored in the file; re-save them as numeric arrays."
            ) from error
        raise _corrupt(path, error) from error
    except (OSError, EOFError, zipfile.BadZipFile) as error:
        raise _corrupt(path, error) from error


def read_mat(path: str | os.PathLike) -> dict[str, Any]:
    """Read the variables of a MATLAB v4-v7 file; sparse ones stay scipy sparse.

    Raises:
      ValueError: for a v7.3 (HDF5) file, which scipy cannot read, and for a
        corrupt or truncated file.
    """
    path = pathlib.Path(path)
    try:
        major, _ = scipy.io.matlab.matfile_version(str(path))
    except (ValueError, TypeError, OSError) as error:
        raise _corrupt(path, error) from error
    if major == 2:
        raise ValueError(
            f"{str(path)!r} is a MATLAB v7.3 (HDF5) file, which scipy.io cannot read. Re-save "
            "it in MATLAB with save(filename, ..., '-v7'), or convert the variables to .npz "
            "(e.g. read them with h5py and write them with np.savez)."
        )
    try:
        variables = scipy.io.loadmat(str(path))
    except (ValueError, TypeError, OSError, EOFError, scipy.io.matlab.MatReadError) as error:
        raise _corrupt(path, error) from error
    return {name: value for name, value in variables.items() if not name.startswith("__")}


def _pick(
    mapping: Mapping[str, Any], key: str | None, candidates: tuple[str, ...], path, role: str
) -> Any:
    """Return `mapping[key]`, or the first of `candidates` present when `key` is None."""
    if key is not None:
        if key not in mapping:
            raise ValueError(
                f"{str(path)!r} has no {role} named {key!r}; it contains {sorted(mapping)}."
            )
        return mapping[key]
    for name in candidates:
        if name in mapping:
            return mapping[name]
    return None


def _split_mapping(
    mapping: Mapping[str, Any], path: pathlib.Path, x_key: str | None, y_key: str | None
) -> tuple[Any, Any]:
    x = _pick(mapping, x_key, X_KEYS, path, "features")
    if x is None:
        raise ValueError(
            f"{str(path)!r} contains {sorted(mapping)} but none of the feature names "
            f"{list(X_KEYS)}; pass x_key= with the name of the feature array."
        )
    return x, _pick(mapping, y_key, Y_KEYS, path, "labels")


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _first_rows(path: pathlib.Path, delimiter: str) -> list[list[str]]:
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.reader(f, delimiter=delimiter)
            return [row for row, _ in zip(reader, range(2), strict=False)]
    except UnicodeDecodeError as error:
        raise ValueError(
            f"{str(path)!r} is not UTF-8 text ({error}); save the CSV as UTF-8."
        ) from error


def _infer_header(rows: list[list[str]]) -> bool:
    """Guess whether the first CSV row names the columns.

    It does when a column is non-numeric in the first row but numeric in the
    second, or when every field of the first row is non-numeric. A text label
    column alone does not count, since it is non-numeric in every row.
    """
    first = [_is_number(field) for field in rows[0]]
    if len(rows) > 1:
        second = [_is_number(field) for field in rows[1]]
        if any(s and not f for f, s in zip(first, second, strict=False)):
            return True
    return not any(first)


def _label_index(label_column: int | str | None, names: list[str], path) -> int | None:
    if label_column is None:
        return None
    n_columns = len(names)
    if isinstance(label_column, str):
        if label_column not in names:
            raise ValueError(
                f"{str(path)!r} has no column named {label_column!r}; its header is {names}."
            )
        return names.index(label_column)
    if not -n_columns <= label_column < n_columns:
        raise ValueError(
            f"label_column={label_column} is out of range for {str(path)!r}, which has "
            f"{n_columns} columns; pass an index in [{-n_columns}, {n_columns - 1}] or a name."
        )
    return label_column % n_columns


def _check_row_lengths(path: pathlib.Path, delimiter: str, n_columns: int) -> None:
    """Raise on the first row with another number of fields than the first row."""
    with open(path, newline="", encoding="utf-8") as f:
        for line_number, row in enumerate(csv.reader(f, delimiter=delimiter), start=1):
            if row and len(row) != n_columns:
                raise ValueError(
                    f"{str(path)!r} line {line_number} has {len(row)} fields but the first row "
                    f"has {n_columns}; give every row the same columns."
                )


def _csv_layout(
    path: pathlib.Path, label_column: int | str | None, header: bool | None, delimiter: str
) -> tuple[bool, int | None, int]:
    """Return whether the first row is a header, the label's index and the column count."""
    rows = _first_rows(path, delimiter)
    if not rows or not any(field.strip() for field in rows[0]):
        raise ValueError(f"{str(path)!r} is empty or starts with a blank line; pass a CSV file.")
    if header is None:
        header = _infer_header(rows)
    if isinstance(label_column, str) and not header:
        raise ValueError(
            f"label_column={label_column!r} is a column name, but the first row of "
            f"{str(path)!r} is data, not a header; pass header=True if it is a header, or "
            "the label column's index."
        )
    if header and len(rows) < 2:
        raise ValueError(f"{str(path)!r} has a header but no data rows.")
    names = [field.strip() for field in rows[0]]
    return header, _label_index(label_column, names, path), len(names)


def _read_csv(
    path: pathlib.Path, label_column: int | str | None, header: bool | None, delimiter: str
) -> tuple[np.ndarray, np.ndarray | None]:
    header, label, n_columns = _csv_layout(path, label_column, header, delimiter)
    options = {"delimiter": delimiter, "skiprows": int(header), "quotechar": '"', "ndmin": 2}
    # np.loadtxt with usecols ignores extra fields, so ragged rows are caught here.
    _check_row_lengths(path, delimiter, n_columns)
    feature_columns = [i for i in range(n_columns) if i != label]
    try:
        x = np.loadtxt(path, dtype=np.float64, usecols=feature_columns, **options)
        y = None
        if label is not None:
            y = np.loadtxt(path, dtype=str, usecols=[label], **options).ravel()
    except ValueError as error:
        raise ValueError(
            f"{str(path)!r} is not a numeric CSV: {error}. Features must be numbers: fill "
            "empty cells, drop or encode text columns, or name the label column with "
            "label_column=."
        ) from error
    if y is not None:
        # Numeric labels are checked as class ids; text labels are mapped to ids later.
        try:
            y = y.astype(np.float64)
        except ValueError:
            pass
    return x, y


def _read_any(path: pathlib.Path, options: dict[str, Any]) -> tuple[Any, Any]:
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return _read_csv(path, options["label_column"], options["header"], options["delimiter"])
    if suffix == ".npy":
        content = _read_npy(path, options["allow_pickle"])
    elif suffix == ".npz":
        content = _read_npz(path)
    else:
        content = read_mat(path)
    if isinstance(content, Mapping):
        return _split_mapping(content, path, options["x_key"], options["y_key"])
    if options["y_key"] is not None:
        raise ValueError(
            f"{str(path)!r} contains a single array, so it has no labels named "
            f"{options['y_key']!r}; save features and labels together with "
            "np.savez(path, x=features, y=labels)."
        )
    return content, None


def _densify(x, dense: bool, max_dense_bytes: int, path: pathlib.Path):
    if not scipy.sparse.issparse(x) or not dense:
        return x
    n_bytes = x.shape[0] * x.shape[1] * 4
    if n_bytes > max_dense_bytes:
        raise ValueError(
            f"{str(path)!r} contains a sparse {x.shape[0]} x {x.shape[1]} matrix whose float32 "
            f"dense copy needs {n_bytes / 2**30:.1f} GiB, more than max_dense_bytes="
            f"{max_dense_bytes} ({max_dense_bytes / 2**30:.1f} GiB). Reduce the features "
            "first (e.g. dcan_jax.data.tfidf_features for term counts), pass dense=False "
            "to keep it sparse, or raise max_dense_bytes."
        )
    return x.toarray()


def load_array_file(
    path: str | os.PathLike,
    *,
    x_key: str | None = None,
    y_key: str | None = None,
    label_column: int | str | None = None,
    header: bool | None = None,
    delimiter: str = ",",
    n_clusters: int | None = None,
    dense: bool = True,
    max_dense_bytes: int = MAX_DENSE_BYTES,
    allow_pickle: bool = False,
) -> Dataset:
    """Load features, and labels where the file has them, from one file.

    Layouts by suffix:

    - `.npy`: one array of features; or a pickled dict such as DEC's
      `{"data": x, "label": y}`, read only with `allow_pickle=True`.
    - `.npz`: arrays named by `x_key`/`y_key`, else the first of `X_KEYS` and
      `Y_KEYS` present; or a sparse matrix written by `scipy.sparse.save_npz`.
    - `.csv`: numeric columns; `label_column` (index or header name) contains the
      labels, which may be text. `header=None` guesses whether the first row is
      a header: it is when a column is text there but a number below it.
    - `.mat`: MATLAB v4-v7 variables, named as for `.npz` (D. Cai's `fea`/`gnd`
      are found without keys). v7.3 (HDF5) files raise an error with the fix.

    Args:
      path: the file.
      x_key: name of the feature array in `.npz`, `.mat` or a pickled dict.
      y_key: name of the label array; without it, labels are optional.
      label_column: CSV column of the labels, by index or header name.
      header: whether the CSV's first row is a header; `None` guesses.
      delimiter: CSV field separator.
      n_clusters: when given, checked to be in `[2, n_samples]`.
      dense: densify sparse matrices (under `max_dense_bytes`); `False` keeps
        them as float32 CSR, which the tf-idf functions accept but training does not.
      max_dense_bytes: largest float32 dense copy of a sparse matrix, in bytes.
      allow_pickle: read pickled `.npy` files; unpickling can run code stored
        in the file, so pass it only for files you trust.

    Returns:
      A `Dataset` named after the file stem, with everything in `x_train` and
      `y_train` (`None` when the file has no labels).

    Raises:
      DataNotFoundError: when `path` does not exist.
      ValueError, TypeError: for an unsupported suffix, a corrupt file, or data
        that fails the checks of `check_features` and `check_labels`.
    """
    path = pathlib.Path(path).expanduser()
    if not path.is_file():
        raise DataNotFoundError(
            f"No file at {str(path)!r} (resolved to {str(path.resolve())!r}); check the path."
        )
    if path.suffix.lower() not in SUFFIXES:
        raise ValueError(
            f"{str(path)!r} has the unsupported suffix {path.suffix!r}; use one of "
            f"{list(SUFFIXES)}."
        )
    options = {
        "x_key": x_key,
        "y_key": y_key,
        "label_column": label_column,
        "header": header,
        "delimiter": delimiter,
        "allow_pickle": allow_pickle,
    }
    x, y = _read_any(path, options)
    x = check_features(_densify(x, dense, max_dense_bytes, path), f"{str(path)!r}")
    if y is not None:
        if scipy.sparse.issparse(y):
            y = y.toarray()
        y = check_labels(y, x.shape[0], f"{str(path)!r}")
    check_n_clusters(n_clusters, x.shape[0], f"{str(path)!r}")
    logger.info("Data: %d x %d from %s (labels: %s)", *x.shape, path, y is not None)
    return Dataset(name=path.stem, x_train=x, y_train=y, source=str(path))
