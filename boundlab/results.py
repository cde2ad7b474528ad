"""Tables of trained checkpoints' test metrics beside the numbers reported in the papers.

``experiments/reference_numbers.csv`` keeps the reported numbers with their citations: the
traditional models of Xu et al. 2024 (arXiv 2408.14238; mean of five seeds) and the LLM-based
recommenders reported there and in Xu et al. 2024 (arXiv 2402.06216; single runs).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

REPOSITORY = Path(__file__).resolve().parent.parent
REFERENCE_NUMBERS = REPOSITORY / "experiments" / "reference_numbers.csv"
METRIC_COLUMNS = ("NDCG@5", "NDCG@10", "HR@5", "HR@10", "MRR@5", "MRR@10")
MODEL_NAMES = {"sasrec": "SASRec", "gru4rec": "GRU4Rec"}


def loss_family(spec: str | None) -> str:
    """``sce(alpha=100,k=500)`` -> ``sce``."""
    return (spec or "").split("(")[0]


def reference_numbers(dataset: str | None = None, path: str | os.PathLike[str] = REFERENCE_NUMBERS) -> pd.DataFrame:
    """Read the reported numbers (``source`` is ``paper`` or ``llm``), optionally for one dataset."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"reference numbers {path} not found; it ships with the repository")
    table = pd.read_csv(path)
    missing = {"source", "citation", "model", "loss", "dataset", *METRIC_COLUMNS} - set(table.columns)
    if missing:
        raise ValueError(f"{path}: missing columns {sorted(missing)}")
    if dataset is not None:
        table = table[table["dataset"] == dataset].reset_index(drop=True)
    return table


def checkpoint_results(metadata_files: Iterable[str | os.PathLike[str]] | None = None) -> pd.DataFrame:
    """Tabulate the test metrics of every checkpoint metadata file (``best.json``) that records them.

    By default: every ``checkpoints/*/best.json`` and every finished run under
    ``experiments/runs/*/best.json`` (a run shipped under ``checkpoints/`` is listed once).
    """
    if metadata_files is None:
        shipped = sorted((REPOSITORY / "checkpoints").glob("*/best.json"))
        names = {path.parent.name for path in shipped}
        runs = [p for p in sorted((REPOSITORY / "experiments" / "runs").glob("*/best.json")) if p.parent.name not in names]
        metadata_files = [*shipped, *runs]
    rows = []
    for path in map(Path, metadata_files):
        try:
            meta = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}:{error.lineno}: invalid JSON in checkpoint metadata") from None
        test = meta.get("test_metrics")
        if not test:
            continue
        model = (meta.get("model") or {}).get("name", "")
        rows.append({
            "source": "boundlab", "run": path.parent.name, "model": MODEL_NAMES.get(model, model),
            "loss": loss_family(meta.get("loss")), "loss_spec": meta.get("loss"),
            "dataset": (meta.get("dataset") or {}).get("name"),
            "limit_users": (meta.get("dataset") or {}).get("limit_users"), "seed": meta.get("seed"),
            "epoch": meta.get("epoch"), "users": test.get("n_users"),
            **{name: test.get(name) for name in METRIC_COLUMNS}, "path": str(path),
        })
    return pd.DataFrame(rows)


def comparison_table(dataset: str = "beauty", ours: pd.DataFrame | None = None) -> pd.DataFrame:
    """Our checkpoints' test metrics beside the reported numbers for ``dataset``.

    Only checkpoints trained on the whole dataset are included: a run on a slice of users is not
    comparable with the reported numbers.
    """
    ours = checkpoint_results() if ours is None else ours
    if len(ours):
        ours = ours[(ours["dataset"] == dataset) & ours["limit_users"].isna()]
    columns = ["source", "model", "loss", *METRIC_COLUMNS]
    theirs = reference_numbers(dataset)
    frames = [frame[columns] for frame in (ours, theirs) if len(frame)]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)
