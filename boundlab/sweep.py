"""Parameter sweeps: a list of training runs that share a base configuration.

A sweep file (JSON, under ``experiments/sweeps``) holds::

    {"name": "sce-k", "description": "...", "out": "experiments/sweeps/sce-k",
     "base": {TrainConfig fields shared by every run},
     "runs": [{"name": "k1", "config": {fields that differ}, "values": {"K": 1}}, ...]}

:func:`run_sweep` trains the runs one after another into ``out/<run name>``: a finished run (its
log has an ``end`` line) is skipped, an interrupted one is resumed, so an interrupted sweep
continues where it stopped. :func:`read_sweep` collects every run's best validation and test
metrics into one table, with the sweep values as columns.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from boundlab._validation import read_named_json
from boundlab.training.runlog import read_log

logger = logging.getLogger(__name__)

REPOSITORY = Path(__file__).resolve().parent.parent
SWEEP_DIR = REPOSITORY / "experiments" / "sweeps"


@dataclass(frozen=True)
class SweepRun:
    """One run of a sweep: its folder name, its TrainConfig fields and the values it stands for."""

    name: str
    config: dict[str, Any]
    values: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Sweep:
    """A named list of runs with a shared base configuration and an output folder."""

    name: str
    description: str
    out: Path
    base: dict[str, Any]
    runs: tuple[SweepRun, ...]
    path: Path | None = None

    def run_folder(self, run: SweepRun | str) -> Path:
        """Folder of ``run`` (a SweepRun or its name)."""
        return self.out / (run if isinstance(run, str) else run.name)

    def config(self, run: SweepRun) -> dict[str, Any]:
        """TrainConfig fields of ``run``: the base, then the run's own fields, then its folder."""
        return {**self.base, **run.config, "out": str(self.run_folder(run))}


def load_sweep(name_or_path: str | os.PathLike[str]) -> Sweep:
    """Load ``experiments/sweeps/<name>.json`` or a sweep file by path; errors name the file and field."""
    path, raw = read_named_json(name_or_path, SWEEP_DIR, "sweep")
    for key in ("name", "base", "runs"):
        if key not in raw:
            raise ValueError(f"{path}: missing field {key!r}; a sweep needs name, base and runs")
    if not isinstance(raw["runs"], list) or not raw["runs"]:
        raise ValueError(f"{path}: 'runs' must be a non-empty list")
    runs = []
    for index, entry in enumerate(raw["runs"]):
        if not isinstance(entry, dict) or "name" not in entry:
            raise ValueError(f"{path}: runs[{index}] must be an object with a 'name'")
        runs.append(SweepRun(str(entry["name"]), dict(entry.get("config", {})), dict(entry.get("values", {}))))
    names = [run.name for run in runs]
    if len(set(names)) != len(names):
        raise ValueError(f"{path}: run names repeat: {names}")
    out = Path(raw.get("out") or f"experiments/sweeps/{raw['name']}")
    if not out.is_absolute():
        out = REPOSITORY / out
    sweep = Sweep(str(raw["name"]), str(raw.get("description", "")), out, dict(raw["base"]), tuple(runs), path)
    # Build every configuration up front, so that a bad field fails before hours of training.
    from boundlab.training import TrainConfig

    for run in sweep.runs:
        try:
            TrainConfig(**sweep.config(run))
        except TypeError as error:
            raise ValueError(f"{path}: run {run.name!r}: {error}") from None
        except ValueError as error:
            raise ValueError(f"{path}: run {run.name!r}: {error}") from None
    return sweep


def run_status(folder: str | os.PathLike[str]) -> str:
    """``"finished"`` (log has an ``end`` line), ``"interrupted"`` (resumable) or ``"new"``."""
    folder = Path(folder)
    if (folder / "log.jsonl").is_file() and any(r.get("event") == "end" for r in read_log(folder / "log.jsonl")):
        return "finished"
    if (folder / "last.json").is_file():
        return "interrupted"
    return "new"


def run_sweep(sweep: Sweep, *, only: list[str] | None = None, device: str | None = None, quiet: bool = True) -> list[Path]:
    """Train every run of ``sweep`` not yet finished (resuming interrupted ones); return the folders."""
    from boundlab.training import TrainConfig, train

    selected = [run for run in sweep.runs if only is None or run.name in only]
    if only is not None:
        unknown = sorted(set(only) - {run.name for run in sweep.runs})
        if unknown:
            raise ValueError(f"sweep {sweep.name!r} has no run {unknown}; runs: {', '.join(r.name for r in sweep.runs)}")
    folders = []
    for run in selected:
        folder = sweep.run_folder(run)
        status = run_status(folder)
        folders.append(folder)
        if status == "finished":
            logger.info("%s: finished earlier, skipped", folder)
            continue
        fields = {**sweep.config(run), "resume": status == "interrupted", "quiet": quiet}
        if device is not None:
            fields["device"] = device
        logger.info("%s: %s", folder, "resuming" if status == "interrupted" else "training")
        train(TrainConfig(**fields))
    return folders


def run_summary(folder: str | os.PathLike[str]) -> dict[str, Any]:
    """Best validation and test metrics, epochs and training time of one run folder."""
    folder = Path(folder)
    records = read_log(folder / "log.jsonl")
    start = next((r for r in records if r.get("event") == "start"), {})
    end = next((r for r in reversed(records) if r.get("event") == "end"), None)
    epochs = [r for r in records if r.get("event") == "epoch"]
    summary: dict[str, Any] = {
        "run": folder.name,
        "loss_spec": (start.get("config") or {}).get("loss"),
        "status": _status(end, epochs),
        "epochs": max((r["epoch"] for r in epochs), default=0),
        "best_epoch": end.get("best_epoch") if end else None,
        "training_seconds": end.get("training_seconds") if end else sum(r.get("seconds", 0.0) for r in epochs),
    }
    if end:
        for split in ("valid", "test"):
            for name, value in (end.get(split) or {}).items():
                if isinstance(value, int | float) and name != "n_users":
                    summary[f"{split} {name}"] = value
    return summary


def _status(end: dict[str, Any] | None, epochs: list[dict[str, Any]]) -> str:
    if end:
        return "finished"
    if epochs:
        return "interrupted"
    return "new"


def read_sweep(sweep: Sweep | str | os.PathLike[str]) -> pd.DataFrame:
    """Tabulate every run that has a log: sweep values, status, epochs, best validation and test metrics."""
    if not isinstance(sweep, Sweep):
        sweep = load_sweep(sweep)
    rows = []
    for run in sweep.runs:
        folder = sweep.run_folder(run)
        if not (folder / "log.jsonl").is_file():
            continue
        rows.append({"sweep": sweep.name, **run.values, **run_summary(folder)})
    values = list(dict.fromkeys(key for run in sweep.runs for key in run.values))
    columns = ["sweep", *values, "run", "loss_spec", "status", "epochs", "best_epoch", "training_seconds"]
    return pd.DataFrame(rows).reindex(columns=list(dict.fromkeys([*columns, *(k for r in rows for k in r)])))


def validation_curves(sweep: Sweep | str | os.PathLike[str]) -> pd.DataFrame:
    """Validation metrics per evaluated epoch of every run, long format (run, epoch, metric, value)."""
    if not isinstance(sweep, Sweep):
        sweep = load_sweep(sweep)
    rows = []
    for run in sweep.runs:
        path = sweep.run_folder(run) / "log.jsonl"
        if not path.is_file():
            continue
        latest: dict[int, dict[str, float]] = {}
        for record in read_log(path):
            if record.get("event") == "epoch" and record.get("valid"):
                latest[record["epoch"]] = record["valid"]
        for epoch, metrics in sorted(latest.items()):
            rows += [{"run": run.name, **run.values, "epoch": epoch, "metric": k, "value": v} for k, v in metrics.items()]
    return pd.DataFrame(rows)
