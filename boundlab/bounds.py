"""Tightness of a loss as an upper bound on −log(metric), and coverage of sampled losses.

Definitions (all in nats; users weighted equally; see docs/theory.md):

- gap_u = ℓ_u − (−log m(r_u)) for metric m ∈ {NDCG, RR} and pessimistic rank r_u. The loss is a
  bound for user u (and draw) when gap_u >= 0.
- Tightness of a loss over a population: the mean gap (absolute, nats; the median is reported
  too) and the relative gap Σ gap / Σ ℓ, the fraction of the loss's value that is slack
  (0 = tight). Users where the bound fails contribute negative gaps.
- Coverage: P(ℓ >= −log m(r)) over users and sampling draws, estimated by Monte Carlo with a
  standard error over users. This is unrelated to the "catalogue coverage" metric of
  recommender toolkits (the fraction of items ever recommended).
- Normaliser support: the expected fraction of the catalogue whose scores enter one example's
  loss (``Loss.normaliser_support``), the informal "coverage" of Xu et al. 2024
  (arXiv 2408.14238) under a distinct name.

:func:`bounding_probability` gives lower bounds on coverage for sampled softmax and SCE in three
forms: ``"x24"`` (Theorems 1 and 2 of arXiv 2408.14238), ``"x02"`` (Theorem 4.4 of Xu et al. 2024,
arXiv 2402.06216) and ``"binomial"`` (the exact tail at the exact threshold).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from scipy import stats
from torch import Tensor

from boundlab import metrics, symbolic
from boundlab._validation import check_choice, check_positive_int, check_tensor
from boundlab.losses import Loss
from boundlab.losses import get as get_loss

BOUND_METRICS = ("ndcg", "rr")
FORMS = ("x24", "x02", "binomial")


def neg_log_metric(ranks: Tensor, metric: str = "ndcg") -> Tensor:
    """−log m(r) in float64: log(log2(1 + r)) for NDCG, log(r) for RR."""
    check_choice("metric", metric, BOUND_METRICS)
    # Direct forms, not −log(1/r): log(r) is then bit-identical to the log of an exact sum of r ones.
    r = metrics.as_rank_tensor(ranks)
    return torch.log(torch.log2(1.0 + r)) if metric == "ndcg" else torch.log(r)


def gap(loss_values: Tensor, ranks: Tensor, metric: str = "ndcg") -> Tensor:
    """gap = ℓ − (−log m(r)) per user in float64; ``loss_values`` ``(U,)`` or ``(U, R)`` for R draws."""
    loss_values = check_tensor("loss_values", loss_values)
    bound = neg_log_metric(ranks, metric)
    if loss_values.shape[:1] != bound.shape[:1] or loss_values.dim() not in (1, 2) or bound.dim() != 1:
        raise ValueError(
            f"loss_values must have shape (U,) or (U, R) matching ranks (U,), got {tuple(loss_values.shape)} "
            f"and {tuple(bound.shape)}"
        )
    if bool(torch.isnan(loss_values).any()):
        raise ValueError("loss_values contains NaN; compute the losses from finite scores")
    loss = loss_values.double().to(bound.device)
    return loss - (bound if loss.dim() == 1 else bound[:, None])


@dataclass(frozen=True)
class Tightness:
    """Gap statistics of one loss over a population (nats)."""

    metric: str
    n_users: int
    mean_gap: float
    median_gap: float
    relative_gap: float
    mean_loss: float
    mean_neg_log_metric: float
    violations: int


def tightness(loss_values: Tensor, ranks: Tensor, metric: str = "ndcg") -> Tightness:
    """Mean and median gap, relative gap Σ gap / Σ ℓ, and the count of (user, draw) pairs with gap < 0."""
    gaps = gap(loss_values, ranks, metric)
    if gaps.numel() == 0:
        raise ValueError("tightness needs at least one user")
    loss = loss_values.double()
    total_loss = float(loss.sum())
    return Tightness(
        metric=metric,
        n_users=int(gaps.shape[0]),
        mean_gap=float(gaps.mean()),
        median_gap=float(gaps.flatten().median()),
        relative_gap=float(gaps.sum()) / total_loss if total_loss != 0 else math.nan,
        mean_loss=float(loss.mean()),
        mean_neg_log_metric=float(neg_log_metric(ranks, metric).mean()),
        violations=int((gaps < 0).sum()),
    )


@dataclass(frozen=True)
class Coverage:
    """Monte-Carlo coverage P(ℓ >= −log m(r)) with its standard error over users."""

    metric: str
    estimate: float
    standard_error: float
    ci_low: float
    ci_high: float
    n_users: int
    draws: int
    per_user: Tensor


def coverage(loss_values: Tensor, ranks: Tensor, metric: str = "ndcg", *, confidence: float = 0.95) -> Coverage:
    """Estimate coverage from ``(U, R)`` loss draws (or ``(U,)``): per-user hit rates, their mean and SE.

    The standard error is std(per-user coverage) / sqrt(U), so it covers the variation over users
    and over draws. The interval is the normal one, clipped to [0, 1].
    """
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    gaps = gap(loss_values, ranks, metric)
    if gaps.dim() == 1:
        gaps = gaps[:, None]
    n_users, draws = gaps.shape
    if n_users == 0:
        raise ValueError("coverage needs at least one user")
    per_user = (gaps >= 0).double().mean(1)
    estimate = float(per_user.mean())
    standard_error = float(per_user.std(unbiased=True)) / math.sqrt(n_users) if n_users > 1 else math.nan
    z = float(stats.norm.ppf(0.5 + confidence / 2))
    half = z * standard_error if math.isfinite(standard_error) else math.inf
    return Coverage(
        metric=metric,
        estimate=estimate,
        standard_error=standard_error,
        ci_low=max(0.0, estimate - half),
        ci_high=min(1.0, estimate + half),
        n_users=n_users,
        draws=draws,
        per_user=per_user,
    )


@dataclass(frozen=True)
class MonteCarloResult:
    """Loss draws ``(U, R)`` of a sampled loss, the ranks they were compared with, and coverage."""

    loss_draws: Tensor
    ranks: Tensor
    coverage: Coverage
    target_hits: Tensor


def monte_carlo_coverage(
    loss: Loss | str,
    scores: Tensor,
    targets: Tensor,
    *,
    draws: int = 100,
    seed: int = 0,
    metric: str = "ndcg",
    exclude: Tensor | None = None,
) -> MonteCarloResult:
    """Draw the loss R times per user (float64, seeded) and estimate its coverage of −log metric.

    Each draw is vectorised over users; ranks are pessimistic and respect ``exclude``.
    ``target_hits`` counts, per user, how many of the R·K draws hit the user's own target.
    """
    from boundlab.ranking import target_ranks

    loss = get_loss(loss) if isinstance(loss, str) else loss
    check_positive_int("draws", draws)
    scores64 = scores.double() if isinstance(scores, Tensor) else scores
    ranks = target_ranks(scores64, targets, exclude=exclude)
    generator = torch.Generator(device=scores64.device).manual_seed(seed)

    columns = []
    hits = torch.zeros(scores64.shape[0], dtype=torch.long, device=scores64.device)
    for _ in range(draws if loss.is_sampled else 1):
        negatives = loss.draw(targets, scores64.shape[1], generator) if loss.is_sampled else None
        columns.append(loss(scores64, targets, exclude=exclude, negatives=negatives))
        if negatives is not None:
            hits += negatives.target_hits
    loss_draws = torch.stack(columns, dim=1)
    return MonteCarloResult(loss_draws, ranks, coverage(loss_draws, ranks, metric), hits)


def bounding_probability(
    rank: object,
    n_items: int,
    k: object,
    alpha: float = 1.0,
    *,
    metric: str = "ndcg",
    form: str = "x24",
    sampler: str = "uniform",
) -> np.ndarray:
    """Lower bound on P(ℓ_SCE >= −log m(r)) for K sampled negatives scaled by α, elementwise.

    ``"x24"``: 1 − q(1 − r/N)^⌊K/q⌋ with q = ⌈m/α⌉, m = ⌈log2(1 + r)⌉ (NDCG), or q = ⌈2^m/α⌉,
    m = ⌈log2 r⌉ (RR, reconstructed). ``"x02"`` (NDCG only): 1 − (2^m/α)(1 − r/N)^⌊αK/2^m⌋ with
    the smallest m such that r <= 2^(2^m) − 1. ``"binomial"``: P(ξ >= ξ*) for ξ ~ Binomial(K, p) at
    the exact threshold ξ* (hypergeometric for sampling without replacement). Results are clipped
    to [0, 1]; α = 1 is plain sampled softmax. x24 and x02 assume uniform sampling with replacement
    over all N items (sampler ``"uniform"`` or ``"shared"``).
    """
    check_choice("metric", metric, BOUND_METRICS)
    check_choice("form", form, FORMS)
    check_positive_int("n_items", n_items)
    if isinstance(alpha, bool) or not isinstance(alpha, int | float) or not math.isfinite(alpha) or alpha < 1:
        raise ValueError(f"alpha must be a finite number >= 1, got {alpha!r}")
    ranks = _rank_array(rank)
    if ranks.size and ranks.max() > n_items:
        raise ValueError(f"rank {int(ranks.max())} exceeds n_items={n_items}; ranks must be in [1, n_items]")
    ks = np.asarray(k)
    if ks.dtype.kind not in "iu" or (ks.size and ks.min() < 1):
        raise ValueError(f"k must be integer(s) >= 1, got {k!r}")
    ranks, ks = np.broadcast_arrays(ranks, ks.astype(np.int64))
    alpha_exact = _exact_alpha(alpha)

    if form == "binomial":
        return _binomial_form(ranks, n_items, ks, alpha_exact, metric, sampler)
    if sampler not in ("uniform", "shared"):
        raise ValueError(
            f"form={form!r} assumes uniform sampling with replacement over all items; "
            f"got sampler={sampler!r}, use form='binomial'"
        )
    miss = 1.0 - ranks / n_items
    if form == "x24":
        threshold = symbolic.x24_ndcg_threshold if metric == "ndcg" else symbolic.x24_rr_threshold
        q = _per_unique(ranks, lambda r: threshold(r, alpha_exact)).astype(np.float64)
        value = 1.0 - q * miss ** np.floor(ks / q)
    else:
        if metric != "ndcg":
            raise ValueError("form='x02' is stated for NDCG only; use metric='ndcg' or form='x24'/'binomial'")
        level = _per_unique(ranks, lambda r: (r.bit_length() - 1).bit_length()).astype(np.float64)
        width = 2.0**level
        value = 1.0 - (width / alpha) * miss ** np.floor(alpha * ks / width)
    return np.clip(value, 0.0, 1.0)


def _binomial_form(
    ranks: np.ndarray, n_items: int, ks: np.ndarray, alpha: object, metric: str, sampler: str
) -> np.ndarray:
    threshold = symbolic.ndcg_threshold_array if metric == "ndcg" else symbolic.rr_threshold_array
    needed = threshold(ranks, alpha) if ranks.size else ranks.copy()
    if sampler in ("uniform", "shared"):
        # Each draw lands at or above the target (the target included) with probability r/N.
        return stats.binom.sf(needed - 1, ks, ranks / n_items)
    if sampler == "uniform-no-target":
        # The target is never drawn; r − 1 of the N − 1 other items are at or above it.
        if n_items < 2:
            raise ValueError("sampler 'uniform-no-target' needs n_items >= 2")
        return stats.binom.sf(needed - 1, ks, (ranks - 1) / (n_items - 1))
    check_choice("sampler", sampler, ("uniform", "shared", "uniform-no-target", "without-replacement"))
    if ks.size and ks.max() > n_items:
        raise ValueError(f"sampling without replacement needs k <= n_items={n_items}, got {int(ks.max())}")
    return stats.hypergeom.sf(needed - 1, n_items, ranks, ks)


def _rank_array(rank: object) -> np.ndarray:
    ranks = np.asarray(rank.cpu().numpy() if isinstance(rank, Tensor) else rank)
    if ranks.dtype.kind == "f" and np.all(np.isfinite(ranks)) and np.all(ranks == np.floor(ranks)):
        ranks = ranks.astype(np.int64)
    if ranks.dtype == np.bool_ or ranks.dtype.kind not in "iu":
        raise TypeError(f"rank must be whole numbers, got dtype {ranks.dtype}; pass pessimistic integer ranks")
    if ranks.size and ranks.min() < 1:
        raise ValueError(f"rank must be >= 1 (1-based), got {ranks.min()}")
    return ranks.astype(np.int64)


def _per_unique(ranks: np.ndarray, function) -> np.ndarray:
    unique, inverse = np.unique(ranks, return_inverse=True)
    values = np.array([function(int(r)) for r in unique], dtype=np.int64)
    return values[inverse].reshape(ranks.shape)


def _exact_alpha(alpha: float) -> object:
    # Integral α (the common case) stays an int so the thresholds use integer arithmetic;
    # other values are taken at their exact binary value.
    from fractions import Fraction

    return int(alpha) if float(alpha).is_integer() else Fraction(alpha)
