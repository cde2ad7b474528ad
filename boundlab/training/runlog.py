"""Append-only JSON-lines log of a training run (``log.jsonl`` in the run folder)."""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd

LOG_FILE = "log.jsonl"

# Leading columns of read_audits; the remaining summary fields follow in the order logged.
AUDIT_COLUMNS = (
    "epoch",
    "surrogate",
    "metric",
    "mean_gap",
    "relative_gap",
    "coverage",
    "coverage_ci_low",
    "coverage_ci_high",
    "mean_loss",
    "mean_neg_log_metric",
    "deterministic_violations",
)


class RunLog:
    """One JSON object per line, each with ``event`` and a Unix ``time``; flushed after every line.

    Events written by training: ``start``, ``resume``, ``epoch`` (train loss, seconds and, on
    evaluation epochs, validation metrics), ``best``, ``audit`` (see
    :mod:`boundlab.training.audits`), ``early_stop``, ``interrupted`` and ``end``. After a
    ``resume`` line, lines for an epoch that was logged before it replace the earlier ones.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        """Open ``path`` for appending, creating its folder if needed."""
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._handle = self.path.open("a", encoding="utf-8")

    def write(self, event: str, **fields: Any) -> dict[str, Any]:
        """Append one line for ``event`` with ``fields`` and return the record written."""
        record = {"event": event, "time": round(time.time(), 3), **fields}
        self._handle.write(json.dumps(record, allow_nan=True) + "\n")
        self._handle.flush()
        return record

    def close(self) -> None:
        """Close the file; later writes raise ValueError."""
        self._handle.close()

    def __enter__(self) -> RunLog:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def read_log(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Return the records of a ``log.jsonl`` file in order, skipping a final incomplete line."""
    return [record for _, record in _numbered_records(Path(path))]


def read_audits(run_dir: str | os.PathLike[str]) -> pd.DataFrame:
    """Return the ``audit`` lines of a run's log as one row per epoch, surrogate and bound metric.

    ``run_dir`` is a run folder or its ``log.jsonl``. The columns start with
    :data:`AUDIT_COLUMNS`. The other fields of the audit summary follow (``users``, ``draws``,
    ``median_gap``, ``coverage_se``, ``mean_x24_bound`` and so on), with NaN where the log has
    null. The last columns are ``split``, the audit's ``seconds`` and the mean metrics of the
    audited users, named ``valid_NDCG@10`` and so on. Only lines after the log's last
    ``start`` line count, and a later line for the same epoch replaces an earlier one. Raises
    FileNotFoundError without a log and ValueError, naming the file and line, for a malformed line.
    """
    path = Path(run_dir)
    if path.suffix != ".jsonl":
        path = path / LOG_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found; pass a run folder written by boundlab train or its {LOG_FILE}")

    by_epoch: dict[int, list[dict[str, Any]]] = {}
    for number, record in _numbered_records(path):
        if record.get("event") == "start":
            by_epoch.clear()
        elif record.get("event") == "audit":
            epoch, rows = _audit_rows(record, f"{path}:{number}")
            by_epoch[epoch] = rows

    rows = [row for epoch in sorted(by_epoch) for row in by_epoch[epoch]]
    frame = pd.DataFrame(rows)
    if frame.empty:
        return pd.DataFrame(columns=list(AUDIT_COLUMNS))
    frame["deterministic_violations"] = frame["deterministic_violations"].astype("Int64")
    leading = list(AUDIT_COLUMNS)
    return frame[leading + [column for column in frame.columns if column not in leading]]


def _audit_rows(record: dict[str, Any], where: str) -> tuple[int, list[dict[str, Any]]]:
    """Check one audit record and flatten its summary into rows; errors start with ``where``."""
    epoch = record.get("epoch")
    if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
        raise ValueError(f"{where}: audit line has no valid epoch (got {epoch!r}); the log is malformed")
    summary = record.get("summary")
    if not isinstance(summary, list) or not summary:
        raise ValueError(f"{where}: audit line has no summary rows (got {summary!r}); the log is malformed")
    metrics = record.get("metrics") or {}
    if not isinstance(metrics, dict):
        raise ValueError(f"{where}: audit line has metrics {metrics!r}, expected an object; the log is malformed")

    rows = []
    for position, entry in enumerate(summary):
        missing = [key for key in AUDIT_COLUMNS[1:] if not isinstance(entry, dict) or key not in entry]
        if missing:
            raise ValueError(
                f"{where}: summary row {position} lacks {', '.join(missing)}; the log is malformed"
            )
        row: dict[str, Any] = {"epoch": epoch}
        for key, value in entry.items():
            # deterministic_violations is null for sampled surrogates and becomes <NA> below.
            row[key] = math.nan if value is None and key != "deterministic_violations" else value
        row["split"] = record.get("split")
        row["seconds"] = record.get("seconds")
        row.update({f"valid_{name}": value for name, value in metrics.items()})
        rows.append(row)
    return epoch, rows


def _numbered_records(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line number, record)`` for each non-empty line, skipping a final incomplete line."""
    lines = path.read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            # A crash can cut the last line short; a bad line elsewhere is real corruption.
            if number == len(lines):
                return
            raise ValueError(f"{path}:{number} is not valid JSON; the log is corrupt") from None
        if not isinstance(record, dict):
            raise ValueError(f"{path}:{number} is {type(record).__name__}, expected a JSON object; the log is corrupt")
        yield number, record
