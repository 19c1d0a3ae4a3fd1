"""A verified on-disk cache for built feature matrices.

`save_arrays` writes an `.npz` through a temporary file and `os.replace`, so a
crash mid-write leaves the old file or none, never half of one. The file also
records each array's shape, dtype and SHA-256 digest and the build settings.
`load_arrays` checks all of them and treats any mismatch as a cache miss, so a
truncated, edited or stale file is rebuilt rather than used.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import pathlib
import tempfile
import zipfile
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

_RECORD_KEY = "__record__"


def _digest(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).data).hexdigest()


def _record(arrays: dict[str, np.ndarray], settings: dict[str, Any]) -> dict[str, Any]:
    return {
        "settings": settings,
        "arrays": {
            name: {"shape": list(a.shape), "dtype": a.dtype.str, "sha256": _digest(a)}
            for name, a in arrays.items()
        },
    }


def save_arrays(
    path: str | os.PathLike, arrays: dict[str, np.ndarray], settings: dict[str, Any]
) -> None:
    """Write `arrays` and a verification record to `path` atomically.

    Args:
      path: target `.npz` file; its folder is created when missing.
      arrays: named arrays to store; names must not start with "__".
      settings: JSON-serialisable build settings that `load_arrays` must match.
    """
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    record = json.dumps(_record(arrays, settings), sort_keys=True)
    payload = {**arrays, _RECORD_KEY: np.frombuffer(record.encode(), np.uint8)}
    with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".tmp", delete=False) as f:
        try:
            np.savez(f, **payload)
            f.flush()
            os.fsync(f.fileno())
        except BaseException:
            os.unlink(f.name)
            raise
    os.replace(f.name, path)


def load_arrays(path: str | os.PathLike, settings: dict[str, Any]) -> dict[str, np.ndarray] | None:
    """Read arrays written by `save_arrays`, or return `None` when they cannot be trusted.

    A missing file is a silent miss. An unreadable file, a record that does not
    match `settings`, or an array whose shape, dtype or digest differs from its
    record is logged as a warning and also returns `None`, so the caller rebuilds.
    """
    path = pathlib.Path(path)
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as stored:
            record = json.loads(stored[_RECORD_KEY].tobytes().decode())
            arrays = {name: stored[name] for name in record["arrays"]}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as error:
        logger.warning("Ignoring unreadable cache file %s (%s); rebuilding.", path, error)
        return None
    if record.get("settings") != json.loads(json.dumps(settings, sort_keys=True)):
        logger.warning("Ignoring cache file %s built with other settings; rebuilding.", path)
        return None
    for name, expected in record["arrays"].items():
        array = arrays[name]
        if (
            list(array.shape) != expected["shape"]
            or array.dtype.str != expected["dtype"]
            or _digest(array) != expected["sha256"]
        ):
            logger.warning(
                "Ignoring cache file %s: array %r does not match its recorded shape, dtype or "
                "checksum; rebuilding.",
                path,
                name,
            )
            return None
    return arrays
