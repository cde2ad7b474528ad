"""Tests for checkpoints: round trips, atomic writes, corrupt files and dataset checks."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from boundlab import checkpoint
from boundlab.checkpoint import (
    CheckpointError,
    check_dataset,
    checkpoint_paths,
    flatten_optimizer_state,
    load_checkpoint,
    load_training_state,
    read_metadata,
    read_tensors,
    save_checkpoint,
    unflatten_optimizer_state,
    update_metadata,
    write_atomic,
)
from boundlab.data import SequenceDataset, write_sequence_file
from boundlab.models import build_model

N_ITEMS = 30
SMALL_SASREC = {"n_items": N_ITEMS, "max_len": 8, "hidden": 16, "n_heads": 2, "n_blocks": 1}


def make_model(seed: int = 0) -> torch.nn.Module:
    """Build a small seeded SASRec."""
    torch.manual_seed(seed)
    return build_model("sasrec", SMALL_SASREC)


def make_metadata(model: torch.nn.Module, sha256: str | None = "ab" * 32, n_items: int = N_ITEMS) -> dict:
    """Return the metadata fields that training writes for a model trained on a file dataset."""
    return {
        "model": {"name": "sasrec", "config": dataclasses.asdict(model.config)},
        "loss": "ce",
        "dataset": {"name": "tiny", "registered": False, "source": "/nowhere/tiny.txt",
                    "path": "/nowhere/tiny.txt", "sha256": sha256, "n_items": n_items,
                    "n_users": 5, "limit_users": None},
        "split": "leave-one-out",
        "history": "exclude-seen",
        "epoch": 3,
        "seed": 0,
    }


def make_dataset(n_items: int = N_ITEMS, sha256: str | None = None, name: str = "tiny") -> SequenceDataset:
    """Return five users with four items each, drawn from 1..n_items."""
    rng = np.random.default_rng(0)
    sequences = [rng.integers(1, n_items + 1, size=4).astype(np.int64) for _ in range(5)]
    sequences[0][0] = n_items  # so the catalogue size is exactly n_items
    return SequenceDataset(name, None, sha256, n_items, np.arange(1, 6, dtype=np.int64), sequences)


def adam_after_steps(model: torch.nn.Module, steps: int = 3) -> torch.optim.Adam:
    """Return an Adam optimizer that has taken ``steps`` steps on a fixed batch."""
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=1e-8)
    seqs = torch.tensor([[0, 0, 3, 4, 5, 6, 7, 8], [1, 2, 3, 4, 5, 6, 7, 9]])
    for _ in range(steps):
        optimizer.zero_grad()
        model(seqs).pow(2).mean().backward()
        optimizer.step()
    return optimizer


def files_in(folder: Path) -> list[str]:
    """Return the sorted names of every entry in ``folder``, hidden temporary files included."""
    return sorted(os.listdir(folder))


def test_round_trip_restores_weights(tmp_path: Path) -> None:
    model = make_model()
    save_checkpoint(tmp_path, "best", model, make_metadata(model))

    loaded, metadata = load_checkpoint(tmp_path)

    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    assert not loaded.training
    assert metadata["epoch"] == 3


def test_metadata_records_version_and_checksum(tmp_path: Path) -> None:
    model = make_model()
    save_checkpoint(tmp_path, "best", model, make_metadata(model))

    metadata = read_metadata(tmp_path / "best.json")

    assert metadata["format"] == checkpoint.FORMAT
    assert metadata["boundlab_version"]
    assert "git_commit" in metadata
    assert metadata["weights_file"] == "best.safetensors"
    assert len(metadata["weights_sha256"]) == 64
    assert metadata["training_state"] is False


def test_checkpoint_paths_accept_folder_and_files(tmp_path: Path) -> None:
    expected = (tmp_path / "best.safetensors", tmp_path / "best.json")

    assert checkpoint_paths(tmp_path) == expected
    assert checkpoint_paths(tmp_path / "best.json") == expected
    assert checkpoint_paths(tmp_path / "best.safetensors") == expected
    assert checkpoint_paths(tmp_path / "best") == expected


def test_loading_never_calls_torch_load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = make_model()
    save_checkpoint(tmp_path, "last", model, make_metadata(model), optimizer=adam_after_steps(model),
                    rng_states={"torch_cpu": torch.get_rng_state()})

    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("torch.load must not be used: it can unpickle")

    monkeypatch.setattr(torch, "load", forbidden)
    load_checkpoint(tmp_path / "last.json")
    load_training_state(tmp_path / "last.json", make_model(1), torch.optim.Adam(make_model(1).parameters()))


def test_update_metadata_keeps_weights_checksum(tmp_path: Path) -> None:
    model = make_model()
    save_checkpoint(tmp_path, "best", model, make_metadata(model))
    before = read_metadata(tmp_path)

    update_metadata(tmp_path / "best.json", test_metrics={"NDCG@10": 0.5})
    after = read_metadata(tmp_path)

    assert after["test_metrics"] == {"NDCG@10": 0.5}
    assert after["weights_sha256"] == before["weights_sha256"]
    load_checkpoint(tmp_path)


def test_atomic_write_replaces_content(tmp_path: Path) -> None:
    target = tmp_path / "file.bin"
    write_atomic(target, b"old")
    write_atomic(target, b"new content")

    assert target.read_bytes() == b"new content"
    assert files_in(tmp_path) == ["file.bin"]


def test_interrupted_write_leaves_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "file.bin"
    write_atomic(target, b"old")

    def interrupted(descriptor: int) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "fsync", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_atomic(target, b"partial")

    assert target.read_bytes() == b"old"
    assert files_in(tmp_path) == ["file.bin"]


def test_interrupted_first_write_leaves_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupted(descriptor: int) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", interrupted)
    with pytest.raises(OSError, match="disk full"):
        write_atomic(tmp_path / "file.bin", b"partial")

    assert files_in(tmp_path) == []


def test_interrupted_save_keeps_previous_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = make_model(0)
    save_checkpoint(tmp_path, "best", first, make_metadata(first))
    names_before = files_in(tmp_path)

    def interrupted(descriptor: int) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "fsync", interrupted)
    second = make_model(1)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(tmp_path, "best", second, make_metadata(second))
    monkeypatch.undo()

    loaded, _ = load_checkpoint(tmp_path)
    assert files_in(tmp_path) == names_before
    assert torch.equal(loaded.item_embedding.weight, first.item_embedding.weight)


def test_truncated_weights_rejected(tmp_path: Path) -> None:
    model = make_model()
    save_checkpoint(tmp_path, "best", model, make_metadata(model))
    weights = tmp_path / "best.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])

    with pytest.raises(CheckpointError, match="truncated") as caught:
        load_checkpoint(tmp_path)
    assert str(weights) in str(caught.value)


def test_truncated_safetensors_unreadable(tmp_path: Path) -> None:
    model = make_model()
    save_checkpoint(tmp_path, "best", model, make_metadata(model))
    weights = tmp_path / "best.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])

    with pytest.raises(CheckpointError, match="cannot be read as safetensors") as caught:
        read_tensors(weights)
    assert str(weights) in str(caught.value)


def test_missing_weights_rejected(tmp_path: Path) -> None:
    model = make_model()
    save_checkpoint(tmp_path, "best", model, make_metadata(model))
    (tmp_path / "best.safetensors").unlink()

    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path)


def test_corrupt_metadata_rejected(tmp_path: Path) -> None:
    model = make_model()
    save_checkpoint(tmp_path, "best", model, make_metadata(model))
    metadata = tmp_path / "best.json"
    metadata.write_text(metadata.read_text()[:50])

    with pytest.raises(CheckpointError, match="not valid JSON") as caught:
        load_checkpoint(tmp_path)
    assert str(metadata) in str(caught.value)


def test_foreign_json_rejected(tmp_path: Path) -> None:
    (tmp_path / "best.json").write_text(json.dumps({"weights": "x"}))

    with pytest.raises(CheckpointError, match="not a boundlab checkpoint"):
        read_metadata(tmp_path)


def test_wrong_item_count_rejected(tmp_path: Path) -> None:
    model = make_model()
    metadata = make_metadata(model, sha256=None)

    with pytest.raises(CheckpointError, match=f"{N_ITEMS} items") as caught:
        check_dataset(metadata, make_dataset(n_items=N_ITEMS + 5), checkpoint=tmp_path / "best.json")
    assert "best.json" in str(caught.value)


def test_wrong_checksum_rejected(tmp_path: Path) -> None:
    model = make_model()
    path = tmp_path / "other.txt"
    write_sequence_file(make_dataset(), path)
    from boundlab.data import load_dataset

    other = load_dataset(path)
    metadata = make_metadata(model, sha256="0" * 64)

    with pytest.raises(CheckpointError, match="SHA-256") as caught:
        load_checkpoint_with(tmp_path, model, metadata, other)
    assert str(path) in str(caught.value)


def load_checkpoint_with(folder: Path, model: torch.nn.Module, metadata: dict, dataset: SequenceDataset) -> None:
    """Save ``model`` with ``metadata`` and load it back, checked against ``dataset``."""
    save_checkpoint(folder, "best", model, metadata)
    load_checkpoint(folder, dataset=dataset)


def test_matching_dataset_accepted(tmp_path: Path) -> None:
    model = make_model()
    dataset = make_dataset()
    metadata = make_metadata(model, sha256=None)

    check_dataset(metadata, dataset)


def test_optimizer_state_round_trip_is_exact() -> None:
    model = make_model()
    optimizer = adam_after_steps(model)
    tensors, record = flatten_optimizer_state(optimizer.state_dict())

    clone = make_model()
    clone.load_state_dict(model.state_dict())
    restored = torch.optim.Adam(clone.parameters(), lr=0.5)
    restored.load_state_dict(unflatten_optimizer_state(tensors, json.loads(json.dumps(record))))
    seqs = torch.tensor([[0, 0, 0, 1, 2, 3, 4, 5]])
    for current_model, current_optimizer in ((model, optimizer), (clone, restored)):
        current_model.eval()  # no dropout, so both steps see the same gradient
        current_optimizer.zero_grad()
        current_model(seqs).sum().backward()
        current_optimizer.step()

    for key, value in model.state_dict().items():
        assert torch.equal(clone.state_dict()[key], value), key
    assert restored.param_groups[0]["lr"] == 1e-3
    assert restored.param_groups[0]["betas"] == (0.9, 0.999)


def test_training_state_restores_rng(tmp_path: Path) -> None:
    model = make_model()
    optimizer = adam_after_steps(model)
    generator = torch.Generator().manual_seed(7)
    torch.rand(3, generator=generator)  # advance it away from the seed state
    save_checkpoint(tmp_path, "last", model, make_metadata(model), optimizer=optimizer,
                    rng_states={"shuffle": generator.get_state()})
    expected = torch.randint(0, 1000, (5,), generator=generator)

    _, rng_states = load_training_state(tmp_path / "last", make_model(1), torch.optim.Adam(make_model(1).parameters()))
    restored = torch.Generator().set_state(rng_states["shuffle"])

    assert torch.equal(torch.randint(0, 1000, (5,), generator=restored), expected)


def test_weights_only_checkpoint_cannot_resume(tmp_path: Path) -> None:
    model = make_model()
    save_checkpoint(tmp_path, "best", model, make_metadata(model))

    with pytest.raises(CheckpointError, match="training state"):
        load_training_state(tmp_path / "best", model, torch.optim.Adam(model.parameters()))
