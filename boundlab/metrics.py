"""Per-user ranking metrics of a single relevant item, as functions of its 1-based rank r.

Conventions (one relevant item per query, so the ideal DCG is 1 and NDCG equals DCG):

- ``ndcg``:     NDCG(r)   = 1 / log2(1 + r)              (full list, no cut-off)
- ``ndcg_at``:  NDCG@k(r) = 1[r <= k] / log2(1 + r)
- ``hit_at``:   HR@k(r)   = 1[r <= k]
- ``rr``:       RR(r)     = 1 / r                         (its mean over users is MRR)
- ``rr_at``:    RR@k(r)   = 1[r <= k] / r                 (its mean is MRR@k)

Every function returns one value per user (``reduction="none"``) unless asked for ``"mean"`` or
``"sum"``. Ranks may be integer (pessimistic or optimistic) or float (tie-averaged); metrics are
computed in float64. :func:`expected_metric` gives the value under uniformly random tie-breaking.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from boundlab._validation import check_choice, check_positive_int, check_tensor

REDUCTIONS = ("none", "mean", "sum")


def ndcg(ranks: Tensor, *, reduction: str = "none") -> Tensor:
    """NDCG(r) = 1 / log2(1 + r). Example: ranks [1, 2, 3, 10] give [1, 0.63093, 0.5, 0.28906]."""
    r = as_rank_tensor(ranks)
    return _reduce(1.0 / torch.log2(1.0 + r), reduction)


def ndcg_at(ranks: Tensor, k: int, *, reduction: str = "none") -> Tensor:
    """NDCG@k(r) = 1[r <= k] / log2(1 + r). Example: k=2, ranks [1, 2, 3] give [1, 0.63093, 0]."""
    r = as_rank_tensor(ranks)
    check_positive_int("k", k)
    return _reduce(torch.where(r <= k, 1.0 / torch.log2(1.0 + r), torch.zeros_like(r)), reduction)


def hit_at(ranks: Tensor, k: int, *, reduction: str = "none") -> Tensor:
    """HR@k(r) = 1[r <= k]. Example: k=2, ranks [1, 2, 3] give [1, 1, 0]."""
    r = as_rank_tensor(ranks)
    check_positive_int("k", k)
    return _reduce((r <= k).double(), reduction)


def rr(ranks: Tensor, *, reduction: str = "none") -> Tensor:
    """RR(r) = 1 / r. Example: ranks [1, 2, 4] give [1, 0.5, 0.25]."""
    r = as_rank_tensor(ranks)
    return _reduce(1.0 / r, reduction)


def rr_at(ranks: Tensor, k: int, *, reduction: str = "none") -> Tensor:
    """RR@k(r) = 1[r <= k] / r. Example: k=2, ranks [1, 2, 4] give [1, 0.5, 0]."""
    r = as_rank_tensor(ranks)
    check_positive_int("k", k)
    return _reduce(torch.where(r <= k, 1.0 / r, torch.zeros_like(r)), reduction)


METRICS: dict[str, Callable[..., Tensor]] = {
    "ndcg": ndcg,
    "ndcg_at": ndcg_at,
    "hit_at": hit_at,
    "rr": rr,
    "rr_at": rr_at,
}


def expected_metric(
    metric: str,
    optimistic: Tensor,
    pessimistic: Tensor,
    *,
    k: int | None = None,
    reduction: str = "none",
) -> Tensor:
    """E[metric(R)] for R uniform on {optimistic, ..., pessimistic}: the value under random tie-breaking.

    Equals (1/t) Σ_{r=o}^{p} metric(r) with t = p - o + 1. For ``"ndcg"`` this is the tie-averaged
    NDCG of scikit-learn's ``ndcg_score(..., ignore_ties=False)`` with one relevant item.
    Example: ranks tied over {1, 2} give NDCG (1 + 0.63093) / 2 = 0.81546.
    """
    check_choice("metric", metric, METRICS)
    low = as_rank_tensor(optimistic, name="optimistic")
    high = as_rank_tensor(pessimistic, name="pessimistic")
    if low.shape != high.shape:
        raise ValueError(
            f"optimistic has shape {tuple(low.shape)} but pessimistic has {tuple(high.shape)}; they must match"
        )
    for name, r in (("optimistic", low), ("pessimistic", high)):
        if bool((r != torch.floor(r)).any()):
            raise ValueError(f"{name} ranks must be whole numbers; pass the integer optimistic and pessimistic ranks")
    if bool((low > high).any()):
        row = int(torch.nonzero(low > high)[0][0])
        raise ValueError(
            f"optimistic[{row}] = {int(low.flatten()[row])} exceeds pessimistic[{row}] = {int(high.flatten()[row])}"
        )
    if metric.endswith("_at"):
        if k is None:
            raise ValueError(f"metric {metric!r} needs a cut-off k >= 1")
        check_positive_int("k", k)
        values_of = lambda r: METRICS[metric](r, k)  # noqa: E731
    else:
        if k is not None:
            raise ValueError(f"metric {metric!r} takes no cut-off, got k={k}")
        values_of = METRICS[metric]

    # Prefix sums of metric(1..max rank) turn every range average into two lookups.
    if low.numel() == 0:
        return _reduce(low.clone(), reduction)
    top = int(high.max())
    table = torch.cat([torch.zeros(1, dtype=torch.float64), values_of(torch.arange(1, top + 1, dtype=torch.float64))])
    prefix = torch.cumsum(table, 0).to(low.device)
    count = high - low + 1.0
    total = prefix[high.long()] - prefix[low.long() - 1]
    return _reduce(total / count, reduction)


def as_rank_tensor(ranks: object, name: str = "ranks") -> Tensor:
    """Return ``ranks`` as float64 after checking that every rank is finite and >= 1."""
    ranks = check_tensor(name, ranks)
    if ranks.dtype == torch.bool or ranks.is_complex():
        raise TypeError(f"{name} must be integer or floating ranks, got dtype {ranks.dtype}")
    r = ranks.double()
    if bool(torch.isnan(r).any()):
        index = tuple(torch.nonzero(torch.isnan(r))[0].tolist())
        raise ValueError(f"{name} contains NaN at index {index}; ranks must be >= 1")
    if bool((r < 1).any()):
        index = tuple(torch.nonzero(r < 1)[0].tolist())
        raise ValueError(f"{name}{list(index)} = {r[index].item()} is invalid; 1-based ranks must be >= 1")
    if bool(torch.isinf(r).any()):
        index = tuple(torch.nonzero(torch.isinf(r))[0].tolist())
        raise ValueError(f"{name}{list(index)} is infinite; ranks must be finite")
    return r


def _reduce(values: Tensor, reduction: str) -> Tensor:
    check_choice("reduction", reduction, REDUCTIONS)
    if reduction == "mean":
        if values.numel() == 0:
            raise ValueError("cannot take the mean of zero users; pass reduction='sum' or 'none'")
        return values.mean()
    if reduction == "sum":
        return values.sum()
    return values

