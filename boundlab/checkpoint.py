"""Checkpoints as a safetensors weights file plus a JSON metadata file, written atomically.

A checkpoint named ``best`` in a run folder is the pair ``best.safetensors`` and ``best.json``.
The JSON file records how to rebuild the model (registry name and config) and the dataset it was
trained on (name, path, SHA-256, item count). It also records the SHA-256 of the weights file. A
loader can therefore detect a truncated or replaced weights file and a model paired with the
wrong dataset.

A training-state checkpoint (``last``) also stores the optimizer state, flattened into tensors
named ``optimizer/<param index>/<key>`` with its scalars in the JSON file, and the random
number generator states as uint8 tensors named ``rng/<name>``. Model tensors there are named
``model/<state_dict key>``. In a plain weights checkpoint they keep their ``state_dict`` keys.

Nothing is ever unpickled: only ``safetensors`` and ``json`` read these files.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors_bytes
from safetensors.torch import save as save_safetensors_bytes
from torch import Tensor, nn

import boundlab
from boundlab.data import SequenceDataset, limit_users, load_dataset
from boundlab.models import build_model

logger = logging.getLogger(__name__)

FORMAT = "boundlab-checkpoint"
FORMAT_VERSION = 1
WEIGHTS_SUFFIX = ".safetensors"
METADATA_SUFFIX = ".json"

MODEL_PREFIX = "model/"
OPTIMIZER_PREFIX = "optimizer/"
RNG_PREFIX = "rng/"


class CheckpointError(ValueError):
    """A checkpoint that is missing, truncated, corrupt, or does not match its dataset."""


def write_atomic(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see either the old file or the complete new one.

    The bytes go to a temporary file in the same folder, which is flushed, fsynced and then
    moved over ``path`` with ``os.replace``. On any error the temporary file is removed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        # mkstemp creates the file as 0600; checkpoints should be readable like other outputs.
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    _fsync_directory(path.parent)


def _fsync_directory(folder: Path) -> None:
    # Makes the rename itself durable. Some platforms and file systems cannot open or fsync a
    # folder, and the file content is already safe by then, so failures are ignored.
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


def git_commit() -> str | None:
    """Return the commit hash of the repository boundlab is imported from, or None outside git."""
    try:
        completed = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(boundlab.__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    commit = completed.stdout.strip()
    return commit if completed.returncode == 0 and commit else None


def checkpoint_paths(path: str | os.PathLike[str]) -> tuple[Path, Path]:
    """Return ``(weights, metadata)`` paths for a checkpoint given by either file or by a run folder.

    A folder means its ``best`` checkpoint. A path without a suffix is the checkpoint's stem.
    """
    path = Path(path).expanduser()
    if path.is_dir():
        path = path / "best"
    if path.suffix in (WEIGHTS_SUFFIX, METADATA_SUFFIX):
        path = path.with_suffix("")
    return path.with_name(path.name + WEIGHTS_SUFFIX), path.with_name(path.name + METADATA_SUFFIX)


def save_checkpoint(
    folder: str | os.PathLike[str],
    name: str,
    model: nn.Module,
    metadata: Mapping[str, Any],
    *,
    optimizer: torch.optim.Optimizer | None = None,
    rng_states: Mapping[str, Tensor] | None = None,
) -> Path:
    """Write ``<folder>/<name>.safetensors`` and ``<name>.json`` atomically; return the JSON path.

    Without ``optimizer`` and ``rng_states`` the weights file contains the model's ``state_dict``
    under its own keys. With either, it is a training-state file (see the module docstring).
    ``metadata`` must be JSON-serialisable. Format, version, git commit, time and the weights'
    SHA-256 are added to it.
    """
    weights_path, metadata_path = checkpoint_paths(Path(folder) / name)
    training_state = optimizer is not None or rng_states is not None
    prefix = MODEL_PREFIX if training_state else ""
    tensors = {prefix + key: _to_storable(value) for key, value in model.state_dict().items()}

    record = dict(metadata)
    if optimizer is not None:
        optimizer_tensors, optimizer_record = flatten_optimizer_state(optimizer.state_dict())
        tensors.update(optimizer_tensors)
        record["optimizer"] = optimizer_record
    if rng_states is not None:
        for rng_name, state in rng_states.items():
            tensors[RNG_PREFIX + rng_name] = _to_storable(state)

    weights = save_safetensors_bytes(tensors, metadata={"format": FORMAT})
    record.update(
        format=FORMAT,
        format_version=FORMAT_VERSION,
        training_state=training_state,
        weights_file=weights_path.name,
        weights_sha256=hashlib.sha256(weights).hexdigest(),
        boundlab_version=boundlab.__version__,
        git_commit=git_commit(),
        saved_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    )
    text = json.dumps(record, indent=2, sort_keys=False, allow_nan=False) + "\n"

    # The weights go first: a crash between the two writes leaves a JSON file whose recorded
    # SHA-256 does not match the new weights, which the loader reports.
    write_atomic(weights_path, weights)
    write_atomic(metadata_path, text.encode("utf-8"))
    logger.debug("saved checkpoint %s (%d tensors)", weights_path, len(tensors))
    return metadata_path


def read_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and check a checkpoint's JSON metadata file; raise CheckpointError naming the file."""
    _, metadata_path = checkpoint_paths(path)
    try:
        text = metadata_path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CheckpointError(
            f"checkpoint metadata {metadata_path} not found; pass a run folder, or the .json or "
            ".safetensors file of a checkpoint that boundlab train wrote"
        ) from None
    try:
        record = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CheckpointError(
            f"checkpoint metadata {metadata_path} is not valid JSON ({error}); the file is "
            "truncated or corrupt, so restore it or train the model again"
        ) from None
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise CheckpointError(
            f"{metadata_path} is not a boundlab checkpoint (its 'format' field is not {FORMAT!r})"
        )
    if record.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{metadata_path} has checkpoint format version {record.get('format_version')!r}, but "
            f"this boundlab {boundlab.__version__} reads version {FORMAT_VERSION}; use the "
            "boundlab version recorded in the file"
        )
    return record


def update_metadata(path: str | os.PathLike[str], **fields: Any) -> dict[str, Any]:
    """Set ``fields`` in a checkpoint's JSON file (atomically) and return the new metadata."""
    _, metadata_path = checkpoint_paths(path)
    record = read_metadata(metadata_path)
    record.update(fields)
    text = json.dumps(record, indent=2, allow_nan=False) + "\n"
    write_atomic(metadata_path, text.encode("utf-8"))
    return record


def read_tensors(path: str | os.PathLike[str], expected_sha256: str | None = None) -> dict[str, Tensor]:
    """Read every tensor of a safetensors file onto the CPU.

    Raises CheckpointError naming the file when it is missing, when its SHA-256 differs from
    ``expected_sha256``, or when safetensors cannot parse it (truncated or corrupt).
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise CheckpointError(
            f"checkpoint weights {path} not found; the run may have been moved without it, so "
            "copy the .safetensors file next to its .json file"
        ) from None
    if expected_sha256 is not None:
        actual = hashlib.sha256(data).hexdigest()
        if actual != expected_sha256:
            raise CheckpointError(
                f"checkpoint weights {path} are truncated, corrupt or from another save: their "
                f"SHA-256 is {actual} but the metadata records {expected_sha256}. Restore the "
                "file, resume from another checkpoint, or train again"
            )
    try:
        return load_safetensors_bytes(data)
    except (SafetensorError, ValueError, RuntimeError) as error:
        raise CheckpointError(
            f"checkpoint weights {path} cannot be read as safetensors ({error}); the file is "
            "truncated or corrupt, so restore it or train the model again"
        ) from None


def load_checkpoint(
    path: str | os.PathLike[str],
    *,
    device: torch.device | str = "cpu",
    dataset: SequenceDataset | None = None,
) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model recorded in a checkpoint, load its weights and return ``(model, metadata)``.

    ``path`` is a run folder (its ``best`` checkpoint) or either file of a checkpoint. The model
    is returned in eval mode on ``device``. When ``dataset`` is given, it is checked against the
    recorded item count and SHA-256 first (see :func:`check_dataset`).
    """
    weights_path, metadata_path = checkpoint_paths(path)
    metadata = read_metadata(metadata_path)
    if dataset is not None:
        check_dataset(metadata, dataset, checkpoint=metadata_path)

    model_record = metadata.get("model")
    if not isinstance(model_record, dict) or "name" not in model_record or "config" not in model_record:
        raise CheckpointError(
            f"{metadata_path} has no usable 'model' entry with a name and config; the file is "
            "corrupt or was not written by boundlab train"
        )
    try:
        model = build_model(model_record["name"], model_record["config"])
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"{metadata_path}: cannot rebuild the model ({error})") from None

    tensors = read_tensors(weights_path, metadata.get("weights_sha256"))
    if metadata.get("training_state"):
        tensors = {
            key[len(MODEL_PREFIX) :]: value for key, value in tensors.items() if key.startswith(MODEL_PREFIX)
        }
    load_model_tensors(model, tensors, weights_path)
    return model.to(device).eval(), metadata


def load_model_tensors(model: nn.Module, tensors: Mapping[str, Tensor], source: Path) -> None:
    """Copy ``tensors`` into ``model`` in place, raising CheckpointError on missing or extra keys."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing or unexpected:
        raise CheckpointError(
            f"{source} does not match the model recorded in its metadata: missing tensors "
            f"{missing[:5]}, unexpected tensors {unexpected[:5]}. The weights and the .json file "
            "come from different runs"
        )
    for key, value in tensors.items():
        if value.shape != expected[key].shape:
            raise CheckpointError(
                f"{source}: tensor {key!r} has shape {tuple(value.shape)} but the model expects "
                f"{tuple(expected[key].shape)}; the weights and the .json file come from different runs"
            )
    model.load_state_dict(dict(tensors), strict=True)


def check_dataset(
    metadata: Mapping[str, Any], dataset: SequenceDataset, *, checkpoint: str | os.PathLike[str] = "checkpoint"
) -> None:
    """Raise CheckpointError unless ``dataset`` has the item count and SHA-256 the checkpoint records.

    A dataset built in memory has no SHA-256. Its item count is still checked and the checksum
    check is skipped with a warning.
    """
    record = metadata.get("dataset") or {}
    expected_items = record.get("n_items")
    if expected_items is not None and dataset.n_items != expected_items:
        raise CheckpointError(
            f"{checkpoint} was trained on {record.get('name')!r} with {expected_items} items, but "
            f"dataset {dataset.name!r} ({dataset.path}) has {dataset.n_items} items; evaluate on "
            "the dataset the model was trained on"
        )

    expected_sha256 = record.get("sha256")
    if expected_sha256 is None:
        return
    if dataset.sha256 is None:
        logger.warning(
            "dataset %r has no file checksum, so it cannot be matched against %s (SHA-256 %s)",
            dataset.name,
            checkpoint,
            expected_sha256,
        )
        return
    if dataset.sha256 != expected_sha256:
        raise CheckpointError(
            f"{checkpoint} was trained on a dataset file with SHA-256 {expected_sha256} "
            f"({record.get('path')}), but {dataset.path} has SHA-256 {dataset.sha256}. The file "
            "changed or is another dataset; pass the original file"
        )


def load_recorded_dataset(
    metadata: Mapping[str, Any],
    *,
    data_dir: str | os.PathLike[str] | None = None,
    source: str | os.PathLike[str] | None = None,
    checkpoint: str | os.PathLike[str] = "checkpoint",
) -> SequenceDataset:
    """Load the dataset a checkpoint was trained on and check it with :func:`check_dataset`.

    The dataset is loaded by its registered name, or from its recorded path, unless ``source``
    (a name or path) replaces it. The recorded ``limit_users`` slice is applied again.
    """
    record = metadata.get("dataset") or {}
    if source is None:
        source = record.get("source")
        if source is None:
            raise CheckpointError(f"{checkpoint} records no dataset; pass the dataset explicitly")
        if not record.get("registered") and not Path(source).is_file():
            raise CheckpointError(
                f"dataset file {source} recorded in {checkpoint} not found; pass the same file "
                "from its new location (boundlab evaluate --dataset PATH)"
            )
    dataset = load_dataset(source, data_dir)
    if record.get("limit_users") is not None:
        dataset = limit_users(dataset, int(record["limit_users"]))
    check_dataset(metadata, dataset, checkpoint=checkpoint)
    return dataset


def flatten_optimizer_state(state: Mapping[str, Any]) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Split an optimizer ``state_dict`` into tensors named ``optimizer/<index>/<key>`` and a JSON part.

    Tensor entries of the per-parameter state become tensors; other entries and the parameter
    groups go to the JSON part. :func:`unflatten_optimizer_state` inverts this exactly.
    """
    tensors: dict[str, Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for index, entries in state["state"].items():
        for key, value in entries.items():
            if isinstance(value, Tensor):
                tensors[f"{OPTIMIZER_PREFIX}{index}/{key}"] = _to_storable(value)
            else:
                scalars.setdefault(str(index), {})[key] = value
    record = {
        "param_groups": [dict(group) for group in state["param_groups"]],
        "scalars": scalars,
        "indices": [int(index) for index in state["state"]],
    }
    return tensors, json.loads(json.dumps(record, allow_nan=False))


def unflatten_optimizer_state(tensors: Mapping[str, Tensor], record: Mapping[str, Any]) -> dict[str, Any]:
    """Rebuild an optimizer ``state_dict`` from :func:`flatten_optimizer_state`'s output."""
    state: dict[int, dict[str, Any]] = {int(index): {} for index in record["indices"]}
    for name, value in tensors.items():
        if not name.startswith(OPTIMIZER_PREFIX):
            continue
        index, key = name[len(OPTIMIZER_PREFIX) :].split("/", 1)
        state.setdefault(int(index), {})[key] = value
    for index, entries in record["scalars"].items():
        state.setdefault(int(index), {}).update(entries)
    groups = []
    for group in record["param_groups"]:
        group = dict(group)
        # JSON turns tuples such as Adam's betas into lists; optimizers expect the tuple back.
        for key, value in group.items():
            if key != "params" and isinstance(value, list):
                group[key] = tuple(value)
        groups.append(group)
    return {"state": state, "param_groups": groups}


def load_training_state(
    path: str | os.PathLike[str],
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
) -> tuple[dict[str, Any], dict[str, Tensor]]:
    """Restore ``model`` and ``optimizer`` in place from a training-state checkpoint.

    Returns ``(metadata, rng_states)``; the caller applies the RNG states to its generators.
    """
    weights_path, metadata_path = checkpoint_paths(path)
    metadata = read_metadata(metadata_path)
    if not metadata.get("training_state") or "optimizer" not in metadata:
        raise CheckpointError(
            f"{metadata_path} contains model weights only, not a training state; resume needs the "
            "run folder's last.json and last.safetensors"
        )
    tensors = read_tensors(weights_path, metadata.get("weights_sha256"))

    model_tensors = {
        key[len(MODEL_PREFIX) :]: value for key, value in tensors.items() if key.startswith(MODEL_PREFIX)
    }
    load_model_tensors(model, model_tensors, weights_path)
    try:
        optimizer.load_state_dict(unflatten_optimizer_state(tensors, metadata["optimizer"]))
    except (KeyError, ValueError) as error:
        raise CheckpointError(
            f"{weights_path}: the optimizer state does not fit this optimizer ({error}); the "
            "run folder belongs to another model or optimizer configuration"
        ) from None

    rng_states = {
        key[len(RNG_PREFIX) :]: value for key, value in tensors.items() if key.startswith(RNG_PREFIX)
    }
    return metadata, rng_states


def _to_storable(tensor: Tensor) -> Tensor:
    # safetensors needs dense, contiguous CPU tensors that share no memory with each other.
    return tensor.detach().to("cpu").contiguous().clone()
