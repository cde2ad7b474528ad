"""Result tables: shipped checkpoints' test metrics beside the reported numbers."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from boundlab import results


def test_reference_numbers_have_citations():
    table = results.reference_numbers()
    assert set(table["source"]) == {"paper", "llm"}
    assert table["citation"].str.contains("arXiv").all()
    assert set(results.reference_numbers("beauty")["dataset"]) == {"beauty"}


def test_checkpoint_results_reads_shipped_checkpoints():
    table = results.checkpoint_results()
    assert len(table) >= 1
    assert table["NDCG@10"].between(0, 1).all()
    assert (table["NDCG@10"] <= table["HR@10"]).all()


def test_comparison_leaves_out_slices(tmp_path):
    def metadata(name, limit):
        path = tmp_path / name / "best.json"
        path.parent.mkdir()
        path.write_text(json.dumps({"model": {"name": "sasrec"}, "loss": "sce(alpha=100,k=500)",
                                    "dataset": {"name": "beauty", "limit_users": limit}, "seed": 0, "epoch": 5,
                                    "test_metrics": {"NDCG@10": 0.05, "HR@10": 0.09, "n_users": 10}}))
        return path

    ours = results.checkpoint_results([metadata("full", None), metadata("slice", 300)])
    table = results.comparison_table("beauty", ours=ours)
    mine = table[table["source"] == "boundlab"]
    assert len(mine) == 1
    assert mine.iloc[0]["loss"] == "sce"
    assert mine.iloc[0]["model"] == "SASRec"
    assert (table["source"] == "llm").sum() == 4


def test_corrupt_metadata_names_file(tmp_path):
    path = tmp_path / "best.json"
    path.write_text("{\n oops")
    with pytest.raises(ValueError, match=r"best\.json:2"):
        results.checkpoint_results([path])


def test_missing_reference_file_explains(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        results.reference_numbers(path=tmp_path / "none.csv")
    pd.DataFrame({"source": ["paper"]}).to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(ValueError, match="missing columns"):
        results.reference_numbers(path=tmp_path / "bad.csv")
