"""The main job: evaluate and audit the Beauty SASRec checkpoints and write a report.

A preset (JSON under ``experiments/presets``) lists training runs, each a set of
:class:`~boundlab.training.TrainConfig` fields, plus audit settings. :func:`reproduce` takes each
run's checkpoint (shipped under ``checkpoints/<name>``, or trained anew with ``train=True``),
computes its test metrics with full ranking, audits every surrogate on its scores, and writes
``report.md``, the tables and the figures to an output folder.
"""

from __future__ import annotations

import logging
import math
import os
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from boundlab import __version__
from boundlab._validation import read_named_json
from boundlab.audit import AuditResult, audit_checkpoint
from boundlab.evaluation import metrics_from_ranks
from boundlab.notebook import save_figure

logger = logging.getLogger(__name__)

REPOSITORY = Path(__file__).resolve().parent.parent
PRESET_DIR = REPOSITORY / "experiments" / "presets"
CHECKPOINT_DIR = REPOSITORY / "checkpoints"
REFERENCE_NUMBERS = REPOSITORY / "experiments" / "reference_numbers.csv"
METRIC_COLUMNS = ("NDCG@5", "NDCG@10", "HR@5", "HR@10", "MRR@5", "MRR@10")


@dataclass(frozen=True)
class RunSpec:
    """One training run of a preset: a name (its checkpoint folder) and TrainConfig fields."""

    name: str
    config: dict[str, Any]


@dataclass(frozen=True)
class Preset:
    """Runs to evaluate and audit, with the audit settings and the checkpoint folder."""

    name: str
    description: str
    runs: tuple[RunSpec, ...]
    surrogates: tuple[str, ...]
    draws: int = 20
    audit_limit_users: int | None = None
    checkpoints: str | None = None
    fidelity: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


def load_preset(name_or_path: str | os.PathLike[str]) -> Preset:
    """Read a preset by name (``experiments/presets/NAME.json``) or from a JSON file path."""
    path, raw = read_named_json(name_or_path, PRESET_DIR, "preset")
    missing = {"name", "runs", "surrogates"} - set(raw)
    if missing:
        raise ValueError(f"{path}: preset is missing the field(s) {', '.join(sorted(missing))}")
    runs = tuple(RunSpec(run["name"], dict(run["config"])) for run in raw["runs"])
    names = [run.name for run in runs]
    if len(set(names)) != len(names):
        raise ValueError(f"{path}: run names must be unique, got {names}")
    return Preset(
        name=raw["name"],
        description=raw.get("description", ""),
        runs=runs,
        surrogates=tuple(raw["surrogates"]),
        draws=int(raw.get("draws", 20)),
        audit_limit_users=raw.get("audit_limit_users"),
        checkpoints=raw.get("checkpoints"),
        fidelity=bool(raw.get("fidelity", False)),
        extra={key: value for key, value in raw.items() if key not in Preset.__dataclass_fields__},
    )


@dataclass
class ReproduceResult:
    """Per-run test metrics, audit summaries, fidelity checks and the written files."""

    metrics: pd.DataFrame
    audit_summary: pd.DataFrame
    fidelity: pd.DataFrame
    report: Path
    files: list[Path]
    violations: int
    missing: list[str] = field(default_factory=list)


def reproduce(
    preset: Preset | str = "default",
    *,
    out: str | os.PathLike[str] = "out/reproduce",
    train: bool = False,
    checkpoints: str | os.PathLike[str] | None = None,
    data_dir: str | os.PathLike[str] | None = None,
    device: str = "cpu",
    seed: int = 0,
) -> ReproduceResult:
    """Evaluate and audit every run of ``preset`` and write report, tables and figures to ``out``."""
    preset = load_preset(preset) if not isinstance(preset, Preset) else preset
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()

    folders = _checkpoint_folders(preset, out_dir, train, checkpoints, data_dir, device)
    missing = [run.name for run in preset.runs if run.name not in folders]
    for name in missing:
        logger.warning("no checkpoint for run %s; it is left out of the report", name)
    metric_rows, summaries, per_user = [], [], {}
    for run in preset.runs:
        if run.name not in folders:
            continue
        folder = folders[run.name]
        logger.info("auditing %s (%s)", run.name, folder)
        result = audit_checkpoint(
            folder, data_dir=data_dir, limit_users=preset.audit_limit_users, surrogates=list(preset.surrogates),
            draws=preset.draws, seed=seed, device=device,
        )
        result.save(out_dir / "audits" / run.name)
        ranks = torch.from_numpy(result.per_user["rank"].to_numpy().copy())
        values = metrics_from_ranks(ranks)
        meta = result.metadata
        metric_rows.append({
            "run": run.name, "model": (meta.get("model") or {}).get("name"), "loss": meta.get("loss"),
            "epoch": meta.get("checkpoint_epoch"), "users": len(ranks), **values,
        })
        summaries.append(result.summary.assign(run=run.name, trained_with=meta.get("loss")))
        per_user[run.name] = result

    metrics_table = pd.DataFrame(metric_rows)
    audit_summary = pd.concat(summaries, ignore_index=True)
    fidelity = fidelity_checks(metrics_table) if preset.fidelity else pd.DataFrame()
    violations = int(audit_summary["deterministic_violations"].fillna(0).sum())

    files = [
        _write_csv(metrics_table, out_dir / "test_metrics.csv"),
        _write_csv(audit_summary, out_dir / "audit_summary.csv"),
    ]
    if len(fidelity):
        files.append(_write_csv(fidelity, out_dir / "fidelity.csv"))
    files += write_figures(per_user, out_dir / "figures")
    report = write_report(preset, metrics_table, audit_summary, fidelity, per_user, out_dir, files,
                          seconds=time.perf_counter() - start, train=train, seed=seed, missing=missing)
    return ReproduceResult(metrics_table, audit_summary, fidelity, report, files, violations, missing)


def _checkpoint_folders(
    preset: Preset, out_dir: Path, train: bool, checkpoints: str | os.PathLike[str] | None,
    data_dir: str | os.PathLike[str] | None, device: str,
) -> dict[str, Path]:
    if train:
        from boundlab.training import TrainConfig
        from boundlab.training import train as train_run

        folders = {}
        for run in preset.runs:
            folder = out_dir / "runs" / run.name
            resume = (folder / "last.json").is_file()
            fields = {**run.config, "out": str(folder), "resume": resume, "device": device, "quiet": True}
            if data_dir is not None:
                fields["data_dir"] = str(data_dir)
            logger.info("training %s into %s%s", run.name, folder, " (resuming)" if resume else "")
            train_run(TrainConfig(**fields))
            folders[run.name] = folder
        return folders

    if checkpoints:
        base = Path(checkpoints)
    elif preset.checkpoints:
        base = REPOSITORY / preset.checkpoints
    else:
        base = CHECKPOINT_DIR
    folders = {run.name: base / run.name for run in preset.runs if (base / run.name / "best.json").is_file()}
    if not folders:
        raise FileNotFoundError(
            f"no checkpoint of preset {preset.name!r} found under {base} (expected "
            f"{', '.join(run.name for run in preset.runs)}); train them with "
            f"'boundlab reproduce --preset {preset.name} --train' or pass --checkpoints DIR"
        )
    return folders


def fidelity_checks(metrics_table: pd.DataFrame) -> pd.DataFrame:
    """Compare test NDCG@10 of the Beauty SASRec runs with the targets set from Xu et al. 2024 (arXiv 2408.14238)."""
    by_loss = {_loss_family(row["loss"]): row["NDCG@10"] for _, row in metrics_table.iterrows()}
    ce = by_loss.get("ce", math.nan)
    checks = [
        ("CE NDCG@10 >= 0.057 (paper 0.0597)", ce, 0.057, ce >= 0.057),
        ("SCE within 3% of CE", by_loss.get("sce", math.nan), 0.97 * ce, by_loss.get("sce", math.nan) >= 0.97 * ce),
        ("BCE <= 0.7 x CE", by_loss.get("bce", math.nan), 0.7 * ce, by_loss.get("bce", math.nan) <= 0.7 * ce),
        ("BPR <= 0.7 x CE", by_loss.get("bpr", math.nan), 0.7 * ce, by_loss.get("bpr", math.nan) <= 0.7 * ce),
        ("sampled softmax (K=500) below SCE", by_loss.get("ssm", math.nan), by_loss.get("sce", math.nan),
         by_loss.get("ssm", math.nan) < by_loss.get("sce", math.nan)),
    ]
    rows = []
    for name, value, threshold, met in checks:
        if math.isnan(value) or math.isnan(threshold):
            status = "no checkpoint"
        elif met:
            status = "met"
        else:
            status = "missed"
        rows.append({"check": name, "value": value, "threshold": threshold, "status": status})
    return pd.DataFrame(rows)


def _loss_family(spec: str | None) -> str:
    return (spec or "").split("(")[0]


def write_figures(results: dict[str, AuditResult], folder: Path) -> list[Path]:
    """Draw the gap distributions and the coverage-against-theorems figure (PNG and PDF)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    folder.mkdir(parents=True, exist_ok=True)
    sns.set_theme(style="whitegrid", context="paper")
    paths = []

    rows = []
    for run, result in results.items():
        for spec in result.metadata["surrogates"]:
            gaps = result.per_user[f"{spec}:gap_ndcg"].to_numpy()
            rows.append(pd.DataFrame({"run": run, "surrogate": short_spec(spec), "gap (nats)": gaps}))
    frame = pd.concat(rows, ignore_index=True)
    grid = sns.catplot(data=frame, x="gap (nats)", y="surrogate", col="run", col_wrap=min(3, len(results)), kind="box",
                       showfliers=False, height=2.6, aspect=1.4, sharex=False)
    for axis in grid.axes.flat:
        axis.axvline(0.0, color="black", lw=0.8)
    grid.figure.suptitle("Per-user gap to -log NDCG (negative: the bound fails)", y=1.02)
    paths += save_figure(grid.figure, folder / "gap_distributions")
    plt.close(grid.figure)

    rows = []
    for run, result in results.items():
        table = result.per_user
        bins = np.unique(np.geomspace(1, max(2, table["rank"].max()), 12).astype(int))
        labels = pd.cut(table["rank"], bins=np.append(bins[:-1] - 0.5, bins[-1] + 0.5), labels=bins[1:])
        for spec in result.metadata["surrogates"]:
            if f"{spec}:binomial_ndcg" not in table:
                continue
            for source, column in (("measured", f"{spec}:coverage_ndcg"), ("binomial bound", f"{spec}:binomial_ndcg"),
                                   ("x24 bound", f"{spec}:x24_ndcg")):
                if column in table:
                    grouped = table[column].groupby(labels, observed=True).mean()
                    rows.append(pd.DataFrame({"run": run, "surrogate": short_spec(spec), "source": source,
                                              "rank (bin upper edge)": grouped.index.astype(int), "coverage": grouped.to_numpy()}))
    if rows:
        frame = pd.concat(rows, ignore_index=True)
        grid = sns.relplot(data=frame, x="rank (bin upper edge)", y="coverage", hue="source", style="surrogate",
                           col="run", col_wrap=min(3, len(results)), kind="line", markers=True, height=2.6, aspect=1.4)
        grid.set(xscale="log", ylim=(-0.02, 1.02))
        grid.figure.suptitle("Coverage of -log NDCG by sampled losses: measured vs. theorems", y=1.02)
        paths += save_figure(grid.figure, folder / "coverage_vs_theorems")
        plt.close(grid.figure)
    return paths


def short_spec(spec: str) -> str:
    """Drop the sampler from a loss spec for labels: ``sce(alpha=100,k=500,sampler=uniform)`` -> ``sce(alpha=100,k=500)``."""
    return re.sub(r",?sampler=[^,)]*", "", spec).replace("()", "")


def _write_csv(frame: pd.DataFrame, path: Path) -> Path:
    temporary = path.with_name(f".{path.name}.tmp")
    frame.to_csv(temporary, index=False)
    os.replace(temporary, path)
    return path


def write_report(
    preset: Preset, metrics_table: pd.DataFrame, audit_summary: pd.DataFrame, fidelity: pd.DataFrame,
    results: dict[str, AuditResult], out_dir: Path, files: Sequence[Path], *, seconds: float, train: bool, seed: int,
    missing: Sequence[str] = (),
) -> Path:
    """Write ``report.md``: test metrics beside the published numbers, audit summaries, fidelity, figures."""
    lines = [f"# boundlab reproduce: preset `{preset.name}`", ""]

    if preset.description:
        lines += [preset.description, ""]
    lines += [
        f"boundlab {__version__}; checkpoints {'trained in this run' if train else 'shipped with the repository'}; "
        f"audit seed {seed}, {preset.draws} draws per sampled loss; wall time {seconds:.1f} s.",
        "Ranks are pessimistic (ties count against the target) over the full catalogue; the user's previously seen "
        "items are excluded unless the checkpoint records another history policy.",
        "",
    ]

    if missing:
        lines += [f"**Not included:** no checkpoint was found for {', '.join(f'`{name}`' for name in missing)}; "
                  f"train them with `boundlab reproduce --preset {preset.name} --train`.", ""]
    lines += [
        "## Test metrics",
        "",
        _markdown(metrics_table[["run", "loss", "epoch", "users", *METRIC_COLUMNS]]),
        "",
    ]

    reference = _reference_table(metrics_table)
    if reference is not None:
        lines += ["### Beside the published numbers", "", _markdown(reference), "",
                  "Paper rows: SASRec and GRU4Rec means of five seeds; LLM rows: single runs, both as reported by "
                  "Xu et al. 2024 (arXiv 2408.14238) and Xu et al. 2024 (arXiv 2402.06216).", ""]
    if len(fidelity):
        lines += ["## Fidelity targets", "", _markdown(fidelity), ""]
    lines += ["## Audit summary", "",
              "gap = loss - (-log metric) in nats; relative gap = sum of gaps / sum of losses; coverage = share of "
              "(user, draw) pairs with gap >= 0, with its standard error over users; x24 and binomial are the mean "
              "bounding probabilities of the theorems. Deterministic bounds (CE, CE-eta) must show 0 violations.", ""]
    columns = ["surrogate", "metric", "mean_loss", "mean_gap", "relative_gap", "coverage", "coverage_se",
               "mean_x24_bound", "mean_binomial_bound", "deterministic_violations", "normaliser_support"]
    for run, frame in audit_summary.groupby("run", sort=False):
        lines += [f"### {run} (trained with `{frame['trained_with'].iloc[0]}`)", "", _markdown(frame[columns]), ""]
    lines += ["## Files", ""] + [f"- `{path.relative_to(out_dir)}`" for path in files] + [""]
    report = out_dir / "report.md"
    temporary = report.with_name(".report.md.tmp")
    temporary.write_text("\n".join(lines))
    os.replace(temporary, report)
    return report


def _reference_table(metrics_table: pd.DataFrame) -> pd.DataFrame | None:
    if not REFERENCE_NUMBERS.is_file():
        return None
    reference = pd.read_csv(REFERENCE_NUMBERS)
    ours = metrics_table.assign(source="boundlab", model="SASRec", loss=metrics_table["loss"].map(_loss_family))
    ours = ours[["source", "model", "loss", *METRIC_COLUMNS]]
    theirs = reference[(reference["dataset"] == "beauty")][["source", "model", "loss", *METRIC_COLUMNS]]
    return pd.concat([ours, theirs], ignore_index=True)


def _markdown(frame: pd.DataFrame) -> str:
    header = "| " + " | ".join(map(str, frame.columns)) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    body = ["| " + " | ".join(_cell(value) for value in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *body])


def _cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)
