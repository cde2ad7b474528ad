"""Randomized numerical checks of the bound statements on many score vectors.

Score vectors come in three regimes (heavy ties from small integers, continuous Gaussian scores,
and large logits up to ±1e4), each in float32 and float64. Losses are evaluated on the float64
path (upcasting float32 scores is exact), which is the path on which the inequalities must hold
to the last digit. Each check counts the vectors it tested and the ones that failed.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import Tensor

from boundlab import bounds, losses
from boundlab.losses import functional
from boundlab.ranking import target_ranks

REGIMES = ("ties", "gaussian", "large")
DTYPES = (torch.float32, torch.float64)


@dataclass
class NumericCheck:
    """Counts of one inequality over all tested vectors."""

    name: str
    statement: str
    tested: int = 0
    failed: int = 0
    worst: float = 0.0

    @property
    def passed(self) -> bool:
        """True when at least one vector was tested and none failed."""
        return self.tested > 0 and self.failed == 0

    def record(self, holds: Tensor, slack: Tensor | None = None) -> None:
        """Add a batch of per-vector outcomes; ``slack`` (>= 0 when the inequality holds) tracks the worst case."""
        self.tested += int(holds.numel())
        self.failed += int((~holds).sum())
        if slack is not None and slack.numel():
            self.worst = min(self.worst, float(slack.min()))


def score_batches(
    n_vectors: int, n_items: int, batch: int, seed: int
) -> Iterator[tuple[str, torch.dtype, Tensor, Tensor]]:
    """Yield (regime, dtype, scores, targets) batches, ``n_vectors`` score vectors in all."""
    generator = torch.Generator().manual_seed(seed)
    combos = [(regime, dtype) for regime in REGIMES for dtype in DTYPES]
    per_combo = math.ceil(n_vectors / len(combos))
    for regime, dtype in combos:
        remaining = per_combo
        while remaining > 0:
            size = min(batch, remaining)
            remaining -= size
            if regime == "ties":
                scores = torch.randint(-3, 4, (size, n_items), generator=generator).double()
            elif regime == "gaussian":
                scores = torch.randn(size, n_items, generator=generator, dtype=torch.float64)
            else:
                scores = (torch.rand(size, n_items, generator=generator, dtype=torch.float64) * 2 - 1) * 1e4
                # Copy some items onto the target's column value so ties also occur at large scale.
                scores[:, : n_items // 4] = scores[:, :1]
            targets = torch.randint(0, n_items, (size,), generator=generator)
            yield regime, dtype, scores.to(dtype), targets


def run_numeric_checks(n_vectors: int = 120_000, n_items: int = 64, batch: int = 5_000, seed: int = 0) -> list[NumericCheck]:
    """Run every numerical check on ``n_vectors`` random score vectors and return the counts."""
    checks = {
        "ndcg_rr": NumericCheck("ndcg-above-rr", "-log NDCG(r) <= -log RR(r)"),
        "rr_cen": NumericCheck("rr-below-ce-n", "-log RR(r) <= CE-n for random n >= r"),
        "cen_ce": NumericCheck("ce-n-below-ce", "CE-n <= CE for random n >= r"),
        "rr_ceeta": NumericCheck("rr-below-ce-eta", "-log RR(r) <= CE-eta for random eta >= 0"),
        "ceeta_ce": NumericCheck("ce-eta-below-ce", "CE-eta <= CE"),
        "sce_xi": NumericCheck("sce-above-log1p", "SCE >= log(1 + alpha * xi), xi = sampled items at or above the target"),
        "ties": NumericCheck("rank-order", "optimistic <= average <= pessimistic rank"),
        "bpr": NumericCheck("bpr-is-pair-ce", "BPR with one negative = CE over {target, negative} (|diff| <= 1e-12)"),
    }
    generator = torch.Generator().manual_seed(seed + 1)
    for _, _, scores, targets in score_batches(n_vectors, n_items, batch, seed):
        _check_batch(checks, scores, targets, generator)
    return list(checks.values())


def _check_batch(checks: dict[str, NumericCheck], scores: Tensor, targets: Tensor, generator: torch.Generator) -> None:
    size, n_items = scores.shape
    wide = scores.double()
    ranks = target_ranks(wide, targets)
    neg_log_ndcg = bounds.neg_log_metric(ranks, "ndcg")
    neg_log_rr = bounds.neg_log_metric(ranks, "rr")
    checks["ndcg_rr"].record(neg_log_ndcg <= neg_log_rr, neg_log_rr - neg_log_ndcg)

    diff, target_score = functional.centred(wide, targets)
    ce = functional.prefix_logsumexp(diff, None, None)

    extra = torch.floor(torch.rand(size, generator=generator, dtype=torch.float64) * (n_items - ranks + 1)).long()
    n = ranks + extra
    ce_n = functional.prefix_logsumexp(diff, None, n)
    checks["rr_cen"].record(neg_log_rr <= ce_n, ce_n - neg_log_rr)
    checks["cen_ce"].record(ce_n <= ce, ce - ce_n)

    eta = torch.rand(size, generator=generator, dtype=torch.float64) * 2.0
    eta[: size // 4] = 0.0
    kept = (wide >= (target_score - eta * target_score.abs())[:, None]).sum(1)
    ce_eta = functional.prefix_logsumexp(diff, None, kept)
    checks["rr_ceeta"].record(neg_log_rr <= ce_eta, ce_eta - neg_log_rr)
    checks["ceeta_ce"].record(ce_eta <= ce, ce - ce_eta)

    alpha = [1.0, 5.0, 100.0][int(torch.randint(0, 3, (1,), generator=generator))]
    k = int(torch.randint(1, 2 * n_items, (1,), generator=generator))
    sce = losses.get("sce", alpha=alpha, k=k)
    sample = sce.draw(targets, n_items, generator)
    values = sce(wide, targets, negatives=sample)
    xi = (wide.gather(1, sample.items) >= target_score[:, None]).sum(1).double()
    lower = torch.log(1.0 + alpha * xi)
    checks["sce_xi"].record(values >= lower, values - lower)

    low = target_ranks(wide, targets, ties="optimistic").double()
    mid = target_ranks(wide, targets, ties="average")
    checks["ties"].record((low <= mid) & (mid <= ranks.double()))

    bpr = losses.get("bpr(k=1)")
    pair_sample = bpr.draw(targets, n_items, generator)
    pair = torch.stack([target_score, wide.gather(1, pair_sample.items)[:, 0]], 1)
    pair_ce = losses.get("ce")(pair, torch.zeros(size, dtype=torch.long))
    difference = (bpr(wide, targets, negatives=pair_sample) - pair_ce).abs()
    checks["bpr"].record(difference <= 1e-12 * torch.clamp(pair_ce.abs(), min=1.0))
