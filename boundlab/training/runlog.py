"""Append-only JSON-lines log of a training run (``log.jsonl`` in the run folder)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any


class RunLog:
    """One JSON object per line, each with ``event`` and a Unix ``time``; flushed after every line.

    Events written by training: ``start``, ``resume``, ``epoch`` (train loss, seconds and, on
    evaluation epochs, validation metrics), ``best``, ``early_stop``, ``interrupted`` and ``end``.
    After a ``resume`` line, lines for an epoch that was logged before it replace the earlier ones.
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
    records = []
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            # A crash can cut the last line short; a bad line elsewhere is real corruption.
            if number == len(lines):
                break
            raise ValueError(f"{path}:{number} is not valid JSON; the log is corrupt") from None
    return records
