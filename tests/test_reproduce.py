"""The smoke preset end to end: train on a slice, evaluate, audit, report."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from boundlab.cli import main
from boundlab.data import find_dataset_file
from boundlab.reproduce import load_preset, reproduce

pytestmark = pytest.mark.skipif(find_dataset_file("beauty") is None, reason="Beauty.txt not found in the data folders")


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    out = tmp_path_factory.mktemp("smoke")
    return reproduce("smoke", out=out, train=True), out


def test_smoke_has_no_deterministic_violations(smoke):
    result, _ = smoke
    assert result.violations == 0
    deterministic = result.audit_summary[result.audit_summary["surrogate"].str.startswith("ce")]
    assert (deterministic["deterministic_violations"] == 0).all()


def test_smoke_report_and_tables_exist(smoke):
    result, out = smoke
    assert result.report.is_file()
    text = result.report.read_text()
    assert "## Test metrics" in text
    assert "## Audit summary" in text
    metrics = pd.read_csv(out / "test_metrics.csv")
    assert list(metrics["run"]) == [run.name for run in load_preset("smoke").runs]
    assert ((metrics["NDCG@10"] >= 0) & (metrics["NDCG@10"] <= 1)).all()
    metadata = json.loads((out / "audits" / "smoke-ce" / "audit.json").read_text())
    assert metadata["history_policy"] == "exclude-seen"


def test_smoke_figures_exist(smoke):
    _, out = smoke
    for stem in ("gap_distributions", "coverage_vs_theorems"):
        for suffix in (".png", ".pdf"):
            assert (out / "figures" / f"{stem}{suffix}").stat().st_size > 1000


def test_smoke_coverage_within_unit_interval(smoke):
    result, _ = smoke
    coverage = result.audit_summary["coverage"]
    assert ((coverage >= 0) & (coverage <= 1)).all()


def test_smoke_coverage_at_least_binomial_bound(smoke):
    result, _ = smoke
    sampled = result.audit_summary.dropna(subset=["mean_binomial_bound"])
    assert len(sampled) > 0
    slack = sampled["coverage"] + 4 * sampled["coverage_se"] + 1e-9 - sampled["mean_binomial_bound"]
    assert (slack >= 0).all()


def test_reproduce_without_checkpoints_explains(tmp_path, capsys):
    with pytest.raises(FileNotFoundError, match="--train"):
        reproduce("smoke", out=tmp_path / "out", checkpoints=tmp_path / "none")


def test_unknown_preset_lists_available():
    with pytest.raises(FileNotFoundError, match="known presets: default, smoke"):
        load_preset("nonexistent")


def test_reproduce_command_uses_trained_checkpoints(smoke, tmp_path, capsys):
    _, out = smoke
    status = main(["reproduce", "--preset", "smoke", "--checkpoints", str(out / "runs"), "--out", str(tmp_path)])
    output = capsys.readouterr().out
    assert status == 0
    assert "deterministic-bound violations: 0" in output
    assert "report:" in output


def test_cli_reports_bad_preset_without_traceback(capsys):
    status = main(["reproduce", "--preset", "nosuch"])
    error = capsys.readouterr().err
    assert status == 2
    assert error.startswith("boundlab reproduce: error: preset 'nosuch' not found")
