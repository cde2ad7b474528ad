"""``boundlab sweep``: train the runs of a parameter sweep, or show how far it got."""

from __future__ import annotations

import argparse

import pandas as pd

from boundlab.sweep import load_sweep, read_sweep, run_status, run_sweep


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``sweep`` subcommand."""
    parser = subparsers.add_parser(
        "sweep",
        help="train the runs of a sweep file one after another (finished runs are skipped, interrupted ones resumed)",
        description="Train every run of a sweep (a JSON file under experiments/sweeps, given by name or path) into "
        "its folder. Finished runs are skipped and interrupted ones resumed, so rerunning the same command "
        "continues an interrupted sweep. --status only prints each run's state and results.",
    )
    parser.add_argument("sweep", help="sweep name (experiments/sweeps/NAME.json) or path to a sweep file")
    parser.add_argument("--only", nargs="+", metavar="RUN", default=None, help="train only these runs")
    parser.add_argument("--status", action="store_true", help="print the state of every run and train nothing")
    parser.add_argument("--device", default=None, help="override the sweep's device (auto, cpu, cuda)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Train the sweep, or print its state with --status; then print the results table."""
    sweep = load_sweep(args.sweep)
    if not args.status:
        run_sweep(sweep, only=args.only, device=args.device)
    for entry in sweep.runs:
        print(f"{entry.name:<16} {run_status(sweep.run_folder(entry)):<12} {sweep.run_folder(entry)}")
    table = read_sweep(sweep)
    if len(table):
        columns = [c for c in table.columns if not c.startswith(("valid ", "test ")) or c in ("valid NDCG@10", "test NDCG@10", "test HR@10")]
        with pd.option_context("display.width", 200, "display.max_columns", None, "display.float_format", "{:.4f}".format):
            print()
            print(table[columns].to_string(index=False))
    return 0
