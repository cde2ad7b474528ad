"""Proofs and exact checks of the inequalities behind the bounds that boundlab measures.

Each `Statement` pairs an inequality with its derivation and a checker. The checker either proves
the inequality with sympy (method "symbolic") or evaluates it in exact rational arithmetic on a
finite grid (method "exact-grid"). No floating-point value decides a check.

Notation: r is the pessimistic 1-based rank of the target (ties count against it), s_v are the
scores, s+ is the target score, N the catalogue size, K the number of sampled items, α > 0 the SCE
scale. NDCG(r) = 1/log2(1+r) and RR(r) = 1/r. Sources: S. Bruch, ICTIR 2019 (the CE chain);
Xu et al. 2024, arXiv 2408.14238 (Lemmas 2 and 3, Theorems 1 and 2); Xu et al. 2024,
arXiv 2402.06216 (Theorem 4.4, the earlier form of the sampled-softmax bound).

The threshold helpers (`ndcg_threshold`, `rr_threshold` and their array versions) give the exact
number of sampled items at or above the target that makes the SCE loss a bound. Exact bounding
probabilities are built on them.
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np
import sympy as sp

logger = logging.getLogger(__name__)

__all__ = [
    "METHODS",
    "CheckResult",
    "Statement",
    "all_statements",
    "binomial_lemma_statement",
    "binomial_tails",
    "ce_chain_grid_statement",
    "check_all",
    "indicator_bound_statement",
    "ndcg_threshold",
    "ndcg_threshold_array",
    "ray_inequality_statement",
    "rr_threshold",
    "rr_threshold_array",
    "thresholds_grid_statement",
    "x02_form_statement",
    "x24_ndcg_threshold",
    "x24_rr_threshold",
    "x24_theorem_statement",
]

METHODS = ("symbolic", "exact-grid")

RationalLike = int | Fraction | float

# A checker returns (passed, n_cases, detail).
Outcome = tuple[bool, int, str]

# Above this many bits, 2**a >= n**b is decided by sympy instead of by Python integers.
_MAX_EXACT_POWER_BITS = 1 << 16

# Maximum rank for the array helpers. It keeps r − 1 + α − 1 inside int64 in rr_threshold_array.
_MAX_ARRAY_RANK = 1 << 62

# 2**0, ..., 2**62. The count of these that are <= r equals r.bit_length() for r >= 1.
_POWERS_OF_TWO = np.left_shift(np.int64(1), np.arange(63, dtype=np.int64))


@dataclass(frozen=True)
class CheckResult:
    """Outcome of one statement's check.

    For method "exact-grid", n_cases is the number of grid points evaluated. For "symbolic" it is
    the number of proof steps that sympy confirmed. On failure, detail names the first
    counterexample or the proof step that sympy could not confirm.
    """

    name: str
    method: str
    passed: bool
    n_cases: int
    detail: str


@dataclass(frozen=True)
class Statement:
    """An inequality, its derivation, and the checker that proves or tests it."""

    name: str
    inequality: str
    derivation: str
    method: str
    checker: Callable[[], Outcome] = field(repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"method={self.method!r} is not supported; expected one of {METHODS}")

    def check(self) -> CheckResult:
        """Run the checker and return its outcome labelled with this statement's name and method."""
        passed, n_cases, detail = self.checker()
        return CheckResult(self.name, self.method, bool(passed), int(n_cases), detail)


# ---------------------------------------------------------------------------------------------
# Exact arithmetic helpers
# ---------------------------------------------------------------------------------------------


def _as_positive_fraction(name: str, value: object) -> Fraction:
    """Convert an int, Fraction, float or sympy Rational > 0 to an exact Fraction."""
    if isinstance(value, bool):
        raise TypeError(f"{name} must be a positive number, got the bool {value!r}")

    if isinstance(value, int | np.integer):
        exact = Fraction(int(value))
    elif isinstance(value, Fraction):
        exact = value
    elif isinstance(value, float | np.floating):
        if not math.isfinite(value):
            raise ValueError(f"{name} must be finite, got {value!r}")
        # Fraction(float) is the exact binary value, so 0.1 becomes 3602879701896397/2**55.
        exact = Fraction(float(value))
    elif isinstance(value, sp.Rational):
        exact = Fraction(int(value.p), int(value.q))
    else:
        raise TypeError(
            f"{name} must be an int, Fraction, float or sympy Rational, got {type(value).__name__}"
        )

    if exact <= 0:
        raise ValueError(f"{name} must be > 0, got {value!r}")
    return exact


def _as_rank(value: object) -> int:
    """Return a 1-based rank as a Python int, or raise naming the bad value."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise TypeError(f"rank must be an int >= 1, got {value!r} of type {type(value).__name__}")
    if value < 1:
        raise ValueError(f"rank must be >= 1 (ranks are 1-based), got {value}")
    return int(value)


def _two_pow_at_least(exponent: Fraction, n: int) -> bool:
    """Decide 2**exponent >= n exactly, for a rational exponent and an integer n >= 1."""
    j = n.bit_length() - 1  # 2**j <= n < 2**(j + 1)

    if n == 1 << j:
        return exponent >= j

    # n is not a power of two, so log2(n) is irrational and lies strictly inside (j, j + 1).
    if exponent <= j:
        return False
    if exponent >= j + 1:
        return True

    # Here j < exponent < j + 1, so the exponent is a/b with b >= 2. Raise both sides to the b.
    a, b = exponent.numerator, exponent.denominator
    if b * (j + 1) <= _MAX_EXACT_POWER_BITS:
        return (1 << a) >= n**b

    # sympy evaluates the difference at rising precision until its sign is certain. The two
    # numbers differ, so this decides in practice, and the error below covers sympy giving up.
    decided = sp.Ge(sp.Rational(a, b), sp.log(n, 2))
    if decided not in (sp.true, sp.false):
        raise ArithmeticError(f"sympy could not decide 2**({exponent}) >= {n}")
    return bool(decided)


def binomial_tails(trials: int, p: Fraction) -> list[Fraction]:
    """Return [P(ξ >= j) for j = 0, ..., trials] for ξ ~ Binomial(trials, p), exactly.

    Example: binomial_tails(2, Fraction(1, 2)) == [1, Fraction(3, 4), Fraction(1, 4)].
    """
    if isinstance(trials, bool) or not isinstance(trials, int) or trials < 0:
        raise ValueError(f"trials must be an int >= 0, got {trials!r}")
    p = Fraction(p)
    if not 0 <= p <= 1:
        raise ValueError(f"p must lie in [0, 1], got {p}")

    q = 1 - p
    pmf = [math.comb(trials, j) * p**j * q ** (trials - j) for j in range(trials + 1)]

    tails = [Fraction(0)] * (trials + 1)
    running = Fraction(0)
    for j in range(trials, -1, -1):
        running += pmf[j]
        tails[j] = running
    return tails


# ---------------------------------------------------------------------------------------------
# Thresholds on the number of sampled items at or above the target
# ---------------------------------------------------------------------------------------------


def ndcg_threshold(rank: int, alpha: RationalLike = 1) -> int:
    """Return ξ* = min{ξ ∈ ℤ, ξ >= 0 : 1 + αξ >= log2(1 + rank)}, decided in exact arithmetic.

    At least ξ* sampled items at or above the target make ℓ_SCE >= log(1 + αξ) >= −log NDCG(rank).
    Floats are taken at their exact binary value. Examples: ndcg_threshold(7) == 2,
    ndcg_threshold(8) == 3, ndcg_threshold(4, Fraction(3, 2)) == 1.
    """
    r = _as_rank(rank)
    a = _as_positive_fraction("alpha", alpha)

    # m = ceil(log2(1 + r)) is the smallest integer t with 2**t >= 1 + r.
    m = r.bit_length()
    sufficient = math.ceil(Fraction(m - 1) / a)
    if a.denominator == 1:
        # 1 + αξ is an integer, so it reaches log2(1 + r) exactly when it reaches m.
        return sufficient

    # log2(1 + r) > m - 1, so no ξ below ceil((m - 2)/α) suffices. Binary search in between,
    # using that "2**(1 + αξ) >= 1 + r" is monotone in ξ.
    low = max(0, math.ceil(Fraction(m - 2) / a))
    high = sufficient
    while low < high:
        middle = (low + high) // 2
        if _two_pow_at_least(1 + a * middle, 1 + r):
            high = middle
        else:
            low = middle + 1
    return high


def rr_threshold(rank: int, alpha: RationalLike = 1) -> int:
    """Return ξ* = ceil((rank − 1)/α), the smallest integer ξ >= 0 with 1 + αξ >= rank, exactly.

    At least ξ* sampled items at or above the target make ℓ_SCE >= log(1 + αξ) >= −log RR(rank).
    Examples: rr_threshold(1) == 0, rr_threshold(10, 3) == 3.
    """
    r = _as_rank(rank)
    a = _as_positive_fraction("alpha", alpha)
    return math.ceil(Fraction(r - 1) / a)


def x24_ndcg_threshold(rank: int, alpha: RationalLike = 1) -> int:
    """Return ceil(m/α) with m = ceil(log2(1 + rank)), the threshold of Xu et al. 2024 (Thm 2).

    m is the smallest integer with rank <= 2**m − 1 (arXiv 2408.14238). The result is never below
    `ndcg_threshold(rank, alpha)`. Example: x24_ndcg_threshold(7) == 3.
    """
    r = _as_rank(rank)
    a = _as_positive_fraction("alpha", alpha)
    return math.ceil(Fraction(r.bit_length()) / a)


def x24_rr_threshold(rank: int, alpha: RationalLike = 1) -> int:
    """Return ceil(2**m/α) with m = ceil(log2(rank)), the RR analogue of `x24_ndcg_threshold`.

    This is a reconstruction: rank <= 2**m gives −log RR <= m·log 2, and ξ >= 2**m/α gives
    log(αξ) >= m·log 2. The result is never below `rr_threshold(rank, alpha)`.
    """
    r = _as_rank(rank)
    a = _as_positive_fraction("alpha", alpha)
    return math.ceil(Fraction(1 << (r - 1).bit_length()) / a)


def _as_rank_array(ranks: object) -> np.ndarray:
    """Return ``ranks`` as an int64 array, or raise naming the first invalid rank."""
    array = np.asarray(ranks)
    if array.dtype == np.bool_ or array.dtype.kind not in "iu":
        raise TypeError(
            f"ranks must have an integer dtype, got {array.dtype}; convert whole-number ranks "
            "with .astype(np.int64)"
        )

    if array.size:
        low, high = array.min(), array.max()
        if low < 1:
            index = np.unravel_index(int(np.argmin(array)), array.shape)
            raise ValueError(f"ranks must be >= 1 (1-based), got {low} at index {index}")
        if high > _MAX_ARRAY_RANK:
            index = np.unravel_index(int(np.argmax(array)), array.shape)
            raise ValueError(f"ranks must be <= 2**62, got {high} at index {index}")
    return array.astype(np.int64)


def _apply_per_unique_rank(
    ranks: np.ndarray, threshold: Callable[[int, Fraction], int], alpha: Fraction
) -> np.ndarray:
    """Evaluate a scalar threshold once per distinct rank and scatter the results back."""
    unique, inverse = np.unique(ranks, return_inverse=True)
    values = np.array([threshold(int(rank), alpha) for rank in unique], dtype=np.int64)
    return values[inverse].reshape(ranks.shape)


def ndcg_threshold_array(ranks: object, alpha: RationalLike = 1) -> np.ndarray:
    """Return `ndcg_threshold` elementwise as an int64 array of the shape of ``ranks``.

    For integer α this is ceil((m − 1)/α) with m = bit_length(r), from integer comparisons only.
    Other α fall back to the exact scalar function once per distinct rank.
    """
    array = _as_rank_array(ranks)
    a = _as_positive_fraction("alpha", alpha)

    if a.denominator != 1:
        return _apply_per_unique_rank(array, ndcg_threshold, a)

    # m - 1 <= 62, so any α above 63 gives the same ceiling as 63 and int64 cannot overflow.
    m = np.searchsorted(_POWERS_OF_TWO, array, side="right").astype(np.int64)
    step = np.int64(min(a.numerator, 63))
    return (m - 1 + step - 1) // step


def rr_threshold_array(ranks: object, alpha: RationalLike = 1) -> np.ndarray:
    """Return `rr_threshold` elementwise, ceil((r − 1)/α), as an int64 array of the shape of ``ranks``.

    Integer α uses integer floor division. Other α fall back to the exact scalar function.
    """
    array = _as_rank_array(ranks)
    a = _as_positive_fraction("alpha", alpha)

    if a.denominator != 1:
        return _apply_per_unique_rank(array, rr_threshold, a)

    # r - 1 < max rank, so any α at or above the max rank gives the same ceiling as the max rank.
    top = int(array.max()) if array.size else 1
    step = np.int64(min(a.numerator, top))
    return (array - 1 + step - 1) // step


# ---------------------------------------------------------------------------------------------
# Symbolic proof steps
# ---------------------------------------------------------------------------------------------

_x = sp.Symbol("x", real=True)
_ONE = sp.Integer(1)


def _prove_nonnegative_on_ray(expression: sp.Expr, variable: sp.Symbol, start: sp.Expr) -> Outcome:
    """Prove expression >= 0 on [start, oo): it is >= 0 at start and strictly increasing after it.

    This is sufficient, not necessary, so a failure means "not proved" and names the step.
    """
    at_start = sp.simplify(expression.subs(variable, start))
    if at_start.is_nonnegative is not True:
        return False, 0, f"value at {variable} = {start} is {at_start}, not >= 0"

    derivative = sp.simplify(sp.diff(expression, variable))
    increasing = sp.solve_univariate_inequality(
        derivative > 0, variable, relational=False, domain=sp.Interval(start, sp.oo)
    )
    if not sp.Interval.open(start, sp.oo).is_subset(increasing):
        return False, 1, f"derivative {derivative} is > 0 only on {increasing}, not on ({start}, oo)"

    detail = f"value {at_start} at {variable} = {start}; derivative {derivative} > 0 on {increasing}"
    return True, 2, detail


def _check_ray_inequality(lower: sp.Expr, upper: sp.Expr, variable: sp.Symbol, start: sp.Expr) -> Outcome:
    return _prove_nonnegative_on_ray(upper - lower, variable, start)


def ray_inequality_statement(
    name: str, lower: sp.Expr, upper: sp.Expr, start: sp.Expr = _ONE, variable: sp.Symbol = _x
) -> Statement:
    """Build the symbolic statement lower(x) <= upper(x) for all real x >= start.

    The proof shows that upper − lower is >= 0 at start and has a positive derivative after it.
    """
    return Statement(
        name=name,
        inequality=f"{lower} <= {upper} for {variable} >= {start}",
        derivation="f = upper − lower satisfies f(start) >= 0 and f' > 0 on (start, oo).",
        method="symbolic",
        checker=lambda: _check_ray_inequality(lower, upper, variable, start),
    )


def _check_ndcg_at_least_rr() -> Outcome:
    r = sp.Symbol("r", positive=True)
    log2_term = sp.log(1 + r, 2)

    # 1/log2(1+r) − 1/r = (r − log2(1+r)) / (r·log2(1+r)), and the denominator is positive.
    difference = 1 / log2_term - 1 / r
    factored = (r - log2_term) / (r * log2_term)
    if sp.simplify(difference - factored) != 0:
        return False, 0, "could not rewrite 1/log2(1+r) − 1/r over a common denominator"
    if (r * log2_term).is_positive is not True:
        return False, 1, "could not show r·log2(1+r) > 0 for r > 0"

    passed, steps, detail = _prove_nonnegative_on_ray(r - log2_term, r, sp.Integer(1))
    if not passed:
        return False, 2 + steps, f"numerator r − log2(1+r): {detail}"
    return True, 2 + steps, f"difference = (r − log2(1+r)) / (r·log2(1+r)); numerator: {detail}"


def _check_indicator_bound(upper: sp.Expr, variable: sp.Symbol) -> Outcome:
    """Prove 1[x >= 0] <= upper(x): upper >= 1 on [0, oo) and upper >= 0 on (−oo, 0)."""
    at_least_one = sp.solve_univariate_inequality(upper >= 1, variable, relational=False)
    if not sp.Interval(0, sp.oo).is_subset(at_least_one):
        return False, 0, f"case x >= 0: {upper} >= 1 holds only on {at_least_one}"

    non_negative = sp.solve_univariate_inequality(upper >= 0, variable, relational=False)
    if not sp.Interval.open(-sp.oo, 0).is_subset(non_negative):
        return False, 1, f"case x < 0: {upper} >= 0 holds only on {non_negative}"

    return True, 2, f"{upper} >= 1 on {at_least_one}; {upper} >= 0 on {non_negative}"


def indicator_bound_statement(name: str, upper: sp.Expr, variable: sp.Symbol = _x) -> Statement:
    """Build the symbolic statement 1[x >= 0] <= upper(x) for all real x, proved in two cases."""
    return Statement(
        name=name,
        inequality=f"1[{variable} >= 0] <= {upper} for all real {variable}",
        derivation="Case x >= 0: the bound is >= 1. Case x < 0: the bound is >= 0.",
        method="symbolic",
        checker=lambda: _check_indicator_bound(upper, variable),
    )


def _check_ce_chain_symbolic() -> Outcome:
    steps: list[str] = []

    # Step 1: −log NDCG <= −log RR, i.e. log(log2(1+r)) <= log(r), from log2(1+r) <= r.
    passed, _, detail = _check_ray_inequality(sp.log(1 + _x, 2), _x, _x, sp.Integer(1))
    if not passed:
        return False, len(steps), f"log2(1+r) <= r: {detail}"
    steps.append("log2(1+r) <= r for r >= 1")

    y = sp.Symbol("y", positive=True)
    if sp.diff(sp.log(y), y).is_positive is not True:
        return False, len(steps), "could not show that log is increasing on (0, oo)"
    steps.append("log is increasing on (0, oo), and log2(1+r) >= 1 > 0")

    # Step 2: r = Σ_{v: s_v >= s+} 1 <= Σ_{v: s_v >= s+} e^{s_v − s+}, term by term.
    passed, _, detail = _check_indicator_bound(sp.exp(_x), _x)
    if not passed:
        return False, len(steps), f"1[d >= 0] <= e^d: {detail}"
    steps.append("1[d >= 0] <= e^d for each d = s_v − s+ (summed over the r items at or above)")

    # Step 3: for n >= r the top-n set contains the r items at or above the target, and every
    # extra term e^{d} is positive, so Z only grows from the r items to the top n to all N.
    d = sp.Symbol("d", real=True)
    if sp.exp(d).is_positive is not True:
        return False, len(steps), "could not show e^d > 0 for real d"
    steps.append("e^d > 0, so adding items to Z increases log Z")

    return True, len(steps), "; ".join(steps)


def _check_sce_lower_bound_symbolic() -> Outcome:
    steps: list[str] = []

    # ℓ_SCE written with explicit scores equals log(1 + α Σ e^{s_i − s+}). sympy checks it for K = 3.
    alpha = sp.Symbol("alpha", positive=True)
    target, *sampled = sp.symbols("s_plus s_1 s_2 s_3", real=True)
    loss = -sp.log(sp.exp(target) / (sp.exp(target) + alpha * sum(sp.exp(s) for s in sampled)))
    rewritten = sp.log(1 + alpha * sum(sp.exp(s - target) for s in sampled))
    if sp.simplify(sp.exp(loss) - sp.exp(rewritten)) != 0:
        return False, len(steps), "could not rewrite ℓ_SCE as log(1 + α Σ e^{s_i − s+})"
    steps.append("ℓ_SCE = log(1 + α Σ_i e^{s_i − s+}) (checked for K = 3)")

    passed, _, detail = _check_indicator_bound(sp.exp(_x), _x)
    if not passed:
        return False, len(steps), f"1[d >= 0] <= e^d: {detail}"
    steps.append("Σ_i e^{s_i − s+} >= Σ_i 1[s_i >= s+] = ξ, term by term")

    y = sp.Symbol("y", nonnegative=True)
    slope = sp.diff(sp.log(1 + alpha * y), y)
    if slope.is_positive is not True:
        return False, len(steps), f"could not show d/dy log(1 + αy) = {slope} > 0"
    steps.append(f"y ↦ log(1 + αy) is increasing on y >= 0 (derivative {slope})")

    return True, len(steps), "; ".join(steps)


def _check_thresholds_symbolic() -> Outcome:
    steps: list[str] = []
    r = sp.Symbol("r", positive=True)
    m = sp.Symbol("m", positive=True, integer=True)
    alpha = sp.Symbol("alpha", positive=True)
    xi = sp.Symbol("xi", nonnegative=True)
    level = sp.Symbol("L", positive=True)

    # r <= 2**m − 1 implies log2(1+r) <= log2(2**m) = m, because log2(1 + ·) is increasing.
    slope = sp.diff(sp.log(1 + r, 2), r)
    if slope.is_positive is not True:
        return False, len(steps), f"could not show d/dr log2(1+r) = {slope} > 0"
    if sp.simplify(sp.log(1 + (2**m - 1), 2) - m) != 0:
        return False, len(steps), "could not simplify log2(2**m) to m"
    steps.append("r <= 2**m − 1 gives log2(1+r) <= m, so −log NDCG(r) <= log m")

    # log(1 + αξ) >= log L  <=>  ξ >= (L − 1)/α, since 1 + αξ is increasing in ξ.
    solutions = sp.solve(sp.Eq(1 + alpha * xi, level), xi)
    if solutions != [(level - 1) / alpha] or sp.diff(1 + alpha * xi, xi).is_positive is not True:
        return False, len(steps), f"solving 1 + αξ = L for ξ gave {solutions}"
    steps.append("1 + αξ >= L exactly when ξ >= (L − 1)/α, so ξ* = ceil((log2(1+r) − 1)/α)")

    # L = log2(1+r) <= m gives (L − 1)/α <= (m − 1)/α < m/α, and ceil is monotone.
    if sp.simplify((m - 1) / alpha - m / alpha + 1 / alpha) != 0 or (1 / alpha).is_positive is not True:
        return False, len(steps), "could not show (m − 1)/α = m/α − 1/α < m/α"
    steps.append("ceil((log2(1+r) − 1)/α) <= ceil((m − 1)/α) <= ceil(m/α)")

    # RR: 1 + αξ >= r  <=>  ξ >= (r − 1)/α, and r <= 2**m gives (r − 1)/α < 2**m/α.
    if sp.solve(sp.Eq(1 + alpha * xi, r), xi) != [(r - 1) / alpha]:
        return False, len(steps), "could not solve 1 + αξ = r for ξ"
    steps.append("RR: ξ* = ceil((r − 1)/α) <= ceil(2**m/α) when r <= 2**m")

    return True, len(steps), "; ".join(steps)


# ---------------------------------------------------------------------------------------------
# Exact-grid checks
# ---------------------------------------------------------------------------------------------

_WEIGHTS = (Fraction(1, 3), Fraction(1, 2), Fraction(1), Fraction(2), Fraction(3))


def _weight_vectors(values: Sequence[Fraction], max_items: int) -> Iterable[tuple[Fraction, ...]]:
    for n_items in range(1, max_items + 1):
        yield from itertools.product(values, repeat=n_items)


def _default_truncations(rank: int, n_items: int) -> Iterable[int]:
    return range(rank, n_items + 1)


def _check_ce_chain_grid(truncations: Callable[[int, int], Iterable[int]]) -> Outcome:
    """Check −log NDCG <= −log RR <= ℓ_CE-n <= ℓ_CE with scores s_v = log w_v, w_v rational.

    With these scores e^{s_v − s+} = w_v / w+ is rational, so every step compares rationals.
    """
    cases = 0
    for weights in _weight_vectors(_WEIGHTS, 4):
        ordered = sorted(weights, reverse=True)
        for target in range(len(weights)):
            w_target = weights[target]
            rank = sum(1 for w in weights if w >= w_target)
            above = sum((w / w_target for w in weights if w >= w_target), Fraction(0))
            full = sum(weights, Fraction(0)) / w_target

            for n in truncations(rank, len(weights)):
                cases += 1
                # Ties at the n-th place do not change the sum, because tied items have equal weights.
                top_n = sum(ordered[:n], Fraction(0)) / w_target
                where = f"weights {[str(w) for w in weights]}, target {target}, r = {rank}, n = {n}"

                if not (1 + rank <= 1 << rank):
                    return False, cases, f"log2(1+r) > r at {where}"
                for w in weights:
                    if (1 if w >= w_target else 0) > w / w_target:
                        return False, cases, f"1[s_v >= s+] > e^(s_v − s+) for w_v = {w} at {where}"
                if not rank <= above:
                    return False, cases, f"r > Σ_(v at or above) e^(s_v − s+) at {where}"
                if not above <= top_n:
                    return False, cases, f"Σ over items at or above exceeds the top-n sum at {where}"
                if not top_n <= full:
                    return False, cases, f"top-n sum exceeds the full sum at {where}"
                if not _two_pow_at_least(top_n, 1 + rank):
                    return False, cases, f"−log NDCG(r) > ℓ_CE-n = log {top_n} at {where}"

    # A few rational scores, with e^{s_v − s+} kept symbolic and compared by sympy.
    for scores in _weight_vectors((sp.Integer(-1), sp.Integer(0), sp.Rational(1, 2)), 3):
        for target in range(len(scores)):
            rank = sum(1 for s in scores if s >= scores[target])
            above = sum(sp.exp(s - scores[target]) for s in scores if s >= scores[target])
            cases += 1
            if not bool(sp.Ge(above, rank)):
                return False, cases, f"r > Σ e^(s_v − s+) for scores {scores}, target {target}"

    return True, cases, "rational weights w_v = e^(s_v), up to 4 items, every target and n >= r"


def ce_chain_grid_statement(
    truncations: Callable[[int, int], Iterable[int]] = _default_truncations,
) -> Statement:
    """Build the exact-grid check of −log NDCG(r) <= −log RR(r) <= ℓ_CE-n <= ℓ_CE.

    ``truncations(r, N)`` lists the n to test. The default, n >= r, is where the chain holds.
    """
    return Statement(
        name="ce-chain-grid",
        inequality="−log NDCG(r) <= −log RR(r) <= ℓ_CE-n <= ℓ_CE for n >= r",
        derivation=(
            "Scores s_v = log w_v with rational w_v make every e^(s_v − s+) rational, so each step "
            "of the chain is an exact rational comparison; a small grid of rational scores is "
            "compared through sympy."
        ),
        method="exact-grid",
        checker=lambda: _check_ce_chain_grid(truncations),
    )


_GRID_PROBABILITIES = tuple(
    Fraction(n, d)
    for n, d in ((1, 100), (1, 20), (1, 10), (1, 4), (1, 3), (1, 2), (2, 3), (9, 10), (99, 100), (1, 1))
)


def _lemma_bound(trials: int, at_least: int, p: Fraction) -> Fraction:
    return 1 - at_least * (1 - p) ** (trials // at_least)


def _check_binomial_lemma(bound: Callable[[int, int, Fraction], Fraction], max_trials: int) -> Outcome:
    cases = 0
    for p in _GRID_PROBABILITIES:
        for trials in range(1, max_trials + 1):
            tails = binomial_tails(trials, p)
            for at_least in range(1, trials + 1):
                cases += 1
                claimed = bound(trials, at_least, p)
                if claimed > tails[at_least]:
                    return False, cases, (
                        f"K = {trials}, m = {at_least}, p = {p}: bound {float(claimed):.6g} "
                        f"> P(ξ >= m) = {float(tails[at_least]):.6g}"
                    )
    return True, cases, f"K in 1..{max_trials}, m in 1..K, p in {[str(p) for p in _GRID_PROBABILITIES]}"


def binomial_lemma_statement(
    bound: Callable[[int, int, Fraction], Fraction] = _lemma_bound, max_trials: int = 40
) -> Statement:
    """Build the exact-grid check of P(ξ >= m) >= bound(K, m, p) for ξ ~ Binomial(K, p).

    The default bound is 1 − m(1 − p)^floor(K/m) (Xu et al. 2024, arXiv 2408.14238, Lemma 3).
    """
    return Statement(
        name="binomial-tail-lemma",
        inequality="P(ξ >= m) >= 1 − m (1 − p)^floor(K/m) for ξ ~ Binomial(K, p)",
        derivation=(
            "Split the K trials into m blocks of floor(K/m) trials. If every block contains a "
            "success then ξ >= m, and a block has none with probability (1 − p)^floor(K/m); a union "
            "bound over the m blocks gives the claim. The grid compares it with the exact tail."
        ),
        method="exact-grid",
        checker=lambda: _check_binomial_lemma(bound, max_trials),
    )


def _check_sce_lower_bound_grid() -> Outcome:
    """Enumerate every draw tuple (with replacement, target included) for small catalogues."""
    cases = 0
    alphas = (Fraction(1), Fraction(2), Fraction(5, 2), Fraction(100))
    for weights in _weight_vectors(_WEIGHTS[1:4], 3):
        n_items = len(weights)
        for target in range(n_items):
            w_target = weights[target]
            for n_draws in range(1, 4):
                for draw in itertools.product(range(n_items), repeat=n_draws):
                    at_or_above = sum(1 for v in draw if weights[v] >= w_target)
                    scaled_sum = sum((weights[v] / w_target for v in draw), Fraction(0))
                    for alpha in alphas:
                        cases += 1
                        if 1 + alpha * scaled_sum < 1 + alpha * at_or_above:
                            return False, cases, (
                                f"weights {weights}, target {target}, draw {draw}, α = {alpha}"
                            )
    return True, cases, "up to 3 items with rational weights, every target, every draw of K <= 3"


def _check_thresholds_grid(
    ndcg: Callable[[int, Fraction], int], rr: Callable[[int, Fraction], int]
) -> Outcome:
    """Check that the thresholds are sufficient, minimal, and below the theorem's ceil(m/α).

    Sufficiency and minimality compare 2**(a·b') with (1+r)**b directly, a different route from
    the bit-length and binary search inside `ndcg_threshold`.
    """
    alphas = tuple(
        Fraction(a) for a in (1, 2, 3, 5, 100, Fraction(1, 2), Fraction(3, 2), Fraction(7, 3), Fraction(10, 3))
    )
    powers = [1 << j for j in range(1, 41)]
    ranks = sorted(set(range(1, 4101)) | {p + d for p in powers for d in (-2, -1, 0, 1) if p + d >= 1})

    def reaches(exponent: Fraction, n: int) -> bool:
        return (1 << exponent.numerator) >= n**exponent.denominator

    cases = 0
    for alpha in alphas:
        for rank in ranks:
            cases += 1
            where = f"r = {rank}, α = {alpha}"
            xi = ndcg(rank, alpha)
            if not (isinstance(xi, int) and xi >= 0):
                return False, cases, f"NDCG threshold {xi!r} is not an int >= 0 at {where}"
            if not reaches(1 + alpha * xi, 1 + rank):
                return False, cases, f"NDCG threshold {xi} is too small at {where}"
            if xi > 0 and reaches(1 + alpha * (xi - 1), 1 + rank):
                return False, cases, f"NDCG threshold {xi} is not the smallest at {where}"

            m = rank.bit_length()
            if rank > (1 << m) - 1 or rank <= (1 << (m - 1)) - 1:
                return False, cases, f"m = {m} is not the smallest m with r <= 2**m − 1 at {where}"
            if not xi <= math.ceil((m - 1) / alpha) <= math.ceil(m / alpha):
                return False, cases, f"NDCG threshold {xi} exceeds ceil((m − 1)/α) at {where}"
            if alpha.denominator == 1 and xi != math.ceil((m - 1) / alpha):
                return False, cases, f"NDCG threshold {xi} differs from ceil((m − 1)/α) at {where}"

            xi_rr = rr(rank, alpha)
            if not (isinstance(xi_rr, int) and xi_rr >= 0):
                return False, cases, f"RR threshold {xi_rr!r} is not an int >= 0 at {where}"
            if 1 + alpha * xi_rr < rank or (xi_rr > 0 and 1 + alpha * (xi_rr - 1) >= rank):
                return False, cases, f"RR threshold {xi_rr} is not the smallest sufficient at {where}"
            if xi_rr > x24_rr_threshold(rank, alpha):
                return False, cases, f"RR threshold {xi_rr} exceeds ceil(2**m/α) at {where}"

        # The array versions must agree with the scalar ones on every rank.
        ranks_array = np.array(ranks, dtype=np.int64)
        expected_ndcg = np.array([ndcg(r, alpha) for r in ranks], dtype=np.int64)
        expected_rr = np.array([rr(r, alpha) for r in ranks], dtype=np.int64)
        if not np.array_equal(ndcg_threshold_array(ranks_array, alpha), expected_ndcg):
            return False, cases, f"ndcg_threshold_array disagrees with the scalar version at α = {alpha}"
        if not np.array_equal(rr_threshold_array(ranks_array, alpha), expected_rr):
            return False, cases, f"rr_threshold_array disagrees with the scalar version at α = {alpha}"

    return True, cases, f"ranks 1..4100 and 2**j − 2..2**j + 1 for j <= 40, α in {[str(a) for a in alphas]}"


def thresholds_grid_statement(
    ndcg: Callable[[int, Fraction], int] = ndcg_threshold,
    rr: Callable[[int, Fraction], int] = rr_threshold,
) -> Statement:
    """Build the exact-grid check that the given threshold functions are the exact ξ*.

    Exact means sufficient (1 + αξ* reaches the level) and minimal (ξ* − 1 does not).
    """
    return Statement(
        name="thresholds-grid",
        inequality="ξ* = min{ξ >= 0 : 1 + αξ >= log2(1+r)} <= ceil(m/α); RR: ξ* = ceil((r − 1)/α)",
        derivation=(
            "Compare 2**(1 + αξ) with 1 + r after raising both sides to the denominator of 1 + αξ, "
            "so no logarithm is evaluated."
        ),
        method="exact-grid",
        checker=lambda: _check_thresholds_grid(ndcg, rr),
    )


def _theorem_grid() -> Iterable[tuple[int, int]]:
    """Yield (N, r) pairs: every rank of small catalogues, and ranks near powers of two for N = 283."""
    for n_items in (7, 50):
        for rank in range(1, n_items + 1):
            yield n_items, rank
    near_powers = {(1 << j) + d for j in range(1, 9) for d in (-1, 0, 1)}
    for rank in sorted(near_powers | set(range(1, 21))):
        if rank <= 283:
            yield 283, rank


_THEOREM_ALPHAS = (Fraction(1), Fraction(2), Fraction(3), Fraction(5), Fraction(100), Fraction(3, 2))


def _check_x24_theorem(max_trials: int) -> Outcome:
    cases = 0
    for n_items, rank in _theorem_grid():
        p = Fraction(rank, n_items)
        for trials in range(1, max_trials + 1):
            tails = [*binomial_tails(trials, p), Fraction(0)]
            for alpha in _THEOREM_ALPHAS:
                cases += 1
                where = f"N = {n_items}, r = {rank}, K = {trials}, α = {alpha}"

                theorem_ndcg = _lemma_bound(trials, x24_ndcg_threshold(rank, alpha), p)
                exact_ndcg = tails[min(ndcg_threshold(rank, alpha), trials + 1)]
                if theorem_ndcg > exact_ndcg:
                    return False, cases, (
                        f"NDCG: theorem {float(theorem_ndcg):.6g} > binomial {float(exact_ndcg):.6g} at {where}"
                    )

                theorem_rr = _lemma_bound(trials, x24_rr_threshold(rank, alpha), p)
                exact_rr = tails[min(rr_threshold(rank, alpha), trials + 1)]
                if theorem_rr > exact_rr:
                    return False, cases, (
                        f"RR: theorem {float(theorem_rr):.6g} > binomial {float(exact_rr):.6g} at {where}"
                    )

    # Full chain on tiny catalogues: theorem <= binomial tail <= P(ℓ_SCE >= −log NDCG), the last by
    # enumerating all N**K draws with rational weights w_v = e^(s_v).
    for weights in _weight_vectors(_WEIGHTS[1:4], 3):
        n_items = len(weights)
        for target in range(n_items):
            rank = sum(1 for w in weights if w >= weights[target])
            p = Fraction(rank, n_items)
            for trials in range(1, 4):
                tails = [*binomial_tails(trials, p), Fraction(0)]
                draws = list(itertools.product(range(n_items), repeat=trials))
                for alpha in _THEOREM_ALPHAS[:4]:
                    cases += 1
                    bounded = sum(
                        1
                        for draw in draws
                        if _two_pow_at_least(
                            1 + alpha * sum((weights[v] / weights[target] for v in draw), Fraction(0)),
                            1 + rank,
                        )
                    )
                    truth = Fraction(bounded, len(draws))
                    exact = tails[min(ndcg_threshold(rank, alpha), trials + 1)]
                    theorem = _lemma_bound(trials, x24_ndcg_threshold(rank, alpha), p)
                    if not theorem <= exact <= truth:
                        return False, cases, (
                            f"weights {weights}, target {target}, K = {trials}, α = {alpha}: "
                            f"theorem {theorem}, binomial {exact}, enumerated {truth}"
                        )

    return True, cases, (
        f"N in (7, 50, 283), K in 1..{max_trials}, α in {[str(a) for a in _THEOREM_ALPHAS]}; "
        "full enumeration for N <= 3, K <= 3"
    )


def x24_theorem_statement(max_trials: int = 24) -> Statement:
    """Build the exact-grid check that Theorems 1 and 2 of arXiv 2408.14238 lie below the binomial tail.

    The compared tail is P(Binomial(K, r/N) >= ξ*) with the exact threshold ξ*.
    """
    return Statement(
        name="x24-theorem",
        inequality=(
            "1 − ceil(m/α)(1 − r/N)^floor(K/ceil(m/α)) <= P(Binomial(K, r/N) >= ξ*) "
            "<= P(−log NDCG(r) <= ℓ_SCE), m = ceil(log2(1+r))"
        ),
        derivation=(
            "ξ* <= ceil(m/α) makes the tail at ξ* at least the tail at ceil(m/α), which the "
            "binomial lemma bounds from below. The event ξ >= ξ* implies the bound by the SCE "
            "lower bound, and ξ ~ Binomial(K, r/N) under uniform sampling with replacement."
        ),
        method="exact-grid",
        checker=lambda: _check_x24_theorem(max_trials),
    )


def _x02_level(rank: int) -> int:
    """Return the smallest m >= 0 with rank <= 2**(2**m) − 1, the condition of arXiv 2402.06216."""
    m = 0
    while rank > (1 << (1 << m)) - 1:
        m += 1
    return m


def _check_x02_form(alphas: Sequence[Fraction], max_trials: int) -> Outcome:
    cases = 0
    failures = 0
    first_failure = ""
    for n_items, rank in _theorem_grid():
        p = Fraction(rank, n_items)
        m = _x02_level(rank)
        for trials in range(1, max_trials + 1):
            tails = [*binomial_tails(trials, p), Fraction(0)]
            for alpha in alphas:
                cases += 1
                level = Fraction(1 << m) / alpha
                form = 1 - level * (1 - p) ** math.floor(alpha * trials / (1 << m))
                exact = tails[min(ndcg_threshold(rank, alpha), trials + 1)]
                if form > exact:
                    failures += 1
                    first_failure = first_failure or (
                        f"N = {n_items}, r = {rank}, K = {trials}, α = {alpha}, m = {m}: form "
                        f"{float(form):.6g} > P(Binomial(K, r/N) >= ξ*) = {float(exact):.6g}"
                    )

    if failures:
        return False, cases, f"{failures} of {cases} cases fail; first: {first_failure}"
    return True, cases, f"N in (7, 50, 283), K in 1..{max_trials}, α in {[str(a) for a in alphas]}"


def x02_form_statement(
    alphas: Iterable[RationalLike] = _THEOREM_ALPHAS, max_trials: int = 24
) -> Statement:
    """Build the exact-grid check of the earlier form of Xu et al. 2024, arXiv 2402.06216, Thm 4.4.

    The form, as reconstructed, is a valid lower bound when 2**m/α is a positive integer but not
    for every α (α = 3 fails), so it is not part of `all_statements`.
    """
    exact_alphas = tuple(_as_positive_fraction("alpha", alpha) for alpha in alphas)
    return Statement(
        name="x02-form",
        inequality=(
            "1 − (2**m/α)(1 − r/N)^floor(αK/2**m) <= P(Binomial(K, r/N) >= ξ*) for r <= 2**(2**m) − 1"
        ),
        derivation=(
            "The binomial tail at ξ* is attained when the items at or above the target tie with it "
            "and the rest score −oo, so a form above it is not a lower bound on the probability."
        ),
        method="exact-grid",
        checker=lambda: _check_x02_form(exact_alphas, max_trials),
    )


# ---------------------------------------------------------------------------------------------
# The catalogue of statements
# ---------------------------------------------------------------------------------------------


def all_statements() -> list[Statement]:
    """Return the statements that boundlab's bounds rest on, in the order of their derivation."""
    return [
        ray_inequality_statement("log2-below-identity", sp.log(1 + _x, 2), _x),
        Statement(
            name="ndcg-at-least-rr",
            inequality="1/log2(1+r) >= 1/r for r >= 1",
            derivation="1/log2(1+r) − 1/r = (r − log2(1+r)) / (r·log2(1+r)) with both parts >= 0.",
            method="symbolic",
            checker=_check_ndcg_at_least_rr,
        ),
        indicator_bound_statement("indicator-below-exp", sp.exp(_x)),
        Statement(
            name="ce-chain",
            inequality="−log NDCG(r) <= −log RR(r) <= ℓ_CE-n <= ℓ_CE for n >= r",
            derivation=(
                "−log RR = log r = log Σ_(s_v >= s+) 1 <= log Σ_(s_v >= s+) e^(s_v − s+); the top-n "
                "set contains those r items when n >= r, and adding positive terms increases Z."
            ),
            method="symbolic",
            checker=_check_ce_chain_symbolic,
        ),
        ce_chain_grid_statement(),
        binomial_lemma_statement(),
        Statement(
            name="sce-lower-bound",
            inequality="ℓ_SCE >= log(1 + αξ), ξ = #{i : s_(v_i) >= s+}",
            derivation=(
                "ℓ_SCE = log(1 + α Σ_i e^(s_(v_i) − s+)); each of the ξ items at or above the target "
                "adds at least 1 to the sum, the others add a positive amount."
            ),
            method="symbolic",
            checker=_check_sce_lower_bound_symbolic,
        ),
        Statement(
            name="sce-lower-bound-grid",
            inequality="ℓ_SCE >= log(1 + αξ) on every draw",
            derivation="Rational weights w_v = e^(s_v) make both sides rational; all draws enumerated.",
            method="exact-grid",
            checker=_check_sce_lower_bound_grid,
        ),
        Statement(
            name="thresholds",
            inequality="r <= 2**m − 1 ⟹ −log NDCG(r) <= log m; ceil((log2(1+r) − 1)/α) <= ceil(m/α)",
            derivation="log2 is increasing; 1 + αξ >= L exactly when ξ >= (L − 1)/α; ceil is monotone.",
            method="symbolic",
            checker=_check_thresholds_symbolic,
        ),
        thresholds_grid_statement(),
        x24_theorem_statement(),
    ]


def check_all() -> list[CheckResult]:
    """Check every statement of `all_statements` and return the results in the same order."""
    results = []
    for statement in all_statements():
        result = statement.check()
        logger.debug("%s (%s): passed=%s, %d cases", result.name, result.method, result.passed, result.n_cases)
        results.append(result)
    return results
