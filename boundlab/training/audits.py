"""Audits during training: how tightly each surrogate bounds −log NDCG and −log RR as a model learns.

With ``audit_every`` E > 0, training audits the model before the first epoch (epoch 0), after
every E-th epoch and after the last epoch, including an epoch that stops training early. Each
audit scores the first ``audit_users`` users of the validation split (the same users every time)
over the full catalogue with the run's history policy, runs :func:`boundlab.audit.audit_chunks`
and appends one ``audit`` line to ``log.jsonl``::

    {"event": "audit", "epoch": 2, "split": "valid", "users": 1000, "draws": 5, "seed": ...,
     "seconds": 4.1, "metrics": {"NDCG@10": ...}, "summary": [{"surrogate": "ce", ...}, ...]}

``summary`` contains the rows of the audit summary as objects, with null for NaN, and
``metrics`` the mean ranking metrics of the audited users. Sampled surrogates draw their negatives from
generators seeded by :func:`audit_seed` (the run's seed and the epoch). The audit never touches
the training generators or the global RNG and runs in eval mode, so it leaves the trained
weights unchanged. :func:`boundlab.training.runlog.read_audits` reads the lines back.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from boundlab.audit import ScoreChunk, audit_chunks
from boundlab.evaluation import EvaluationInputs, metrics_from_ranks, score_users
from boundlab.training.config import TrainConfig
from boundlab.training.runlog import read_log

AUDIT_EVENT = "audit"
AUDIT_SPLIT = "valid"


def audit_due(config: TrainConfig, epoch: int, *, last: bool) -> bool:
    """Return whether ``epoch`` gets an audit. ``last`` marks the final epoch of training."""
    if config.audit_every == 0:
        return False
    return epoch == 0 or epoch % config.audit_every == 0 or last


def audit_seed(seed: int, epoch: int) -> int:
    """Return the audit seed of ``epoch``, mixed from the run's seed and the epoch by SeedSequence.

    The training generators come from ``SeedSequence(seed)`` alone, so the audit draws form a
    separate stream, and each epoch gets its own.
    """
    return int(np.random.SeedSequence([seed, epoch]).generate_state(1, dtype=np.uint32)[0])


def audit_model(model: nn.Module, valid_inputs: EvaluationInputs, config: TrainConfig, epoch: int) -> dict[str, Any]:
    """Audit ``model`` on the first ``config.audit_users`` validation users and return the log fields.

    A split with fewer users than ``audit_users`` is audited in full, and ``users`` records the
    number audited. The model's train/eval mode is restored afterwards.
    """
    started = time.perf_counter()
    n_users = min(config.audit_users, len(valid_inputs))
    seed = audit_seed(config.seed, epoch)
    chunks = (
        ScoreChunk(chunk.users, chunk.scores, chunk.targets, chunk.exclude)
        for chunk in score_users(
            model, valid_inputs, batch_size=config.eval_batch_size, users=slice(0, n_users)
        )
    )
    result = audit_chunks(
        chunks,
        valid_inputs.n_items,
        surrogates=config.audit_surrogates,
        draws=config.audit_draws,
        seed=seed,
    )
    ranks = torch.from_numpy(result.per_user["rank"].to_numpy().copy())
    return {
        "epoch": epoch,
        "split": AUDIT_SPLIT,
        "users": n_users,
        "draws": config.audit_draws,
        "seed": seed,
        "seconds": round(time.perf_counter() - started, 3),
        "metrics": metrics_from_ranks(ranks),
        "summary": summary_records(result.summary),
    }


def summary_records(summary: pd.DataFrame) -> list[dict[str, Any]]:
    """Return the rows of an audit summary as JSON-ready dicts, with None in place of NaN."""
    records = []
    for row in summary.to_dict("records"):
        record = {}
        for key, value in row.items():
            if isinstance(value, np.generic):
                value = value.item()
            if isinstance(value, float) and math.isnan(value):
                value = None
            # pandas stores this count as float because sampled surrogates have none.
            if key == "deterministic_violations" and value is not None:
                value = int(value)
            record[key] = value
        records.append(record)
    return records


def logged_audit_epochs(log_path: Path) -> set[int]:
    """Return the epochs that already have an audit line after the log's last ``start`` line."""
    epochs: set[int] = set()
    if not log_path.is_file():
        return epochs
    for record in read_log(log_path):
        if record.get("event") == "start":
            epochs.clear()
        elif record.get("event") == AUDIT_EVENT:
            epochs.add(record.get("epoch"))
    return epochs
