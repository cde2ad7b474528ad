"""Audits on raw scores and embeddings: bounds hold, coverage is sane, outputs parse."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from boundlab import losses
from boundlab.audit import audit_embeddings, audit_scores


@pytest.fixture(scope="module")
def audited():
    generator = torch.Generator().manual_seed(0)
    scores = torch.randn(150, 400, generator=generator) * 2
    targets = torch.randint(0, 400, (150,), generator=generator)
    exclude = torch.randint(-1, 400, (150, 6), generator=generator)
    surrogates = ["ce", "ce_eta(eta=0)", "ce_top(n=50)", "ssm(k=40)", "sce(alpha=20,k=40)", "bpr"]
    result = audit_scores(scores, targets, exclude=exclude, surrogates=surrogates, draws=30, chunk_size=64)
    return result, scores, targets, exclude


def test_deterministic_bounds_have_no_violations(audited):
    result, *_ = audited
    assert result.violations().empty
    deterministic = result.summary[result.summary["surrogate"].isin(["ce", "ce_eta(eta=0)"])]
    assert (deterministic["deterministic_violations"] == 0).all()
    assert (deterministic["coverage"] == 1.0).all()


def test_ce_top_counts_users_outside_its_domain(audited):
    result, *_ = audited
    row = result.summary[(result.summary["surrogate"] == "ce_top(n=50)") & (result.summary["metric"] == "rr")].iloc[0]
    assert row["users_outside_bound_domain"] == int((result.per_user["rank"] > 50).sum())
    assert row["deterministic_violations"] == 0


def test_coverage_between_zero_and_one(audited):
    result, *_ = audited
    coverage = result.per_user.filter(like=":coverage_")
    assert ((coverage >= 0) & (coverage <= 1)).all().all()


def test_coverage_at_least_binomial_bound(audited):
    result, *_ = audited
    for spec in ("ssm(k=40,sampler=uniform)", "sce(alpha=20,k=40,sampler=uniform)"):
        for metric in ("ndcg", "rr"):
            row = result.summary[(result.summary["surrogate"] == spec) & (result.summary["metric"] == metric)].iloc[0]
            assert row["coverage"] + 4 * row["coverage_se"] + 1e-9 >= row["mean_binomial_bound"]
            assert row["mean_binomial_bound"] + 1e-12 >= row["mean_x24_bound"]


def test_per_user_values_match_direct_computation(audited):
    result, scores, targets, exclude = audited
    from boundlab.ranking import index_to_mask, target_ranks

    mask = index_to_mask(exclude, 400)
    ranks = target_ranks(scores.double(), targets, exclude=mask)
    ce = losses.get("ce")(scores.double(), targets, exclude=mask)
    assert np.array_equal(result.per_user["rank"].to_numpy(), ranks.numpy())
    assert np.array_equal(result.per_user["ce:loss"].to_numpy(), ce.numpy())
    assert np.allclose(result.per_user["ce:gap_rr"].to_numpy(), (ce - torch.log(ranks.double())).numpy(), atol=1e-12)
    for spec in ("ce_eta(eta=0)", "ce_top(n=50)"):
        direct = losses.get(spec)(scores.double(), targets, exclude=mask)
        assert np.array_equal(result.per_user[f"{spec}:loss"].to_numpy(), direct.numpy())


def test_audit_is_deterministic(audited):
    _, scores, targets, exclude = audited
    again = audit_scores(scores, targets, exclude=exclude, surrogates=["sce(alpha=20,k=40)"], draws=30, chunk_size=64,
                         seed=0)
    first = audit_scores(scores, targets, exclude=exclude, surrogates=["sce(alpha=20,k=40)"], draws=30, chunk_size=64,
                         seed=0)
    pd.testing.assert_frame_equal(first.per_user, again.per_user)


def test_embeddings_audit_matches_scores_audit():
    generator = torch.Generator().manual_seed(1)
    users = torch.randn(40, 8, generator=generator, dtype=torch.float64)
    items = torch.randn(90, 8, generator=generator, dtype=torch.float64)
    targets = torch.randint(0, 90, (40,), generator=generator)
    from_embeddings = audit_embeddings(users, items, targets, surrogates=["ce", "ssm(k=10)"], draws=5, chunk_size=16)
    from_scores = audit_scores(users @ items.T, targets, surrogates=["ce", "ssm(k=10)"], draws=5, chunk_size=16)
    assert np.array_equal(from_embeddings.per_user["rank"], from_scores.per_user["rank"])
    assert np.allclose(from_embeddings.per_user["ce:loss"], from_scores.per_user["ce:loss"], atol=1e-12)


def test_save_writes_parseable_tables(audited, tmp_path):
    result, *_ = audited
    paths = result.save(tmp_path)
    table = pd.read_parquet(paths["per_user"]) if paths["per_user"].suffix == ".parquet" else pd.read_csv(paths["per_user"])
    summary = pd.read_csv(paths["summary"])
    metadata = json.loads(paths["metadata"].read_text())
    assert len(table) == 150
    assert set(summary["surrogate"]) == set(result.metadata["surrogates"])
    assert metadata["draws"] == 30
    assert not list(tmp_path.glob("*.tmp"))


def test_bad_surrogate_is_rejected():
    with pytest.raises(ValueError, match="unknown loss 'softmax'"):
        audit_scores(torch.randn(3, 5), torch.tensor([0, 1, 2]), surrogates=["softmax"])


def test_duplicate_surrogates_are_rejected():
    with pytest.raises(ValueError, match="duplicates"):
        audit_scores(torch.randn(3, 5), torch.tensor([0, 1, 2]), surrogates=["ce", "ce"])


def test_unknown_bound_metric_is_rejected():
    with pytest.raises(ValueError, match="bound metric 'hr'"):
        audit_scores(torch.randn(3, 5), torch.tensor([0, 1, 2]), bound_metrics=["hr"])


def test_single_spec_string_is_accepted():
    result = audit_scores(torch.randn(4, 6, dtype=torch.float64), torch.tensor([0, 1, 2, 3]), surrogates="ce")
    assert result.metadata["surrogates"] == ["ce"]


def test_saved_files_are_readable_by_others(audited, tmp_path):
    import os
    import stat

    result, *_ = audited
    umask = os.umask(0o022)
    try:
        paths = result.save(tmp_path)
    finally:
        os.umask(umask)
    for path in paths.values():
        assert stat.S_IMODE(path.stat().st_mode) == 0o644
