"""Per-example loss functions on plain tensors, written in target-centred form.

Every softmax-type loss is ℓ = −s+ + log Z = log Σ_{v ∈ Z} exp(s_v − s+); computing it from the
centred differences s_v − s+ keeps large logits (±1e4) exact in float32. Half-precision inputs are
computed in float32. Float64 inputs take the path used when a bound is checked to the last
digit: the full-row losses sum sorted terms with one cumulative sum (``prefix_logsumexp``), so
CE-n <= CE and CE-η <= CE hold exactly in floating point. Masks select items with
``torch.where`` and never add or subtract a sentinel, so a fully masked row gives a finite value
and finite gradients in float16 and bfloat16.

Full-row losses take ``scores`` ``(U, N)``; sampled losses take the target score ``(P,)`` and the
negative scores ``(P, K)`` with an optional ``(P, K)`` keep mask.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def softplus(x: Tensor) -> Tensor:
    """log(1 + e^x) = max(x, 0) + log1p(e^−|x|), accurate in every dtype.

    ``torch.nn.functional.softplus`` returns x itself above x = 20, an error of up to 2e-9 that
    float64 bound checks would see.
    """
    return torch.clamp(x, min=0) + torch.log1p(torch.exp(-x.abs()))


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """Return the dtype losses are computed in: float64 stays, everything else is float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def masked_logsumexp(values: Tensor, keep: Tensor | None, dim: int = -1) -> Tensor:
    """log Σ exp(values) over entries where ``keep`` is True; -inf for a row with none kept.

    The masked entries are replaced by the row maximum before ``exp``, and the gradient of an
    empty row is exactly zero (no inf * 0).
    """
    if keep is None:
        return torch.logsumexp(values, dim=dim)
    masked = torch.where(keep, values, torch.full_like(values, -math.inf))
    peak = masked.amax(dim=dim, keepdim=True)
    safe_peak = torch.where(torch.isfinite(peak), peak, torch.zeros_like(peak))
    shifted = torch.where(keep, values - safe_peak, torch.zeros_like(values))
    total = torch.where(keep, torch.exp(shifted), torch.zeros_like(values)).sum(dim=dim)
    nonempty = total > 0
    log_total = torch.log(torch.where(nonempty, total, torch.ones_like(total)))
    return torch.where(nonempty, log_total + safe_peak.squeeze(dim), torch.full_like(total, -math.inf))


def centred(scores: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
    """Return (scores − s+, s+) in the compute dtype, with s+ = scores[u, targets[u]]."""
    work = scores.to(compute_dtype(scores.dtype))
    target_score = work.gather(1, targets[:, None])
    return work - target_score, target_score.squeeze(1)


def prefix_table(diff: Tensor, keep: Tensor | None) -> tuple[Tensor, Tensor]:
    """Sorted cumulative sums of the kept exp(diff − peak) per row, and the row peak.

    The terms are sorted in decreasing order and summed with one sequential cumulative sum, so a
    longer prefix never gives a smaller value, even after rounding.
    """
    if keep is None:
        keep = torch.ones_like(diff, dtype=torch.bool)
    masked = torch.where(keep, diff, torch.full_like(diff, -math.inf))
    peak = masked.amax(dim=1, keepdim=True)
    safe_peak = torch.where(torch.isfinite(peak), peak, torch.zeros_like(peak))
    shifted = torch.where(keep, diff - safe_peak, torch.zeros_like(diff))
    terms = torch.where(keep, torch.exp(shifted), torch.zeros_like(diff))
    ordered = torch.sort(terms, dim=1, descending=True).values
    return torch.cumsum(ordered, dim=1), safe_peak.squeeze(1)


def log_prefix(totals: Tensor, peak: Tensor, counts: Tensor | None) -> Tensor:
    """log of the sum of the ``counts[u]`` largest terms of a :func:`prefix_table` (all when None)."""
    if counts is None:
        chosen = totals[:, -1]
    else:
        index = (counts.clamp(min=1, max=totals.shape[1]) - 1)[:, None]
        chosen = totals.gather(1, index).squeeze(1)
        chosen = torch.where(counts > 0, chosen, torch.zeros_like(chosen))
    nonempty = chosen > 0
    log_total = torch.log(torch.where(nonempty, chosen, torch.ones_like(chosen)))
    return torch.where(nonempty, log_total + peak, torch.full_like(chosen, -math.inf))


def prefix_logsumexp(diff: Tensor, keep: Tensor | None, counts: Tensor | None) -> Tensor:
    """log of the sum of the ``counts[u]`` largest kept exp(diff) per row (all kept when None).

    This is the float64 path: sums run over sorted terms (see :func:`prefix_table`), so
    CE-n <= CE and CE-η <= CE hold to the last digit, not only up to rounding.
    """
    totals, peak = prefix_table(diff, keep)
    return log_prefix(totals, peak, counts)


def eta_counts(scores: Tensor, targets: Tensor, eta: float, keep: Tensor | None) -> Tensor:
    """Number of kept items with s_v >= s+ − η|s+| per row (the CE-η normalizing set)."""
    work = scores.to(compute_dtype(scores.dtype))
    target_score = work.gather(1, targets[:, None])
    selected = work >= target_score - eta * target_score.abs()
    if keep is not None:
        selected &= keep
    return selected.sum(1)


def _keep_with_target(exclude: Tensor | None, targets: Tensor) -> Tensor | None:
    if exclude is None:
        return None
    keep = ~exclude
    return keep.scatter(1, targets[:, None], True)


def cross_entropy(scores: Tensor, targets: Tensor, *, exclude: Tensor | None = None) -> Tensor:
    """Full-softmax CE: ℓ = log Σ_v exp(s_v − s+) over all items not in ``exclude`` (target always kept)."""
    diff, _ = centred(scores, targets)
    keep = _keep_with_target(exclude, targets)
    if diff.dtype == torch.float64:
        return prefix_logsumexp(diff, keep, None)
    return masked_logsumexp(diff, keep)


def cross_entropy_top_n(scores: Tensor, targets: Tensor, n: int, *, exclude: Tensor | None = None) -> Tensor:
    """CE-n: ℓ = log Σ_{v ∈ top-n} exp(s_v − s+), Z over the n highest-scored items.

    The sum of the n largest values does not depend on how ties are ordered, so only values of
    ``torch.topk`` are used. If the target ranks below n, it is not part of Z; every item in Z then
    scores at least s+, so ℓ >= log n >= 0, but ℓ can fall below −log RR(r) = log r.
    """
    diff, _ = centred(scores, targets)
    keep = _keep_with_target(exclude, targets)
    if diff.dtype == torch.float64:
        counts = torch.full_like(targets, n)
        return prefix_logsumexp(diff, keep, counts)
    if keep is not None:
        # Excluded items must not be selected; ranking them below every kept item does that
        # without changing any kept value.
        floor = torch.full_like(diff, -math.inf)
        diff = torch.where(keep, diff, floor)
    n = min(n, diff.shape[1])
    top = torch.topk(diff, n, dim=1).values
    return masked_logsumexp(top, torch.isfinite(top))


def cross_entropy_eta(scores: Tensor, targets: Tensor, eta: float, *, exclude: Tensor | None = None) -> Tensor:
    """CE-η: ℓ = log Σ_{v : s_v >= s+ − η|s+|} exp(s_v − s+). η = 0 keeps the items at or above the target."""
    diff, target_score = centred(scores, targets)
    # Membership uses the literal threshold s+ − η|s+| so boundary items match the definition.
    threshold = target_score - eta * target_score.abs()
    keep = scores.to(diff.dtype) >= threshold[:, None]
    extra = _keep_with_target(exclude, targets)
    if extra is not None:
        keep &= extra
    if diff.dtype == torch.float64:
        # The kept items are exactly the largest ones, a prefix of the sorted order.
        return prefix_logsumexp(diff, extra, keep.sum(1))
    return masked_logsumexp(diff, keep)


def scaled_sampled_softmax(
    target_score: Tensor, negative_scores: Tensor, alpha: float, *, keep: Tensor | None = None
) -> Tensor:
    """SCE: ℓ = log(1 + α Σ_i exp(s_i − s+)); α = 1 is sampled softmax. Implemented as log α added to each negative logit."""
    dtype = compute_dtype(target_score.dtype)
    if dtype == torch.float64:
        return _scaled_sampled_softmax_exact(target_score, negative_scores, alpha, keep)
    diff = negative_scores.to(dtype) - target_score.to(dtype)[:, None] + math.log(alpha)
    zeros = torch.zeros_like(diff[:, :1])
    full_keep = None if keep is None else torch.cat([torch.ones_like(keep[:, :1]), keep], dim=1)
    return masked_logsumexp(torch.cat([zeros, diff], dim=1), full_keep)


def _scaled_sampled_softmax_exact(
    target_score: Tensor, negative_scores: Tensor, alpha: float, keep: Tensor | None
) -> Tensor:
    # Float64 path: log(1 + α Σ e^{d_i}) evaluated directly. Every addition and product is monotone
    # in its terms, so with ξ terms e^{d_i} >= 1 the result is >= log(1 + αξ) to the last digit.
    # Rows whose largest d_i could overflow fall back to the shifted log-sum-exp.
    diff = negative_scores.double() - target_score.double()[:, None]
    if keep is None:
        keep = torch.ones_like(diff, dtype=torch.bool)
    largest = torch.where(keep, diff, torch.zeros_like(diff)).amax(1)
    terms = torch.where(keep, torch.exp(torch.clamp(diff, max=600.0)), torch.zeros_like(diff))
    direct = torch.log(1.0 + alpha * terms.sum(1))
    shifted = torch.cat([torch.zeros_like(diff[:, :1]), diff + math.log(alpha)], dim=1)
    full_keep = torch.cat([torch.ones_like(keep[:, :1]), keep], dim=1)
    return torch.where(largest <= 600.0, direct, masked_logsumexp(shifted, full_keep))


def binary_cross_entropy(
    target_score: Tensor, negative_scores: Tensor, *, beta: float = 1.0, keep: Tensor | None = None
) -> Tensor:
    """BCE: ℓ = −β log σ(s+) − Σ_i log(1 − σ(s_i)); β ≠ 1 gives gBCE (Petrov and Macdonald 2023)."""
    dtype = compute_dtype(target_score.dtype)
    positive = beta * softplus(-target_score.to(dtype))
    negative = softplus(negative_scores.to(dtype))
    if keep is not None:
        negative = torch.where(keep, negative, torch.zeros_like(negative))
    return positive + negative.sum(1)


def bayesian_personalized_ranking(
    target_score: Tensor, negative_scores: Tensor, *, keep: Tensor | None = None
) -> Tensor:
    """BPR: ℓ = mean_i −log σ(s+ − s_i) over the kept negatives (0 for a row with none kept)."""
    dtype = compute_dtype(target_score.dtype)
    pairwise = softplus(negative_scores.to(dtype) - target_score.to(dtype)[:, None])
    if keep is None:
        return pairwise.mean(1)
    kept = keep.sum(1)
    total = torch.where(keep, pairwise, torch.zeros_like(pairwise)).sum(1)
    return total / torch.where(kept > 0, kept, torch.ones_like(kept)).to(dtype)


def noise_contrastive(
    target_score: Tensor,
    negative_scores: Tensor,
    shift: float,
    *,
    keep: Tensor | None = None,
) -> Tensor:
    """NCE with shifted logits s' = s − shift: ℓ = −log σ(s'+) − Σ_i log(1 − σ(s'_i)).

    NCE uses shift = c + log(K/N); NEG is the case c = log(N/K), i.e. shift = 0.
    """
    dtype = compute_dtype(target_score.dtype)
    return binary_cross_entropy(
        target_score.to(dtype) - shift, negative_scores.to(dtype) - shift, keep=keep
    )


def gbce_beta(k: int, n_items: int, t: float) -> float:
    """gBCE exponent β = α(t(1 − 1/α) + 1/α) with sampling rate α = K/(N − 1) (Petrov and Macdonald 2023)."""
    rate = k / max(n_items - 1, 1)
    return rate * (t * (1.0 - 1.0 / rate) + 1.0 / rate)
