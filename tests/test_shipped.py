"""The checkpoints shipped under checkpoints/ load, match their dataset and reproduce their metrics."""

from __future__ import annotations

from pathlib import Path

import pytest

from boundlab.checkpoint import load_checkpoint, load_recorded_dataset
from boundlab.data import find_dataset_file, leave_one_out
from boundlab.evaluation import evaluate

SHIPPED = sorted(path.parent for path in (Path(__file__).parent.parent / "checkpoints").glob("*/best.json"))

pytestmark = pytest.mark.skipif(find_dataset_file("beauty") is None, reason="Beauty.txt not found in the data folders")


def test_at_least_one_checkpoint_is_shipped():
    assert SHIPPED


@pytest.mark.parametrize("folder", SHIPPED, ids=[folder.name for folder in SHIPPED])
def test_shipped_checkpoint_reproduces_recorded_test_metrics(folder):
    model, metadata = load_checkpoint(folder)
    dataset = load_recorded_dataset(metadata, checkpoint=folder)
    result = evaluate(model, leave_one_out(dataset).test, history=metadata["history"])
    assert result.n_users == metadata["test_metrics"]["n_users"]
    for name in ("NDCG@10", "HR@10", "MRR"):
        assert result.metrics[name] == pytest.approx(metadata["test_metrics"][name], abs=2e-4)


@pytest.mark.parametrize("folder", SHIPPED, ids=[folder.name for folder in SHIPPED])
def test_shipped_checkpoint_is_small(folder):
    assert (folder / "best.safetensors").stat().st_size < 5 * 1024 * 1024
