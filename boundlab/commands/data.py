"""``boundlab data``: list, inspect, download and convert datasets."""

from __future__ import annotations

import argparse
import sys

from boundlab.data import (
    DATA_ENV_VAR,
    DEFAULT_HISTORY_POLICY,
    REGISTRY,
    DatasetError,
    DatasetSummary,
    DownloadError,
    data_dir_candidates,
    dataset_summary,
    fetch_dataset,
    leave_one_out,
    load_dataset,
    load_interactions_dataset,
    summarize_dataset,
)
from boundlab.data.fetch import DEFAULT_TIMEOUT_S
from boundlab.data.interactions import TABLE_FORMATS


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``data`` command and its ``show``, ``fetch`` and ``convert`` subcommands."""
    parser = subparsers.add_parser(
        "data",
        help="list, inspect, download and convert datasets",
        description=(
            "Without a subcommand, list every registered dataset: whether its file was found, "
            "whether its SHA-256 matches, and its size. Files are searched in --data-dir, else "
            f"${DATA_ENV_VAR}, ./data and the shared/data folder beside the repository."
        ),
    )
    _add_data_dir(parser, default=None)
    parser.set_defaults(func=run_list)
    actions = parser.add_subparsers(dest="data_action", metavar="ACTION")

    show = actions.add_parser(
        "show",
        help="print the size and leave-one-out split of one dataset",
        description="Load one dataset (a registered name or a file path) and print its statistics.",
    )
    show.add_argument(
        "dataset",
        metavar="NAME_OR_PATH",
        help="registered name or path to a one-user-per-line file",
    )
    _add_data_dir(show, default=argparse.SUPPRESS)
    show.add_argument(
        "--no-verify", action="store_true", help="skip the SHA-256 check of a registered dataset"
    )
    show.add_argument(
        "--limit-users", type=int, metavar="N", help="keep only the first N users in file order"
    )
    show.set_defaults(func=run_show)

    fetch = actions.add_parser(
        "fetch",
        help="download a registered dataset and verify its checksum",
        description=(
            "Download a registered dataset unless a copy with the right checksum exists. The file "
            f"goes to --data-dir, else ${DATA_ENV_VAR}, else ./data."
        ),
    )
    fetch.add_argument(
        "name", choices=sorted(REGISTRY), metavar="NAME", help=f"one of {', '.join(REGISTRY)}"
    )
    _add_data_dir(fetch, default=argparse.SUPPRESS)
    fetch.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT_S,
        metavar="SECONDS",
        help=f"network timeout in seconds (default {DEFAULT_TIMEOUT_S:g})",
    )
    fetch.set_defaults(func=run_fetch)

    convert = actions.add_parser(
        "convert",
        help="turn a raw interaction table into a one-user-per-line file",
        description=(
            "Read a CSV/TSV table with user, item and timestamp columns, or a MovieLens "
            "ratings.dat, keep its k-core, sort each user's items by time and write the "
            "sequences with 1-based contiguous ids."
        ),
    )
    convert.add_argument(
        "table", metavar="TABLE", help="raw interaction table (CSV, TSV or ratings.dat)"
    )
    convert.add_argument("output", metavar="OUTPUT", help="one-user-per-line file to write")
    convert.add_argument(
        "--k", type=int, default=5, help="minimum interactions per user and per item (default 5)"
    )
    convert.add_argument(
        "--format",
        dest="file_format",
        choices=TABLE_FORMATS,
        default="auto",
        help="table format (default: from suffix and first line)",
    )
    convert.add_argument(
        "--user-col", default="user", help="user column of a CSV/TSV (default 'user')"
    )
    convert.add_argument(
        "--item-col", default="item", help="item column of a CSV/TSV (default 'item')"
    )
    convert.add_argument(
        "--time-col",
        default="timestamp",
        help="timestamp column of a CSV/TSV (default 'timestamp')",
    )
    convert.set_defaults(func=run_convert)


def _add_data_dir(parser: argparse.ArgumentParser, default: object) -> None:
    # Subcommands use SUPPRESS so that `data --data-dir X fetch NAME` keeps X.
    parser.add_argument(
        "--data-dir",
        default=default,
        metavar="DIR",
        help=f"folder with the dataset files (default: ${DATA_ENV_VAR}, ./data, then shared/data)",
    )


def _format_count(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"


def format_summary_table(summaries: list[DatasetSummary]) -> str:
    """Render summaries as an aligned text table, one dataset per row."""
    header = (
        "dataset",
        "file",
        "checksum",
        "users",
        "items",
        "interactions",
        "mean length",
        "path",
    )
    rows = [header]
    for summary in summaries:
        rows.append(
            (
                summary.name,
                "found" if summary.found else "missing",
                summary.checksum,
                _format_count(summary.n_users),
                _format_count(summary.n_items),
                _format_count(summary.n_interactions),
                "-" if summary.mean_length is None else f"{summary.mean_length:.2f}",
                str(summary.path) if summary.path is not None else "-",
            )
        )
    widths = [max(len(row[column]) for row in rows) for column in range(len(header))]
    numeric = {3, 4, 5, 6}
    lines = []
    for row in rows:
        cells = [
            cell.rjust(width) if column in numeric else cell.ljust(width)
            for column, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def run_list(args: argparse.Namespace) -> int:
    """Print the status of every registered dataset; return 1 if any file is corrupt."""
    summaries = dataset_summary(data_dir=args.data_dir)
    print(format_summary_table(summaries))
    print()
    print(
        "searched, in order: " + ", ".join(str(path) for path in data_dir_candidates(args.data_dir))
    )

    for summary in summaries:
        if summary.error is not None:
            print(f"{summary.name}: {summary.error}")
        elif summary.checksum == "mismatch":
            print(
                f"{summary.name}: SHA-256 of {summary.path} differs from "
                f"{REGISTRY[summary.name].sha256}; "
                f"replace the file (`boundlab data fetch {summary.name}` after moving it away)"
            )
    missing = [summary.name for summary in summaries if not summary.found]
    if missing:
        print(f"missing datasets: download with `boundlab data fetch NAME` ({', '.join(missing)})")

    corrupt = any(
        summary.checksum == "mismatch" or summary.error is not None for summary in summaries
    )
    return 1 if corrupt else 0


def run_show(args: argparse.Namespace) -> int:
    """Print the size of one dataset and of its leave-one-out split."""
    try:
        dataset = load_dataset(args.dataset, args.data_dir, verify_checksum=not args.no_verify)
        if args.limit_users is not None:
            dataset = dataset.limit_users(args.limit_users)
    except DatasetError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1

    split = leave_one_out(dataset)
    summary = summarize_dataset(dataset)
    print(f"dataset            {dataset.name}")
    print(f"path               {dataset.path}")
    print(f"sha256             {dataset.sha256}")
    print(f"users              {summary.n_users:,}")
    print(f"items              {summary.n_items:,}")
    print(f"interactions       {summary.n_interactions:,}")
    print(f"mean length        {summary.mean_length:.2f}")
    print(f"train interactions {split.n_train_interactions:,}")
    print(f"validation targets {len(split.valid):,}")
    print(f"test targets       {len(split.test):,}")
    print(f"history policy     {DEFAULT_HISTORY_POLICY.value} (default)")
    return 0


def run_fetch(args: argparse.Namespace) -> int:
    """Download one registered dataset and print where it is."""
    try:
        path = fetch_dataset(args.name, args.data_dir, timeout=args.timeout)
    except (DatasetError, DownloadError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(path)
    return 0


def run_convert(args: argparse.Namespace) -> int:
    """Convert a raw interaction table and print the written file with its statistics."""
    try:
        dataset = load_interactions_dataset(
            args.table,
            k=args.k,
            file_format=args.file_format,
            user_col=args.user_col,
            item_col=args.item_col,
            time_col=args.time_col,
            output=args.output,
        )
    except DatasetError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(format_summary_table([summarize_dataset(dataset)]))
    print(f"sha256 {dataset.sha256}")
    return 0
