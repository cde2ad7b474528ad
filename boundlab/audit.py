"""Per-user audit of how tightly each surrogate loss bounds −log NDCG and −log RR.

An audit takes full-catalogue scores from a matrix, from embeddings, or from a checkpoint. For
every user it computes exact ranks and the ranking metrics. For each surrogate it adds the
value, the gaps to −log NDCG and −log RR, and the empirical coverage over R seeded draws
(sampled losses). For sampled softmax and SCE it adds the bounding probabilities of the theorems. Losses are
evaluated on the float64 path and over the same candidate set as the ranks (the history policy's
excluded items are removed from both), so every deterministic bound must hold with no violation.
"""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from boundlab import __version__, bounds, losses, metrics
from boundlab._validation import check_all_finite, check_positive_int, check_scores
from boundlab.losses import Loss, functional
from boundlab.ranking import index_to_mask, target_ranks

logger = logging.getLogger(__name__)

DEFAULT_SURROGATES = (
    "ce",
    "ce_eta(eta=0)",
    "ce_eta(eta=0.7)",
    "ssm(k=500)",
    "sce(alpha=100,k=500)",
    "bce",
    "bpr",
)
BOUND_METRICS = bounds.BOUND_METRICS
# Losses that bound −log RR (hence −log NDCG) for every user: CE and CE-η always, CE-n when n >= r.
DETERMINISTIC_BOUNDS = ("ce", "ce_eta", "ce_top")


@dataclass(frozen=True)
class ScoreChunk:
    """Scores of a chunk of users: ids, ``(B, N)`` scores, ``(B,)`` target columns, optional exclusion index."""

    users: np.ndarray
    scores: Tensor
    targets: Tensor
    exclude: Tensor | None = None


@dataclass
class AuditResult:
    """Per-user table, per-surrogate summary and the settings that produced them."""

    per_user: pd.DataFrame
    summary: pd.DataFrame
    metadata: dict[str, Any] = field(default_factory=dict)

    def violations(self) -> pd.DataFrame:
        """Rows of users for which a deterministic bound fails (empty when every bound holds)."""
        frames = []
        for spec in self.metadata.get("surrogates", []):
            name = losses.get(spec).name
            if name not in DETERMINISTIC_BOUNDS:
                continue
            for metric in self.metadata.get("bound_metrics", BOUND_METRICS):
                gap = self.per_user[f"{spec}:gap_{metric}"]
                in_domain = self.per_user[f"{spec}:in_domain"]
                bad = self.per_user[(gap < 0) & in_domain]
                if len(bad):
                    frames.append(bad[["user", "target", "rank", f"{spec}:loss", f"{spec}:gap_{metric}"]].assign(
                        surrogate=spec, metric=metric
                    ))
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()

    def save(self, out_dir: str | os.PathLike[str]) -> dict[str, Path]:
        """Write the per-user table (Parquet if pyarrow is installed, else CSV), summary and metadata atomically."""
        folder = Path(out_dir)
        folder.mkdir(parents=True, exist_ok=True)
        paths: dict[str, Path] = {}
        try:
            import pyarrow  # noqa: F401

            paths["per_user"] = _write_atomic(folder / "per_user.parquet", lambda p: self.per_user.to_parquet(p, index=False))
        except ImportError:
            paths["per_user"] = _write_atomic(folder / "per_user.csv", lambda p: self.per_user.to_csv(p, index=False))
        paths["summary"] = _write_atomic(folder / "summary.csv", lambda p: self.summary.to_csv(p, index=False))
        text = json.dumps(self.metadata, indent=2, sort_keys=True, default=str)
        paths["metadata"] = _write_atomic(folder / "audit.json", lambda p: Path(p).write_text(text))
        return paths


def audit_chunks(
    chunks: Iterable[ScoreChunk],
    n_items: int,
    *,
    surrogates: Sequence[str | Loss] = DEFAULT_SURROGATES,
    draws: int = 20,
    seed: int = 0,
    k: int = 10,
    bound_metrics: Sequence[str] = BOUND_METRICS,
    metadata: dict[str, Any] | None = None,
) -> AuditResult:
    """Audit users chunk by chunk; sampled surrogates take ``draws`` seeded draws per user."""
    check_positive_int("draws", draws)
    check_positive_int("k", k)
    check_positive_int("n_items", n_items)
    for metric in bound_metrics:
        if metric not in BOUND_METRICS:
            raise ValueError(f"bound metric {metric!r} is not supported; expected one of {', '.join(BOUND_METRICS)}")
    if isinstance(surrogates, str | Loss):
        surrogates = [surrogates]
    specs = [losses.get(s) if isinstance(s, str) else s for s in surrogates]
    if not specs:
        raise ValueError("surrogates is empty; pass at least one loss spec such as 'ce'")
    names = [loss.spec for loss in specs]
    if len(set(names)) != len(names):
        raise ValueError(f"surrogates contains duplicates: {names}")
    # Checked before the first chunk is scored, so a sampler that cannot work fails at once.
    for loss in specs:
        try:
            loss.check_catalogue(n_items)
        except ValueError as error:
            raise ValueError(f"surrogate {loss.spec} cannot be audited: {error}") from None
    generators = {loss.spec: torch.Generator().manual_seed(seed + 1000 * i) for i, loss in enumerate(specs)}

    tables = []
    raw_draws: dict[str, list[Tensor]] = {loss.spec: [] for loss in specs}
    for chunk in chunks:
        table, chunk_draws = _audit_chunk(chunk, n_items, specs, generators, draws, k, bound_metrics)
        tables.append(table)
        for spec, values in chunk_draws.items():
            raw_draws[spec].append(values)
    if not tables:
        raise ValueError("no users to audit")
    per_user = pd.concat(tables, ignore_index=True)

    ranks = torch.from_numpy(per_user["rank"].to_numpy().copy())
    summary = _summarise(per_user, specs, {s: torch.cat(v) for s, v in raw_draws.items()}, ranks, n_items, bound_metrics)
    record = {
        "boundlab_version": __version__,
        "n_users": len(per_user),
        "n_items": n_items,
        "surrogates": names,
        "draws": draws,
        "seed": seed,
        "k": k,
        "bound_metrics": list(bound_metrics),
        "tie_policy": "pessimistic rank for metrics and bounds; optimistic rank reported beside it",
        "loss_precision": "float64",
        "loss_candidates": "the same items as the ranking (history policy applied to both)",
    }
    record.update(metadata or {})
    return AuditResult(per_user, summary, record)


def audit_scores(
    scores: Tensor,
    targets: Tensor,
    *,
    exclude: Tensor | None = None,
    user_ids: Sequence[int] | np.ndarray | None = None,
    chunk_size: int = 1024,
    **options: Any,
) -> AuditResult:
    """Audit a ``(U, N)`` score matrix against ``(U,)`` target columns (see :func:`audit_chunks`)."""
    check_positive_int("chunk_size", chunk_size)
    users = np.arange(scores.shape[0]) if user_ids is None else np.asarray(user_ids)
    if len(users) != scores.shape[0]:
        raise ValueError(f"user_ids has {len(users)} entries but scores has {scores.shape[0]} rows")

    def chunks() -> Iterator[ScoreChunk]:
        for start in range(0, scores.shape[0], chunk_size):
            stop = start + chunk_size
            part = None if exclude is None else exclude[start:stop]
            yield ScoreChunk(users[start:stop], scores[start:stop], targets[start:stop], part)

    return audit_chunks(chunks(), scores.shape[1], **options)


def audit_embeddings(
    user_embeddings: Tensor,
    item_embeddings: Tensor,
    targets: Tensor,
    *,
    item_bias: Tensor | None = None,
    exclude: Tensor | None = None,
    user_ids: Sequence[int] | np.ndarray | None = None,
    chunk_size: int = 1024,
    **options: Any,
) -> AuditResult:
    """Audit scores ``user_embeddings @ item_embeddings.T (+ item_bias)``, formed chunk by chunk."""
    check_positive_int("chunk_size", chunk_size)
    if user_embeddings.dim() != 2 or item_embeddings.dim() != 2 or user_embeddings.shape[1] != item_embeddings.shape[1]:
        raise ValueError(
            f"user_embeddings (U, d) and item_embeddings (N, d) must share d, got {tuple(user_embeddings.shape)} "
            f"and {tuple(item_embeddings.shape)}"
        )
    users = np.arange(user_embeddings.shape[0]) if user_ids is None else np.asarray(user_ids)

    def chunks() -> Iterator[ScoreChunk]:
        for start in range(0, user_embeddings.shape[0], chunk_size):
            stop = start + chunk_size
            scores = user_embeddings[start:stop] @ item_embeddings.T
            if item_bias is not None:
                scores = scores + item_bias
            part = None if exclude is None else exclude[start:stop]
            yield ScoreChunk(users[start:stop], scores, targets[start:stop], part)

    return audit_chunks(chunks(), item_embeddings.shape[0], **options)


def audit_checkpoint(
    path: str | os.PathLike[str],
    *,
    split: str = "test",
    data_dir: str | os.PathLike[str] | None = None,
    history: str | None = None,
    limit_users: int | None = None,
    batch_size: int = 1024,
    device: str = "cpu",
    **options: Any,
) -> AuditResult:
    """Audit a trained checkpoint on its dataset's ``split`` ("test" or "valid") with full ranking."""
    from boundlab.checkpoint import load_checkpoint, load_recorded_dataset
    from boundlab.data import leave_one_out
    from boundlab.evaluation import score_users

    if split not in ("test", "valid"):
        raise ValueError(f"split={split!r} is not supported; expected 'test' or 'valid'")
    # Reject a bad surrogate spec before the dataset and model are loaded.
    for spec in options.get("surrogates", DEFAULT_SURROGATES):
        if isinstance(spec, str):
            losses.get(spec)
    model, checkpoint_meta = load_checkpoint(path, device=device)
    dataset = load_recorded_dataset(checkpoint_meta, data_dir=data_dir, checkpoint=path)
    eval_set = getattr(leave_one_out(dataset), split)
    policy = history or checkpoint_meta.get("history_policy") or "exclude-seen"
    users = None if limit_users is None else slice(0, check_positive_int("limit_users", limit_users))

    chunks = (
        ScoreChunk(chunk.users, chunk.scores, chunk.targets, chunk.exclude)
        for chunk in score_users(model, eval_set, history=policy, batch_size=batch_size, users=users, device=device)
    )
    metadata = {
        "checkpoint": str(path),
        "split": split,
        "history_policy": str(getattr(policy, "value", policy)),
        "dataset": checkpoint_meta.get("dataset"),
        "model": checkpoint_meta.get("model"),
        "loss": checkpoint_meta.get("loss"),
        "checkpoint_seed": checkpoint_meta.get("seed"),
        "checkpoint_epoch": checkpoint_meta.get("epoch"),
        "batch_size": batch_size,
    }
    return audit_chunks(chunks, dataset.n_items, metadata=metadata, **options)


def _audit_chunk(
    chunk: ScoreChunk,
    n_items: int,
    specs: Sequence[Loss],
    generators: dict[str, torch.Generator],
    draws: int,
    k: int,
    bound_metrics: Sequence[str],
) -> tuple[pd.DataFrame, dict[str, Tensor]]:
    scores = chunk.scores.detach().cpu().double()
    targets = chunk.targets.cpu().long()
    exclude_index = chunk.exclude
    mask = None
    if exclude_index is not None:
        exclude_index = exclude_index.cpu()
        mask = exclude_index if exclude_index.dtype == torch.bool else index_to_mask(exclude_index, n_items)

    check_scores("scores", scores)
    check_all_finite("scores", scores)
    rank = target_ranks(scores, targets, exclude=mask)
    optimistic = target_ranks(scores, targets, exclude=mask, ties="optimistic")
    columns: dict[str, Any] = {
        "user": chunk.users,
        "target": targets.numpy(),
        "rank": rank.numpy(),
        "rank_optimistic": optimistic.numpy(),
        "ndcg": metrics.ndcg(rank).numpy(),
        "rr": metrics.rr(rank).numpy(),
        f"ndcg@{k}": metrics.ndcg_at(rank, k).numpy(),
        f"hr@{k}": metrics.hit_at(rank, k).numpy(),
        f"rr@{k}": metrics.rr_at(rank, k).numpy(),
    }
    for metric in bound_metrics:
        columns[f"neg_log_{metric}"] = bounds.neg_log_metric(rank, metric).numpy()

    chunk_draws = {}
    table = _SharedPrefixTable(scores, targets, mask)
    for loss in specs:
        if loss.name in DETERMINISTIC_BOUNDS:
            values = table.values(loss)[:, None]
        else:
            values = _loss_draws(loss, scores, targets, mask, generators[loss.spec], draws)
        chunk_draws[loss.spec] = values
        columns[f"{loss.spec}:loss"] = values.mean(1).numpy()
        support = loss.normaliser_support(n_items, scores, targets)
        columns[f"{loss.spec}:support"] = support.numpy() if isinstance(support, Tensor) else np.full(len(rank), support)
        columns[f"{loss.spec}:in_domain"] = (
            (rank <= loss.params["n"]).numpy() if loss.name == "ce_top" else np.ones(len(rank), dtype=bool)
        )
        for metric in bound_metrics:
            gaps = bounds.gap(values, rank, metric)
            columns[f"{loss.spec}:gap_{metric}"] = gaps.mean(1).numpy()
            columns[f"{loss.spec}:coverage_{metric}"] = (gaps >= 0).double().mean(1).numpy()
            if loss.name in ("ssm", "sce"):
                alpha = loss.params.get("alpha", 1.0)
                sampler = loss.params["sampler"]
                if sampler in ("uniform", "shared"):
                    columns[f"{loss.spec}:x24_{metric}"] = bounds.bounding_probability(
                        rank, n_items, loss.params["k"], alpha, metric=metric, form="x24"
                    )
                columns[f"{loss.spec}:binomial_{metric}"] = bounds.bounding_probability(
                    rank, n_items, loss.params["k"], alpha, metric=metric, form="binomial", sampler=sampler
                )
    return pd.DataFrame(columns), chunk_draws


class _SharedPrefixTable:
    """One sorted prefix-sum table per chunk, shared by CE, CE-n and CE-η (each would sort again).

    The values equal the losses' own float64 path, which builds the same table.
    """

    def __init__(self, scores: Tensor, targets: Tensor, mask: Tensor | None) -> None:
        self.scores, self.targets = scores, targets
        self.keep = None if mask is None else (~mask).scatter(1, targets[:, None], True)
        self._table: tuple[Tensor, Tensor] | None = None

    def values(self, loss: Loss) -> Tensor:
        if self._table is None:
            diff, _ = functional.centred(self.scores, self.targets)
            self._table = functional.prefix_table(diff, self.keep)
        totals, peak = self._table
        if loss.name == "ce":
            return functional.log_prefix(totals, peak, None)
        if loss.name == "ce_top":
            return functional.log_prefix(totals, peak, torch.full_like(self.targets, loss.params["n"]))
        counts = functional.eta_counts(self.scores, self.targets, loss.params["eta"], self.keep)
        return functional.log_prefix(totals, peak, counts)


def _loss_draws(
    loss: Loss, scores: Tensor, targets: Tensor, mask: Tensor | None, generator: torch.Generator, draws: int
) -> Tensor:
    if not loss.is_sampled:
        return loss(scores, targets, exclude=mask, validate=False)[:, None]
    return torch.stack([loss(scores, targets, generator, exclude=mask, validate=False) for _ in range(draws)], dim=1)


def _summarise(
    per_user: pd.DataFrame,
    specs: Sequence[Loss],
    draws: dict[str, Tensor],
    ranks: Tensor,
    n_items: int,
    bound_metrics: Sequence[str],
) -> pd.DataFrame:
    rows = []
    for loss in specs:
        values = draws[loss.spec]
        in_domain = torch.from_numpy(per_user[f"{loss.spec}:in_domain"].to_numpy().copy())
        for metric in bound_metrics:
            tight = bounds.tightness(values, ranks, metric)
            cover = bounds.coverage(values, ranks, metric)
            gaps = bounds.gap(values, ranks, metric)
            violating = int(((gaps < 0).any(1) & in_domain).sum()) if loss.name in DETERMINISTIC_BOUNDS else None
            row = {
                "surrogate": loss.spec,
                "metric": metric,
                "sampled": loss.is_sampled,
                "users": tight.n_users,
                "draws": int(values.shape[1]),
                "mean_neg_log_metric": tight.mean_neg_log_metric,
                "mean_loss": tight.mean_loss,
                "mean_gap": tight.mean_gap,
                "median_gap": tight.median_gap,
                "relative_gap": tight.relative_gap,
                "coverage": cover.estimate,
                "coverage_se": cover.standard_error,
                "coverage_ci_low": cover.ci_low,
                "coverage_ci_high": cover.ci_high,
                "deterministic_violations": violating,
                "users_outside_bound_domain": int((~in_domain).sum()) if loss.name == "ce_top" else 0,
                "normaliser_support": float(per_user[f"{loss.spec}:support"].mean()),
            }
            for form in ("x24", "binomial"):
                column = f"{loss.spec}:{form}_{metric}"
                row[f"mean_{form}_bound"] = float(per_user[column].mean()) if column in per_user else math.nan
            rows.append(row)
    return pd.DataFrame(rows)


def _write_atomic(path: Path, write) -> Path:
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(descriptor)
    try:
        write(temporary)
        with open(temporary, "rb") as handle:
            os.fsync(handle.fileno())
        # mkstemp creates 0600 files; give the result the permissions of a normally created file.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temporary, 0o666 & ~umask)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path
