"""Versioned, atomic files for trained states and models.

A file is a zip archive with two members: `metadata.json` (format name, format
version, config, shapes and whatever the writer adds) and `arrays.msgpack`
(every array, serialised with `flax.serialization`). Zip stores a CRC-32 of each
member, so a truncated or corrupted file is detected on reading. Writes go to a
temporary file in the same folder that then replaces the target with
`os.replace`, so an interrupted save leaves the previous file intact.

Example:
  >>> import jax, numpy as np
  >>> from dcan_jax import checkpoint, get_config, step
  >>> config = get_config("paper", n_clusters=2, encoder_widths=(4, 2))
  >>> x = np.random.default_rng(0).uniform(size=(20, 3)).astype(np.float32)
  >>> state = step.create_train_state(jax.random.key(0), config, x)
  >>> checkpoint.save_state("/tmp/state.dcan", state)
  >>> checkpoint.load_state("/tmp/state.dcan").config == config
  True
"""

from __future__ import annotations

import json
import os
import pathlib
import uuid
import zipfile
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import serialization

from dcan_jax import step as step_lib
from dcan_jax.config import DCANConfig, config_from_mapping

FORMAT_NAME = "dcan_jax"
# Version 1: zip of metadata.json and arrays.msgpack; the state's PRNG key is
# stored as its raw key data.
FORMAT_VERSION = 1

_METADATA_MEMBER = "metadata.json"
_ARRAYS_MEMBER = "arrays.msgpack"

PathLike = str | os.PathLike


class CheckpointError(ValueError):
    """Raised when a file is missing, unreadable, corrupted or of another format version."""


def write_file(path: PathLike, metadata: Mapping[str, Any], arrays: Mapping[str, Any]) -> None:
    """Write `metadata` (JSON-serialisable) and `arrays` (a pytree of arrays) atomically.

    The format name and version are added to the metadata. A temporary file in the
    target's folder receives the data, is flushed to disk, and then replaces `path`.
    """
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    header = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, **metadata}
    metadata_bytes = json.dumps(header, indent=2, sort_keys=True).encode()
    arrays_bytes = serialization.msgpack_serialize(jax.tree.map(np.asarray, dict(arrays)))
    # Opened with "x" rather than mkstemp so that the file mode follows the umask.
    temp_name = path.parent / f".{path.name}.{uuid.uuid4().hex}.tmp"
    try:
        with open(temp_name, "xb") as f:
            with zipfile.ZipFile(f, "w", zipfile.ZIP_STORED) as archive:
                archive.writestr(_METADATA_MEMBER, metadata_bytes)
                archive.writestr(_ARRAYS_MEMBER, arrays_bytes)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temp_name, path)
    finally:
        # Left over only when writing or renaming failed, e.g. on KeyboardInterrupt.
        if os.path.exists(temp_name):
            os.remove(temp_name)


def read_metadata(path: PathLike) -> dict[str, Any]:
    """Read and check the metadata of a file written by `write_file`.

    Raises:
      CheckpointError: when the file is missing, truncated, corrupted, not a
        dcan_jax file, or of a format version this release cannot read.
    """
    with _open_archive(path) as archive:
        return _read_checked_metadata(archive, path)


def read_file(path: PathLike) -> tuple[dict[str, Any], dict[str, Any]]:
    """Read a file written by `write_file`; returns `(metadata, arrays)`.

    Arrays come back as NumPy arrays, bit for bit as written.

    Raises:
      CheckpointError: as `read_metadata`, or when the arrays are damaged.
    """
    with _open_archive(path) as archive:
        metadata = _read_checked_metadata(archive, path)
        payload = _read_member(archive, _ARRAYS_MEMBER, path)
    try:
        arrays = serialization.msgpack_restore(payload)
    except Exception as error:  # msgpack raises several unrelated types on bad input.
        raise CheckpointError(
            f"{str(path)!r} has unreadable arrays ({error}); the file is damaged, so "
            "load an earlier copy or train again."
        ) from error
    return metadata, arrays


def _open_archive(path: PathLike) -> zipfile.ZipFile:
    if not os.path.isfile(path):
        raise CheckpointError(f"No model or checkpoint file at {str(path)!r}; check the path.")
    try:
        return zipfile.ZipFile(path, "r")
    except (zipfile.BadZipFile, OSError) as error:
        raise CheckpointError(
            f"{str(path)!r} is not a readable dcan_jax file ({error}); it is truncated, "
            "corrupted or of another kind. Load an earlier copy or train again."
        ) from error


def _read_member(archive: zipfile.ZipFile, name: str, path: PathLike) -> bytes:
    try:
        return archive.read(name)
    except KeyError as error:
        raise CheckpointError(
            f"{str(path)!r} has no {name} member, so it was not written by dcan_jax."
        ) from error
    except (zipfile.BadZipFile, OSError, EOFError) as error:
        # BadZipFile reports a CRC-32 mismatch, i.e. changed bytes.
        raise CheckpointError(
            f"{str(path)!r} is corrupted ({name}: {error}); load an earlier copy or train again."
        ) from error


def _read_checked_metadata(archive: zipfile.ZipFile, path: PathLike) -> dict[str, Any]:
    raw = _read_member(archive, _METADATA_MEMBER, path)
    try:
        metadata = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CheckpointError(f"{str(path)!r} has invalid metadata JSON: {error}.") from error
    if not isinstance(metadata, dict) or metadata.get("format") != FORMAT_NAME:
        raise CheckpointError(f"{str(path)!r} is not a dcan_jax model or checkpoint file.")
    version = metadata.get("format_version")
    if version != FORMAT_VERSION:
        writer = metadata.get("dcan_jax_version", "an unknown version")
        raise CheckpointError(
            f"{str(path)!r} has format version {version!r}, but this dcan_jax reads only "
            f"version {FORMAT_VERSION}; load it with the dcan_jax release that wrote it "
            f"({writer})."
        )
    return metadata


def state_metadata(state: step_lib.TrainState) -> dict[str, Any]:
    """Describe `state` in JSON: its config, input size, seed axis and key type."""
    n_features = state.encoder_params["Dense_0"]["kernel"].shape[-2]
    step = np.asarray(state.step)
    return {
        "config": state.config.to_dict(),
        "n_features": int(n_features),
        "n_seeds": int(step.shape[0]) if step.ndim == 1 else None,
        "key_impl": str(jax.random.key_impl(state.key)),
    }


def state_to_arrays(state: step_lib.TrainState) -> dict[str, Any]:
    """Return the state's arrays as a nested dict; the PRNG key becomes its key data."""
    raw = state.replace(key=jax.random.key_data(state.key))
    return serialization.to_state_dict(raw)


def state_from_arrays(
    arrays: Mapping[str, Any], metadata: Mapping[str, Any], path: PathLike = "<memory>"
) -> step_lib.TrainState:
    """Rebuild a `TrainState` from `state_to_arrays` output and `state_metadata`.

    Every array is checked against the shape and dtype that the stored config
    implies, so a file whose arrays do not match its config is rejected.

    Raises:
      CheckpointError: for an invalid config or mismatched arrays.
    """
    try:
        config = config_from_mapping(metadata["config"])
        n_features = int(metadata["n_features"])
        n_seeds = metadata["n_seeds"]
        key_impl = metadata["key_impl"]
    except (KeyError, TypeError, ValueError) as error:
        raise CheckpointError(
            f"{str(path)!r} has an invalid state description ({error}); it was not "
            "written by this dcan_jax release."
        ) from error
    template = _state_template(config, n_features, n_seeds)
    try:
        raw = serialization.from_state_dict(template, dict(arrays))
        jax.tree.map(_check_leaf, template, raw)
    except (KeyError, TypeError, ValueError) as error:
        raise CheckpointError(
            f"{str(path)!r} contains arrays that do not match its config: {error}"
        ) from error
    state = jax.tree.map(jnp.asarray, raw)
    return state.replace(key=jax.random.wrap_key_data(state.key, impl=key_impl))


def _state_template(config: DCANConfig, n_features: int, n_seeds: int | None):
    """Shapes and dtypes of a state, with the key as raw key data; computes nothing."""

    def init(key):
        state = step_lib.init_train_state(key, config, n_features)
        return state.replace(key=jax.random.key_data(state.key))

    if n_seeds is None:
        return jax.eval_shape(init, jax.random.key(0))
    keys = jax.eval_shape(lambda: jax.random.split(jax.random.key(0), n_seeds))
    return jax.eval_shape(jax.vmap(init), keys)


def _check_leaf(expected: jax.ShapeDtypeStruct, value: Any) -> None:
    value = np.asarray(value)
    if value.shape != expected.shape or value.dtype != expected.dtype:
        expected_text = f"{expected.dtype}{list(expected.shape)}"
        raise ValueError(f"expected {expected_text}, found {value.dtype}{list(value.shape)}")


def save_state(
    path: PathLike,
    state: step_lib.TrainState,
    metadata: Mapping[str, Any] | None = None,
) -> None:
    """Write a `TrainState` (one seed, or seed-stacked as `fit` returns it) atomically.

    Args:
      path: target file; its folder is created when missing.
      state: the state to save.
      metadata: extra JSON-serialisable entries, stored under "user".
    """
    from dcan_jax import __version__

    header = {
        "kind": "train_state",
        "dcan_jax_version": __version__,
        "state": state_metadata(state),
        "user": dict(metadata or {}),
    }
    write_file(path, header, {"state": state_to_arrays(state)})


def load_state(path: PathLike) -> step_lib.TrainState:
    """Read a `TrainState` written by `save_state`, bit for bit as saved.

    Raises:
      CheckpointError: when the file is missing, truncated, corrupted, of
        another format version or not a saved state.
    """
    metadata, arrays = read_file(path)
    if metadata.get("kind") != "train_state" or "state" not in arrays:
        raise CheckpointError(
            f"{str(path)!r} contains a {metadata.get('kind')!r}, not a train state; "
            "load it with the matching function (e.g. DCAN.load for a model)."
        )
    return state_from_arrays(arrays["state"], metadata["state"], path)
