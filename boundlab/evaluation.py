"""Full-ranking evaluation of a sequential recommender on a validation or test split.

Every user's held-out item is ranked against the whole catalogue with the pessimistic rank
r = |{v : s_v >= s_target}| (ties count against the target) from :func:`boundlab.ranking.target_ranks`.
Under the ``exclude-seen`` history policy, the items of the user's full input history are removed
from the ranking, except the target itself. Histories fed to the model keep only the most recent
``max_len`` items, left-padded with 0.

Reported metrics are means over users: ``HR@k``, ``NDCG@k``, ``MRR@k`` (the mean of RR@k) and
``MRR`` (the mean of RR over the full list), as defined in :mod:`boundlab.metrics`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor, nn

from boundlab import metrics
from boundlab.data import DEFAULT_HISTORY_POLICY, EvaluationSet, HistoryPolicy
from boundlab.ranking import target_ranks

logger = logging.getLogger(__name__)

# The order of this tuple is the column order of printed tables.
METRIC_NAMES = ("HR@1", "HR@5", "HR@10", "NDCG@5", "NDCG@10", "MRR@5", "MRR@10", "MRR")

DEFAULT_EVAL_BATCH_SIZE = 512


def left_pad(sequences: Sequence[np.ndarray], max_len: int) -> np.ndarray:
    """Return an int64 ``(len(sequences), max_len)`` array of the last ``max_len`` items of each row.

    Rows are left-padded with 0, so the most recent item is in the last column. An empty
    sequence gives a row of zeros.
    """
    if isinstance(max_len, bool) or not isinstance(max_len, int) or max_len < 1:
        raise ValueError(f"max_len must be a positive int, got {max_len!r}")
    n_rows = len(sequences)
    lengths = np.fromiter(map(len, sequences), dtype=np.int64, count=n_rows)
    if n_rows == 0 or lengths.sum() == 0:
        return np.zeros((n_rows, max_len), dtype=np.int64)

    flat = np.concatenate([np.asarray(sequence, dtype=np.int64) for sequence in sequences])
    ends = np.cumsum(lengths)

    # Column c of row u contains item number lengths[u] - max_len + c of that row, if it exists.
    offsets = lengths[:, None] - max_len + np.arange(max_len)[None, :]
    present = offsets >= 0
    source = np.where(present, ends[:, None] - lengths[:, None] + offsets, 0)
    return np.where(present, flat[source], 0)


@dataclass(frozen=True, eq=False)
class EvaluationInputs:
    """Model inputs and ranking targets of one split, built once and reused across evaluations.

    ``histories`` is ``(U, max_len)`` left-padded item ids, ``targets`` the ``(U,)`` 0-based score
    columns of the held-out items and ``exclude`` the ``(U, L)`` excluded columns padded with -1.
    """

    histories: Tensor
    targets: Tensor
    exclude: Tensor
    history: HistoryPolicy
    n_items: int

    def __len__(self) -> int:
        return int(self.targets.shape[0])


def prepare_evaluation(
    eval_set: EvaluationSet,
    max_len: int,
    history: HistoryPolicy | str = DEFAULT_HISTORY_POLICY,
) -> EvaluationInputs:
    """Pad the histories of ``eval_set`` to ``max_len`` and build its targets and exclusion index."""
    policy = _policy(history)
    histories = torch.from_numpy(left_pad(eval_set.histories, max_len))
    return EvaluationInputs(
        histories=histories,
        targets=eval_set.target_columns(),
        exclude=eval_set.exclusion_index(policy=policy),
        history=policy,
        n_items=eval_set.n_items,
    )


@dataclass(frozen=True, eq=False)
class ScoredChunk:
    """Scores of one chunk of users: file-order ``users``, ``(B, N)`` float32 ``scores`` on the CPU,
    ``(B,)`` target columns and the ``(B, L)`` exclusion index (-1 padded) of the history policy."""

    users: np.ndarray
    scores: Tensor
    targets: Tensor
    exclude: Tensor


def score_users(
    model: nn.Module,
    data: EvaluationSet | EvaluationInputs,
    *,
    history: HistoryPolicy | str = DEFAULT_HISTORY_POLICY,
    max_len: int | None = None,
    batch_size: int = DEFAULT_EVAL_BATCH_SIZE,
    device: torch.device | str | None = None,
    users: slice | Sequence[int] | np.ndarray | None = None,
) -> Iterator[ScoredChunk]:
    """Yield full-catalogue scores of the selected users, ``batch_size`` users at a time.

    ``model.score_all`` runs in eval mode without gradients, in float32, on ``device`` (default:
    the device of the model's parameters). ``history`` and ``max_len`` (default: the model's)
    apply only when ``data`` is an :class:`EvaluationSet`. The model's train/eval mode is restored
    when the generator finishes or is closed.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    if isinstance(data, EvaluationSet):
        data = prepare_evaluation(data, max_len or model.config.max_len, history)
    elif not isinstance(data, EvaluationInputs):
        raise TypeError(
            f"data must be an EvaluationSet or EvaluationInputs, got {type(data).__name__}"
        )
    if data.histories.shape[1] > model.config.max_len:
        raise ValueError(
            f"histories have {data.histories.shape[1]} columns but the model accepts at most "
            f"max_len={model.config.max_len}; prepare the inputs with the model's max_len"
        )
    if data.n_items != model.config.n_items:
        raise ValueError(
            f"the split has {data.n_items} items but the model scores {model.config.n_items}; "
            "evaluate the model on the dataset it was trained on"
        )

    positions = _select_positions(users, len(data))
    if device is None:
        device = next(model.parameters()).device
    device = torch.device(device)

    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(positions), batch_size):
            chunk = positions[start : start + batch_size]
            index = torch.from_numpy(chunk)
            with torch.no_grad():
                scores = model.score_all(data.histories[index].to(device)).float().cpu()
            yield ScoredChunk(chunk, scores, data.targets[index], data.exclude[index])
    finally:
        model.train(was_training)


@dataclass(frozen=True)
class EvaluationResult:
    """Mean metrics of one evaluation, the number of users ranked and the history policy used."""

    metrics: dict[str, float]
    n_users: int
    history: str
    ranks: Tensor | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, object]:
        """Return a JSON-ready dict of the metrics, ``n_users`` and ``history`` (ranks left out)."""
        return {**self.metrics, "n_users": self.n_users, "history": self.history}


def evaluate(
    model: nn.Module,
    data: EvaluationSet | EvaluationInputs,
    *,
    history: HistoryPolicy | str = DEFAULT_HISTORY_POLICY,
    max_len: int | None = None,
    batch_size: int = DEFAULT_EVAL_BATCH_SIZE,
    device: torch.device | str | None = None,
    users: slice | Sequence[int] | np.ndarray | None = None,
    keep_ranks: bool = False,
) -> EvaluationResult:
    """Rank every selected user's target over the full catalogue and return the mean metrics.

    Ranks are pessimistic and computed by counting (see :func:`boundlab.ranking.target_ranks`).
    With ``keep_ranks`` the ``(U,)`` int64 ranks in user order are kept on the result.
    """
    parts = [
        target_ranks(chunk.scores, chunk.targets, exclude=chunk.exclude)
        for chunk in score_users(
            model,
            data,
            history=history,
            max_len=max_len,
            batch_size=batch_size,
            device=device,
            users=users,
        )
    ]
    if not parts:
        raise ValueError("no users selected for evaluation; pass a non-empty split or selection")
    ranks = torch.cat(parts)
    policy = data.history if isinstance(data, EvaluationInputs) else _policy(history)
    result = EvaluationResult(
        metrics=metrics_from_ranks(ranks),
        n_users=int(ranks.shape[0]),
        history=policy.value,
        ranks=ranks if keep_ranks else None,
    )
    logger.debug("evaluated %d users: %s", result.n_users, format_metrics(result.metrics))
    return result


def metrics_from_ranks(ranks: Tensor) -> dict[str, float]:
    """Return the mean of each metric in :data:`METRIC_NAMES` over 1-based ``ranks``."""
    return {
        "HR@1": float(metrics.hit_at(ranks, 1, reduction="mean")),
        "HR@5": float(metrics.hit_at(ranks, 5, reduction="mean")),
        "HR@10": float(metrics.hit_at(ranks, 10, reduction="mean")),
        "NDCG@5": float(metrics.ndcg_at(ranks, 5, reduction="mean")),
        "NDCG@10": float(metrics.ndcg_at(ranks, 10, reduction="mean")),
        "MRR@5": float(metrics.rr_at(ranks, 5, reduction="mean")),
        "MRR@10": float(metrics.rr_at(ranks, 10, reduction="mean")),
        "MRR": float(metrics.rr(ranks, reduction="mean")),
    }


def format_metrics(values: dict[str, float], names: Sequence[str] = METRIC_NAMES) -> str:
    """Return ``"NAME=value ..."`` with four decimals, for log lines."""
    return " ".join(f"{name}={values[name]:.4f}" for name in names if name in values)


def metrics_table(values: dict[str, float], names: Sequence[str] = METRIC_NAMES) -> str:
    """Return a two-line table: a header of metric names and a row of values with four decimals."""
    header = " ".join(f"{name:>8}" for name in names)
    row = " ".join(f"{values[name]:>8.4f}" for name in names)
    return f"{header}\n{row}"


def _policy(history: HistoryPolicy | str) -> HistoryPolicy:
    try:
        return HistoryPolicy(history)
    except ValueError:
        choices = ", ".join(repr(member.value) for member in HistoryPolicy)
        raise ValueError(f"unknown history policy {history!r}; choose one of {choices}") from None


def _select_positions(
    users: slice | Sequence[int] | np.ndarray | None, n_users: int
) -> np.ndarray:
    everyone = np.arange(n_users, dtype=np.int64)
    if users is None:
        return everyone
    if isinstance(users, slice):
        return everyone[users]
    positions = np.asarray(users, dtype=np.int64)
    if positions.ndim != 1:
        raise ValueError(f"users must be a 1-D sequence of positions, got shape {positions.shape}")
    if positions.size and (positions.min() < 0 or positions.max() >= n_users):
        raise ValueError(
            f"user positions must lie in 0..{n_users - 1}, got values in "
            f"{positions.min()}..{positions.max()}"
        )
    return positions
