"""``boundlab verify``: run the symbolic proofs and the randomized numerical checks of every bound."""

from __future__ import annotations

import argparse
import time

from boundlab import symbolic
from boundlab.verification import run_numeric_checks


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``verify`` subcommand."""
    parser = subparsers.add_parser(
        "verify",
        help="check every bound statement symbolically and on random score vectors",
        description="Prove the bound statements with sympy or exact rational grids, then test them on random "
        "score vectors (heavy ties, Gaussian, logits up to ±1e4; float32 and float64). Exit status 1 on any failure.",
    )
    parser.add_argument("--vectors", type=int, default=120_000,
                        help="number of random score vectors, rounded up to a multiple of 6 regimes (default 120000)")
    parser.add_argument("--items", type=int, default=64, help="items per score vector (default 64)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--skip-symbolic", action="store_true", help="run only the numerical checks")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Print one line per statement with PASS/FAIL and counts; return 1 if any failed."""
    if args.vectors < 1 or args.items < 2:
        raise ValueError(f"--vectors must be >= 1 and --items >= 2, got {args.vectors} and {args.items}")
    failures = 0
    if not args.skip_symbolic:
        start = time.perf_counter()
        print("symbolic and exact-grid checks")
        for result in symbolic.check_all():
            failures += not result.passed
            status = "PASS" if result.passed else "FAIL"
            print(f"  {status}  {result.name:<22} {result.method:<10} {result.n_cases:>7} cases  {result.detail}")
        print(f"  ({time.perf_counter() - start:.1f} s)")

    start = time.perf_counter()
    checks = run_numeric_checks(args.vectors, args.items, seed=args.seed)
    print(f"numerical checks: {checks[0].tested} score vectors of {args.items} items, seed {args.seed}, losses in float64")
    for check in checks:
        failures += not check.passed
        status = "PASS" if check.passed else "FAIL"
        print(
            f"  {status}  {check.name:<18} {check.tested:>7} tested {check.failed:>5} failed  "
            f"min slack {check.worst:.3g}  {check.statement}"
        )
    print(f"  ({time.perf_counter() - start:.1f} s)")
    print("all checks passed" if failures == 0 else f"{failures} check(s) FAILED")
    return 1 if failures else 0
