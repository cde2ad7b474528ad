"""Bound statements on numbers: the CE chain, coverage against the theorems, gap statistics."""

from __future__ import annotations

import math

import hypothesis.strategies as st
import numpy as np
import pytest
import torch
from hypothesis import given, settings

from boundlab import bounds, losses, target_ranks
from boundlab.bounds import bounding_probability, monte_carlo_coverage

score_rows = st.lists(st.integers(-40, 40), min_size=1, max_size=60)


@settings(max_examples=300, deadline=None)
@given(row=score_rows, target_seed=st.integers(0, 10**6), scale=st.sampled_from([0.01, 0.5, 1.0, 250.0]))
def test_ce_chain_for_every_truncation(row, target_seed, scale):
    # Scaled integers give heavy ties and logits up to ±1e4.
    scores = torch.tensor([row], dtype=torch.float64) * scale
    target = torch.tensor([target_seed % len(row)])
    rank = target_ranks(scores, target)
    neg_log_ndcg = bounds.neg_log_metric(rank, "ndcg").item()
    neg_log_rr = bounds.neg_log_metric(rank, "rr").item()
    ce = losses.get("ce")(scores, target).item()
    assert neg_log_ndcg <= neg_log_rr
    for n in range(int(rank), len(row) + 1):
        ce_n = losses.get(f"ce_top(n={n})")(scores, target).item()
        assert neg_log_rr <= ce_n
        assert ce_n <= ce


@settings(max_examples=300, deadline=None)
@given(
    row=score_rows,
    target_seed=st.integers(0, 10**6),
    eta=st.floats(0, 50, allow_nan=False),
    shift=st.integers(-100, 100),
)
def test_ce_eta_bounds_neg_log_rr(row, target_seed, eta, shift):
    scores = torch.tensor([row], dtype=torch.float64) + shift
    target = torch.tensor([target_seed % len(row)])
    rank = target_ranks(scores, target)
    value = losses.get("ce_eta", eta=eta)(scores, target).item()
    assert bounds.neg_log_metric(rank, "rr").item() <= value
    assert value <= losses.get("ce")(scores, target).item()


def _constructed_scores(rank: int, n_items: int, users: int, below: float = -30.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows with rank − 1 items tied just above the target, and every other item far below it."""
    row = torch.full((n_items,), below, dtype=torch.float64)
    row[: rank - 1] = 0.5
    row[rank - 1] = 0.0
    return row.repeat(users, 1), torch.full((users,), rank - 1)


@pytest.mark.parametrize(
    ("rank", "k", "alpha"),
    [(3, 50, 1.0), (20, 100, 1.0), (20, 100, 5.0), (60, 40, 5.0), (60, 40, 100.0), (200, 10, 100.0)],
)
@pytest.mark.parametrize("metric", ["ndcg", "rr"])
def test_x24_below_binomial_below_monte_carlo(rank, k, alpha, metric):
    n_items = 1000
    scores, targets = _constructed_scores(rank, n_items, users=40)
    spec = f"sce(alpha={alpha},k={k})"
    result = monte_carlo_coverage(spec, scores, targets, draws=100, seed=rank, metric=metric)
    assert bool((result.ranks == rank).all())
    x24 = bounding_probability(rank, n_items, k, alpha, metric=metric, form="x24")
    binomial = bounding_probability(rank, n_items, k, alpha, metric=metric, form="binomial")
    tolerance = 4 * max(result.coverage.standard_error, 1e-3)
    assert x24 <= binomial + 1e-12
    assert binomial <= result.coverage.estimate + tolerance


def test_binomial_form_is_tight_when_other_items_vanish():
    # With items below the target contributing ~0, coverage is exactly the binomial tail.
    scores, targets = _constructed_scores(50, 500, users=200, below=-200.0)
    result = monte_carlo_coverage("sce(alpha=5,k=30)", scores, targets, draws=50, seed=1)
    binomial = float(bounding_probability(50, 500, 30, 5.0, form="binomial"))
    assert result.coverage.estimate == pytest.approx(binomial, abs=4 * result.coverage.standard_error + 1e-3)


def test_x02_form_exceeds_true_coverage_for_large_alpha():
    # The x02 expression as transcribed overstates the probability when 2^m/α is not an integer.
    scores, targets = _constructed_scores(2, 12101, users=100, below=-200.0)
    result = monte_carlo_coverage("sce(alpha=100,k=500)", scores, targets, draws=20, seed=2)
    x02 = float(bounding_probability(2, 12101, 500, 100.0, form="x02"))
    assert x02 > result.coverage.ci_high


def test_scaled_sample_estimates_the_full_normaliser():
    # α = N/K with uniform sampling with replacement makes α Σ_i e^{s_i} unbiased for Σ_v e^{s_v}.
    generator = torch.Generator().manual_seed(3)
    n_items, k, draws = 200, 20, 20000
    scores = torch.randn(n_items, generator=generator, dtype=torch.float64)
    target = torch.zeros(draws, dtype=torch.long)
    sample = losses.draw_negatives("uniform", target, n_items, k, generator=generator)
    estimates = (n_items / k) * torch.exp(scores[sample.items]).sum(1)
    full = torch.exp(scores).sum().item()
    standard_error = estimates.std().item() / math.sqrt(draws)
    assert estimates.mean().item() == pytest.approx(full, abs=4 * standard_error)


def test_bounding_probability_is_vectorised():
    ranks = np.array([[1, 10], [100, 1000]])
    values = bounding_probability(ranks, 12101, 500, 100.0)
    assert values.shape == (2, 2)
    assert values[1, 1] == pytest.approx(float(bounding_probability(1000, 12101, 500, 100.0)))


def test_bounding_probability_grows_with_k():
    values = bounding_probability(100, 12101, np.array([10, 100, 500, 5000]), 5.0, form="binomial")
    assert bool(np.all(np.diff(values) >= 0))


def test_bounding_probability_grows_with_alpha():
    values = [float(bounding_probability(100, 12101, 100, alpha, form="x24")) for alpha in (1.0, 5.0, 100.0)]
    assert values == sorted(values)


def test_x24_value_by_hand():
    # r = 100: m = 7, α = 5: q = ceil(7/5) = 2, so 1 − 2 (1 − 100/12101)^(500 // 2).
    expected = 1 - 2 * (1 - 100 / 12101) ** 250
    assert float(bounding_probability(100, 12101, 500, 5.0)) == pytest.approx(expected, rel=1e-12)


def test_binomial_value_by_hand():
    # r = 7, α = 1: the exact threshold is 1 + ξ >= log2(8) = 3, so ξ >= 2.
    p = 7 / 50
    expected = 1 - (1 - p) ** 10 - 10 * p * (1 - p) ** 9
    assert float(bounding_probability(7, 50, 10, 1.0, form="binomial")) == pytest.approx(expected, rel=1e-12)


def test_binomial_form_without_target_draws():
    p = 6 / 49
    expected = 1 - (1 - p) ** 10 - 10 * p * (1 - p) ** 9
    value = bounding_probability(7, 50, 10, 1.0, form="binomial", sampler="uniform-no-target")
    assert float(value) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"rank": 0}, "rank must be >= 1"),
        ({"rank": 2000}, "exceeds n_items"),
        ({"k": 0}, "k must be integer"),
        ({"alpha": 0.5}, "alpha must be"),
        ({"form": "exact"}, "form='exact'"),
        ({"metric": "hr"}, "metric='hr'"),
        ({"form": "x24", "sampler": "uniform-no-target"}, "use form='binomial'"),
        ({"form": "x02", "metric": "rr"}, "NDCG only"),
    ],
)
def test_bounding_probability_rejects_bad_input(kwargs, message):
    arguments = {"rank": 10, "n_items": 1000, "k": 100, "alpha": 1.0}
    arguments.update(kwargs)
    rank, n_items, k, alpha = (arguments.pop(key) for key in ("rank", "n_items", "k", "alpha"))
    with pytest.raises((ValueError, TypeError), match=message):
        bounding_probability(rank, n_items, k, alpha, **arguments)


def test_gap_by_hand():
    ranks = torch.tensor([1, 3])
    loss = torch.tensor([0.5, 2.0])
    expected_ndcg = [0.5, 2.0 - math.log(math.log2(4))]
    expected_rr = [0.5, 2.0 - math.log(3)]
    assert bounds.gap(loss, ranks, "ndcg").tolist() == pytest.approx(expected_ndcg)
    assert bounds.gap(loss, ranks, "rr").tolist() == pytest.approx(expected_rr)


def test_tightness_by_hand():
    ranks = torch.tensor([1, 3, 7])
    loss = torch.tensor([0.5, 2.0, 1.0])
    summary = bounds.tightness(loss, ranks, "rr")
    gaps = [0.5, 2.0 - math.log(3), 1.0 - math.log(7)]
    assert summary.mean_gap == pytest.approx(sum(gaps) / 3)
    assert summary.median_gap == pytest.approx(sorted(gaps)[1])
    assert summary.relative_gap == pytest.approx(sum(gaps) / 3.5)
    assert summary.violations == 1


def test_coverage_by_hand():
    ranks = torch.tensor([1, 3])
    draws = torch.tensor([[0.1, 0.2, 0.3, 0.4], [0.0, 5.0, 5.0, 0.0]])
    result = bounds.coverage(draws, ranks, "rr")
    assert result.per_user.tolist() == [1.0, 0.5]
    assert result.estimate == 0.75
    assert result.standard_error == pytest.approx(np.std([1.0, 0.5], ddof=1) / math.sqrt(2))
    assert result.draws == 4


def test_ce_coverage_is_one_on_random_scores():
    generator = torch.Generator().manual_seed(4)
    scores = torch.randint(-3, 4, (300, 50), generator=generator).double()
    targets = torch.randint(0, 50, (300,), generator=generator)
    for metric in ("ndcg", "rr"):
        result = monte_carlo_coverage("ce", scores, targets, metric=metric)
        assert result.coverage.estimate == 1.0


def test_gap_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="matching ranks"):
        bounds.gap(torch.zeros(3), torch.tensor([1, 2]))
