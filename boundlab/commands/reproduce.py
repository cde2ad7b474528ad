"""``boundlab reproduce``: evaluate and audit the Beauty SASRec checkpoints and write a report."""

from __future__ import annotations

import argparse
import time

import pandas as pd

from boundlab.reproduce import load_preset, reproduce


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``reproduce`` subcommand."""
    parser = subparsers.add_parser(
        "reproduce",
        help="evaluate and audit a preset's checkpoints (from checkpoints/, or retrained) and write a report",
        description="Evaluate every run of a preset with full ranking, audit each surrogate loss on its scores, and "
        "write report.md, CSV tables and figures to --out. Presets live in experiments/presets.",
    )
    parser.add_argument("--preset", default="default", help="preset name or JSON path (default: default; 'smoke' for a quick check)")
    parser.add_argument("--train", action="store_true", help="train the preset's runs into OUT/runs instead of using shipped checkpoints")
    parser.add_argument("--checkpoints", default=None, help="folder with one checkpoint folder per run (default: the preset's)")
    parser.add_argument("--out", default="out/reproduce", help="output folder (default: out/reproduce)")
    parser.add_argument("--data-dir", default=None, help="folder with the dataset files")
    parser.add_argument("--device", default="cpu", help="device for training and scoring (default: cpu)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the audit's negative draws (default 0)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the preset and print the metrics, the audit summary and the report path."""
    start = time.perf_counter()
    preset = load_preset(args.preset)
    result = reproduce(preset, out=args.out, train=args.train, checkpoints=args.checkpoints,
                       data_dir=args.data_dir, device=args.device, seed=args.seed)
    with pd.option_context("display.width", 220, "display.max_columns", None, "display.float_format", "{:.4f}".format):
        print(f"preset {preset.name}: test metrics (full ranking, pessimistic ties)")
        print(result.metrics.to_string(index=False))
        if len(result.fidelity):
            print("\nfidelity targets")
            print(result.fidelity.to_string(index=False))
        print("\naudit summary (gap to -log NDCG)")
        summary = result.audit_summary[result.audit_summary["metric"] == "ndcg"]
        columns = ["run", "surrogate", "mean_loss", "mean_gap", "relative_gap", "coverage", "coverage_se",
                   "mean_x24_bound", "mean_binomial_bound", "deterministic_violations"]
        print(summary[columns].to_string(index=False))
    if result.missing:
        print(f"\nleft out (no checkpoint): {', '.join(result.missing)}")
    print(f"\ndeterministic-bound violations: {result.violations}")
    print(f"report: {result.report}")
    print(f"done in {time.perf_counter() - start:.1f} s")
    return 1 if result.violations else 0
