"""Ranking metrics: documented values, bounds and monotonicity, tie-averaging, errors."""

from __future__ import annotations

import math

import hypothesis.strategies as st
import pytest
import torch
from hypothesis import given, settings

from boundlab import metrics, target_ranks

RANKS = torch.tensor([1, 2, 3, 10])


def test_ndcg_documented_values():
    values = metrics.ndcg(RANKS)
    assert values[0].item() == 1.0
    assert values[1].item() == pytest.approx(0.63093, abs=5e-6)
    assert values[2].item() == 0.5
    assert values[3].item() == pytest.approx(0.28906, abs=5e-6)


def test_ndcg_at_cuts_off():
    assert metrics.ndcg_at(torch.tensor([1, 2, 3]), 2).tolist() == pytest.approx([1.0, 1 / math.log2(3), 0.0])


def test_hit_at_values():
    assert metrics.hit_at(torch.tensor([1, 2, 3]), 2).tolist() == [1.0, 1.0, 0.0]


def test_rr_values():
    assert metrics.rr(torch.tensor([1, 2, 4])).tolist() == [1.0, 0.5, 0.25]


def test_rr_at_values():
    assert metrics.rr_at(torch.tensor([1, 2, 4]), 2).tolist() == [1.0, 0.5, 0.0]


def test_reductions():
    assert metrics.rr(torch.tensor([1, 2, 4]), reduction="mean").item() == pytest.approx(1.75 / 3)
    assert metrics.rr(torch.tensor([1, 2, 4]), reduction="sum").item() == 1.75
    assert metrics.rr(torch.tensor([1, 2, 4])).shape == (3,)


def test_float_average_ranks_accepted():
    assert metrics.rr(torch.tensor([1.5])).item() == pytest.approx(2 / 3)


def test_expected_ndcg_of_tie_pair():
    value = metrics.expected_metric("ndcg", torch.tensor([1]), torch.tensor([2]))
    assert value.item() == pytest.approx((1 + 1 / math.log2(3)) / 2)


def test_expected_metric_without_ties_is_metric():
    ranks = torch.tensor([1, 5, 17])
    assert torch.allclose(metrics.expected_metric("rr", ranks, ranks), metrics.rr(ranks))
    assert torch.allclose(metrics.expected_metric("hit_at", ranks, ranks, k=5), metrics.hit_at(ranks, 5))


def test_expected_metric_matches_explicit_average():
    scores = torch.tensor([[3.0, 2.0, 3.0, 2.0, 1.0, 1.0, 2.0]])
    for target in range(7):
        t = torch.tensor([target])
        low = target_ranks(scores, t, ties="optimistic")
        high = target_ranks(scores, t)
        for name, k in (("ndcg", None), ("rr", None), ("ndcg_at", 3), ("hit_at", 4), ("rr_at", 2)):
            fn = metrics.METRICS[name]
            explicit = sum(fn(torch.tensor([r]), *(() if k is None else (k,))).item() for r in range(int(low), int(high) + 1))
            explicit /= int(high) - int(low) + 1
            assert metrics.expected_metric(name, low, high, k=k).item() == pytest.approx(explicit)


def test_expected_ndcg_matches_scikit_learn():
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    generator = torch.Generator().manual_seed(3)
    scores = torch.randint(0, 4, (25, 12), generator=generator).double()
    targets = torch.randint(0, 12, (25,), generator=generator)
    relevance = torch.zeros(25, 12)
    relevance[torch.arange(25), targets] = 1
    ours = metrics.expected_metric(
        "ndcg", target_ranks(scores, targets, ties="optimistic"), target_ranks(scores, targets)
    )
    for row in range(25):
        theirs = sklearn_metrics.ndcg_score(relevance[row : row + 1].numpy(), scores[row : row + 1].numpy())
        assert ours[row].item() == pytest.approx(theirs, abs=1e-12)


ranks_strategy = st.lists(st.integers(1, 10**6), min_size=1, max_size=50)


@settings(max_examples=200, deadline=None)
@given(ranks=ranks_strategy, k=st.integers(1, 1000))
def test_ndcg_at_between_zero_and_ndcg(ranks, k):
    r = torch.tensor(ranks)
    at_k = metrics.ndcg_at(r, k)
    full = metrics.ndcg(r)
    assert bool((at_k >= 0).all())
    assert bool((at_k <= full).all())
    assert bool((full <= 1).all())


@settings(max_examples=200, deadline=None)
@given(ranks=ranks_strategy, k=st.integers(1, 1000), step=st.integers(1, 1000))
def test_at_k_metrics_non_decreasing_in_k(ranks, k, step):
    r = torch.tensor(ranks)
    for name in ("ndcg_at", "hit_at", "rr_at"):
        fn = metrics.METRICS[name]
        assert bool((fn(r, k) <= fn(r, k + step)).all())


@settings(max_examples=200, deadline=None)
@given(ranks=ranks_strategy)
def test_ndcg_at_least_rr(ranks):
    r = torch.tensor(ranks)
    assert bool((metrics.ndcg(r) >= metrics.rr(r)).all())


@pytest.mark.parametrize("bad", [torch.tensor([0]), torch.tensor([-2.0]), torch.tensor([float("nan")])])
def test_invalid_ranks_rejected(bad):
    with pytest.raises(ValueError, match="ranks"):
        metrics.ndcg(bad)


def test_k_below_one_rejected():
    with pytest.raises(ValueError, match="k must be >= 1, got 0"):
        metrics.hit_at(RANKS, 0)


def test_non_integer_k_rejected():
    with pytest.raises(TypeError, match="k must be an int"):
        metrics.ndcg_at(RANKS, 2.5)


def test_unknown_reduction_rejected():
    with pytest.raises(ValueError, match="reduction='avg'"):
        metrics.ndcg(RANKS, reduction="avg")


def test_expected_metric_rejects_swapped_bounds():
    with pytest.raises(ValueError, match="exceeds pessimistic"):
        metrics.expected_metric("ndcg", torch.tensor([3]), torch.tensor([2]))


def test_expected_metric_needs_k_for_cutoff():
    with pytest.raises(ValueError, match="needs a cut-off"):
        metrics.expected_metric("hit_at", torch.tensor([1]), torch.tensor([2]))
