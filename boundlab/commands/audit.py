"""``boundlab audit CKPT``: per-user gaps, coverage and bounding probabilities of surrogate losses."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pandas as pd

from boundlab.audit import BOUND_METRICS, DEFAULT_SURROGATES, AuditResult, audit_checkpoint


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``audit`` subcommand."""
    parser = subparsers.add_parser(
        "audit",
        help="measure how tightly each surrogate loss bounds -log NDCG and -log RR on a checkpoint",
        description="Rank every test user of a trained checkpoint over the full catalogue, evaluate each surrogate "
        "loss on the same scores (float64), and write a per-user table, a summary and the settings used.",
    )
    parser.add_argument("checkpoint", help="run folder or checkpoint file written by boundlab train")
    parser.add_argument(
        "--surrogates", nargs="+", default=list(DEFAULT_SURROGATES), metavar="SPEC",
        help=f"loss specs to audit (default: {' '.join(DEFAULT_SURROGATES)})",
    )
    parser.add_argument("--draws", type=int, default=20, help="seeded draws per user for sampled losses (default 20)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the negative draws (default 0)")
    parser.add_argument("--metrics", nargs="+", default=list(BOUND_METRICS), choices=BOUND_METRICS,
                        help="metrics m whose -log m the losses are compared with (default: ndcg rr)")
    parser.add_argument("--k", type=int, default=10, help="cut-off of NDCG@k, HR@k and RR@k in the table (default 10)")
    parser.add_argument("--split", choices=("test", "valid"), default="test", help="evaluation split (default test)")
    parser.add_argument("--history", choices=("exclude-seen", "none"), default=None,
                        help="history policy (default: the checkpoint's)")
    parser.add_argument("--limit-users", type=int, default=None, help="audit only the first N users")
    parser.add_argument("--data-dir", default=None, help="folder with the dataset files")
    parser.add_argument("--out", default=None, help="output folder (default: CHECKPOINT_DIR/audit)")
    parser.set_defaults(func=run)


def print_summary(result: AuditResult) -> None:
    """Print the per-surrogate summary table and any deterministic-bound violation."""
    columns = ["surrogate", "metric", "mean_neg_log_metric", "mean_loss", "mean_gap", "relative_gap",
               "coverage", "coverage_se", "mean_x24_bound", "mean_binomial_bound", "deterministic_violations"]
    with pd.option_context("display.width", 200, "display.max_columns", None, "display.float_format", "{:.4f}".format):
        print(result.summary[columns].to_string(index=False))
    violations = result.violations()
    if len(violations):
        print(f"{len(violations)} VIOLATION(S) of a deterministic bound:")
        print(violations.to_string(index=False))
    else:
        print("deterministic bounds (CE, CE-eta, CE-n for n >= rank): 0 violations")


def run(args: argparse.Namespace) -> int:
    """Audit the checkpoint, save the tables and print the summary; return 1 on a violation."""
    start = time.perf_counter()
    result = audit_checkpoint(
        args.checkpoint, split=args.split, data_dir=args.data_dir, history=args.history,
        limit_users=args.limit_users, surrogates=args.surrogates, draws=args.draws, seed=args.seed,
        k=args.k, bound_metrics=args.metrics,
    )
    folder = Path(args.out) if args.out else _default_out(Path(args.checkpoint))
    paths = result.save(folder)
    print_summary(result)
    print(f"{result.metadata['n_users']} users, history policy {result.metadata['history_policy']}, "
          f"{args.draws} draws per sampled loss, seed {args.seed}; {time.perf_counter() - start:.1f} s")
    for name, path in paths.items():
        print(f"{name}: {path}")
    return 1 if len(result.violations()) else 0


def _default_out(checkpoint: Path) -> Path:
    folder = checkpoint if checkpoint.is_dir() else checkpoint.parent
    return folder / "audit"
