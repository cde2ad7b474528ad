"""Tests for boundlab.symbolic: every statement holds, every checker can fail, thresholds are exact."""

from __future__ import annotations

import math
from fractions import Fraction

import mpmath
import numpy as np
import pytest
import sympy as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from boundlab import symbolic
from boundlab.symbolic import (
    METHODS,
    CheckResult,
    Statement,
    all_statements,
    binomial_lemma_statement,
    binomial_tails,
    ce_chain_grid_statement,
    check_all,
    indicator_bound_statement,
    ndcg_threshold,
    ndcg_threshold_array,
    ray_inequality_statement,
    rr_threshold,
    rr_threshold_array,
    thresholds_grid_statement,
    x02_form_statement,
    x24_ndcg_threshold,
    x24_rr_threshold,
)

x = sp.Symbol("x", real=True)

STATEMENTS = all_statements()


@pytest.fixture(scope="module")
def results() -> list[CheckResult]:
    return check_all()


# ----------------------------------------------------------------------------- statements


@pytest.mark.parametrize("name", [s.name for s in STATEMENTS])
def test_statement_passes(name: str, results: list[CheckResult]) -> None:
    result = next(r for r in results if r.name == name)
    assert result.passed, result.detail


def test_check_all_follows_statement_order(results: list[CheckResult]) -> None:
    assert [r.name for r in results] == [s.name for s in STATEMENTS]


def test_check_all_reports_known_methods(results: list[CheckResult]) -> None:
    for result in results:
        assert result.method in METHODS, result


def test_check_all_uses_both_methods(results: list[CheckResult]) -> None:
    assert {r.method for r in results} == set(METHODS)


def test_grid_checks_count_cases(results: list[CheckResult]) -> None:
    for result in results:
        if result.method == "exact-grid":
            assert result.n_cases > 0, result


def test_symbolic_checks_count_steps(results: list[CheckResult]) -> None:
    for result in results:
        if result.method == "symbolic":
            assert result.n_cases > 0, result


def test_statement_names_are_unique() -> None:
    names = [s.name for s in STATEMENTS]
    assert len(names) == len(set(names))


def test_binomial_lemma_grid_size(results: list[CheckResult]) -> None:
    lemma = next(r for r in results if r.name == "binomial-tail-lemma")
    # K in 1..40 and m in 1..K give 820 pairs, times 10 probabilities.
    assert lemma.n_cases == 8200


def test_statement_rejects_unknown_method() -> None:
    with pytest.raises(ValueError, match="method"):
        Statement("bad", "0 <= 1", "none", "numeric", lambda: (True, 1, ""))


def test_check_labels_result_with_statement() -> None:
    statement = Statement("label", "0 <= 1", "none", "exact-grid", lambda: (True, 3, "ok"))
    assert statement.check() == CheckResult("label", "exact-grid", True, 3, "ok")


# ----------------------------------------------------------------------------- false statements fail


def test_ray_checker_rejects_half_slope() -> None:
    result = ray_inequality_statement("false", sp.log(1 + x, 2), x / 2).check()
    assert not result.passed


def test_ray_checker_rejects_late_start() -> None:
    # log2(1+x) <= x fails on (0, 1); starting the ray at 1/2 must not prove it.
    result = ray_inequality_statement("false", sp.log(1 + x, 2), x, sp.Rational(1, 2)).check()
    assert not result.passed


def test_indicator_checker_rejects_linear_bound() -> None:
    result = indicator_bound_statement("false", x + 1).check()
    assert not result.passed


def test_indicator_checker_rejects_small_bound() -> None:
    result = indicator_bound_statement("false", sp.exp(x) / 2).check()
    assert not result.passed


def test_binomial_checker_rejects_all_trials() -> None:
    statement = binomial_lemma_statement(bound=lambda k, m, p: 1 - m * (1 - p) ** k)
    result = statement.check()
    assert not result.passed
    assert result.method == "exact-grid"


def test_binomial_checker_rejects_missing_factor() -> None:
    statement = binomial_lemma_statement(bound=lambda k, m, p: 1 - (1 - p) ** (k // m))
    assert not statement.check().passed


def test_chain_checker_rejects_short_truncation() -> None:
    statement = ce_chain_grid_statement(truncations=lambda rank, n_items: range(1, n_items + 1))
    assert not statement.check().passed


def test_thresholds_checker_rejects_one_less() -> None:
    statement = thresholds_grid_statement(ndcg=lambda r, a: max(0, ndcg_threshold(r, a) - 1))
    assert not statement.check().passed


def test_thresholds_checker_rejects_one_more() -> None:
    statement = thresholds_grid_statement(ndcg=lambda r, a: ndcg_threshold(r, a) + 1)
    assert not statement.check().passed


def test_thresholds_checker_rejects_rr_floor() -> None:
    statement = thresholds_grid_statement(rr=lambda r, a: math.floor(Fraction(r - 1) / a))
    assert not statement.check().passed


def test_x02_form_fails_above_two_to_m() -> None:
    result = x02_form_statement(alphas=[3]).check()
    assert not result.passed
    assert "fail" in result.detail


def test_x02_form_holds_for_integer_blocks() -> None:
    # With α in {1, 2}, 2**m/α is an integer >= 1 for every m >= 1, and the lemma applies.
    assert x02_form_statement(alphas=[1, 2]).check().passed


def test_x02_form_counterexample_is_exact() -> None:
    # r = 255, N = 283, K = 3, α = 3: m = 3, ξ* = 3, so the tail is (255/283)**3.
    p = Fraction(255, 283)
    form = 1 - Fraction(8, 3) * (1 - p) ** math.floor(Fraction(3 * 3, 8))
    assert ndcg_threshold(255, 3) == 3
    assert form > p**3


# ----------------------------------------------------------------------------- thresholds


def float_ndcg_threshold(rank: int, alpha: int) -> int:
    """Brute-force float reference: count up until 1 + αξ reaches log2(1 + rank)."""
    level = math.log2(1 + rank)
    xi = 0
    while 1 + alpha * xi < level:
        xi += 1
    return xi


@pytest.mark.parametrize("alpha", [1, 2, 5, 100])
def test_ndcg_threshold_matches_float_reference(alpha: int) -> None:
    for rank in range(1, 5001):
        assert ndcg_threshold(rank, alpha) == float_ndcg_threshold(rank, alpha), rank


@pytest.mark.parametrize("alpha", [1, 2, 5, 100])
def test_rr_threshold_matches_float_reference(alpha: int) -> None:
    for rank in range(1, 5001):
        assert rr_threshold(rank, alpha) == math.ceil((rank - 1) / alpha), rank


@pytest.mark.parametrize("alpha", [1, 2, 5, 100])
def test_ndcg_threshold_at_powers_of_two(alpha: int) -> None:
    # r = 2**j − 1 gives log2(1 + r) = j exactly, the tie where a rounded log2 could flip.
    for j in range(1, 13):
        rank = (1 << j) - 1
        assert ndcg_threshold(rank, alpha) == float_ndcg_threshold(rank, alpha), rank
        assert ndcg_threshold(rank, alpha) == math.ceil((j - 1) / alpha), rank


def test_ndcg_threshold_exact_past_float_precision() -> None:
    for j in range(1, 61):
        assert ndcg_threshold((1 << j) - 1) == j - 1, j
        assert ndcg_threshold(1 << j) == j, j


def test_float_log2_misses_large_power() -> None:
    # log2(1 + 2**53) rounds to 53 in float64, so a float ceil would give 52, one short.
    rank = 1 << 53
    assert math.ceil(math.log2(1 + rank) - 1) == 52
    assert ndcg_threshold(rank) == 53


@pytest.mark.parametrize("alpha", [1, 2, 5, 100, Fraction(3, 2), 0.5])
def test_ndcg_array_matches_scalar(alpha: object) -> None:
    ranks = np.arange(1, 5001, dtype=np.int64).reshape(50, 100)
    expected = np.array([[ndcg_threshold(int(r), alpha) for r in row] for row in ranks])
    result = ndcg_threshold_array(ranks, alpha)
    assert result.shape == (50, 100)
    assert result.dtype == np.int64
    assert np.array_equal(result, expected)


@pytest.mark.parametrize("alpha", [1, 2, 5, 100, Fraction(3, 2), 10**30])
def test_rr_array_matches_scalar(alpha: object) -> None:
    ranks = np.arange(1, 5001, dtype=np.int64)
    expected = np.array([rr_threshold(int(r), alpha) for r in ranks])
    assert np.array_equal(rr_threshold_array(ranks, alpha), expected)


def test_ndcg_array_exact_past_float_precision() -> None:
    j = np.arange(1, 62, dtype=np.int64)
    below = np.left_shift(np.int64(1), j) - 1
    at = np.left_shift(np.int64(1), j)
    assert np.array_equal(ndcg_threshold_array(below), j - 1)
    assert np.array_equal(ndcg_threshold_array(at), j)


def test_ndcg_array_huge_alpha() -> None:
    ranks = np.array([1, 2, 3, 1 << 40])
    assert ndcg_threshold_array(ranks, 10**30).tolist() == [0, 1, 1, 1]


def test_threshold_arrays_accept_empty() -> None:
    empty = np.array([], dtype=np.int64)
    assert ndcg_threshold_array(empty).shape == (0,)
    assert rr_threshold_array(empty, 3).shape == (0,)


def test_threshold_docstring_examples() -> None:
    assert ndcg_threshold(7) == 2
    assert ndcg_threshold(8) == 3
    assert ndcg_threshold(4, Fraction(3, 2)) == 1
    assert rr_threshold(1) == 0
    assert rr_threshold(10, 3) == 3
    assert x24_ndcg_threshold(7) == 3


def test_binomial_tails_docstring_example() -> None:
    assert binomial_tails(2, Fraction(1, 2)) == [1, Fraction(3, 4), Fraction(1, 4)]


def test_fractional_alpha_beats_integer_formula() -> None:
    # log2(5) ≈ 2.32 and 1 + 1.5·1 = 2.5, so one item suffices although ceil((m − 1)/α) = 2.
    assert ndcg_threshold(4, Fraction(3, 2)) == 1
    assert math.ceil(Fraction(4 .bit_length() - 1) / Fraction(3, 2)) == 2


def test_float_alpha_uses_exact_binary_value() -> None:
    assert ndcg_threshold(100, 0.5) == ndcg_threshold(100, Fraction(1, 2))
    assert rr_threshold(100, 0.25) == rr_threshold(100, Fraction(1, 4))


def test_ndcg_threshold_large_denominator() -> None:
    # 0.1 is 3602879701896397/2**55, which sends the comparison to sympy.
    alpha = Fraction(0.1)
    with mpmath.workprec(200):
        level = mpmath.log(1001, 2)
        expected = int(mpmath.ceil((level - 1) / mpmath.mpf(alpha.numerator) * alpha.denominator))
    assert ndcg_threshold(1000, 0.1) == expected


@settings(derandomize=True, max_examples=200, deadline=None)
@given(
    rank=st.integers(min_value=1, max_value=10**6),
    numerator=st.integers(min_value=1, max_value=50),
    denominator=st.integers(min_value=1, max_value=7),
)
def test_thresholds_ordering(rank: int, numerator: int, denominator: int) -> None:
    alpha = Fraction(numerator, denominator)
    ndcg = ndcg_threshold(rank, alpha)
    assert ndcg <= x24_ndcg_threshold(rank, alpha)
    assert ndcg <= rr_threshold(rank, alpha)
    assert rr_threshold(rank, alpha) <= x24_rr_threshold(rank, alpha)


@settings(derandomize=True, max_examples=200, deadline=None)
@given(
    rank=st.integers(min_value=1, max_value=10**9),
    numerator=st.integers(min_value=1, max_value=20),
    denominator=st.integers(min_value=1, max_value=5),
)
def test_ndcg_threshold_sufficient_and_minimal(rank: int, numerator: int, denominator: int) -> None:
    alpha = Fraction(numerator, denominator)
    xi = ndcg_threshold(rank, alpha)
    with mpmath.workprec(200):
        level = mpmath.log(1 + rank, 2)
        step = mpmath.mpf(alpha.numerator) / alpha.denominator
        assert 1 + step * xi >= level
        if xi > 0:
            assert 1 + step * (xi - 1) < level


# ----------------------------------------------------------------------------- input validation


@pytest.mark.parametrize("rank", [0, -3])
def test_threshold_rejects_nonpositive_rank(rank: int) -> None:
    with pytest.raises(ValueError, match="rank"):
        ndcg_threshold(rank)


@pytest.mark.parametrize("rank", [1.0, True, "3"])
def test_threshold_rejects_non_integer_rank(rank: object) -> None:
    with pytest.raises(TypeError, match="rank"):
        rr_threshold(rank)


@pytest.mark.parametrize("alpha", [0, -1, Fraction(-1, 2), float("nan"), float("inf")])
def test_threshold_rejects_invalid_alpha(alpha: object) -> None:
    with pytest.raises(ValueError, match="alpha"):
        ndcg_threshold(5, alpha)


def test_threshold_rejects_string_alpha() -> None:
    with pytest.raises(TypeError, match="alpha"):
        ndcg_threshold(5, "2")


def test_threshold_array_rejects_float_ranks() -> None:
    with pytest.raises(TypeError, match="integer dtype"):
        ndcg_threshold_array(np.array([1.0, 2.0]))


def test_threshold_array_rejects_zero_rank() -> None:
    with pytest.raises(ValueError, match="index"):
        rr_threshold_array(np.array([[3, 0]]))


def test_threshold_array_accepts_sympy_alpha() -> None:
    ranks = np.array([1, 5, 9])
    assert np.array_equal(
        ndcg_threshold_array(ranks, sp.Rational(3, 2)), ndcg_threshold_array(ranks, Fraction(3, 2))
    )


def test_binomial_tails_rejects_probability_above_one() -> None:
    with pytest.raises(ValueError, match="p must"):
        binomial_tails(3, Fraction(3, 2))


def test_module_exports_exist() -> None:
    for name in symbolic.__all__:
        assert hasattr(symbolic, name), name
