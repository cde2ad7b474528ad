"""``boundlab evaluate``: full-ranking metrics of a saved checkpoint on its dataset's test or validation split.

The dataset recorded in the checkpoint is loaded again (by registered name or by path), with the
same ``limit_users`` slice, and its SHA-256 and item count must match the checkpoint's. Ranks
are pessimistic: items scored equal to the target count against it.
"""

from __future__ import annotations

import argparse
import logging

from boundlab.checkpoint import (
    CheckpointError,
    checkpoint_paths,
    load_checkpoint,
    load_recorded_dataset,
    read_metadata,
)
from boundlab.data import DatasetError, HistoryPolicy, leave_one_out
from boundlab.evaluation import DEFAULT_EVAL_BATCH_SIZE, evaluate, metrics_table
from boundlab.training import resolve_device

logger = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``evaluate`` subcommand."""
    parser = subparsers.add_parser(
        "evaluate",
        help="print the test (or validation) metrics of a saved checkpoint",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "checkpoint", metavar="CKPT", help="run folder (its best checkpoint), or a checkpoint's .json or .safetensors file"
    )
    parser.add_argument("--split", choices=["test", "valid"], default="test", help="split to rank (default: test)")
    parser.add_argument("--data-dir", default=None, help="folder with the dataset files (default: the usual search path)")
    parser.add_argument(
        "--dataset", default=None, metavar="NAME_OR_PATH",
        help="load the dataset from here instead of the recorded location; its checksum must still match",
    )
    parser.add_argument(
        "--history",
        choices=[policy.value for policy in HistoryPolicy],
        default=None,
        help="items removed from each ranking (default: the policy recorded in the checkpoint)",
    )
    parser.add_argument("--device", default="auto", help="device: auto, cpu, cuda or cuda:N (default: auto)")
    parser.add_argument(
        "--batch-size", type=int, default=DEFAULT_EVAL_BATCH_SIZE,
        help=f"users scored at once (default: {DEFAULT_EVAL_BATCH_SIZE})",
    )
    parser.set_defaults(func=run_evaluate)


def run_evaluate(args: argparse.Namespace) -> int:
    """Load the checkpoint and its dataset, rank the split and print the metrics table."""
    _, metadata_path = checkpoint_paths(args.checkpoint)
    try:
        metadata = read_metadata(metadata_path)
        dataset = load_recorded_dataset(
            metadata, data_dir=args.data_dir, source=args.dataset, checkpoint=metadata_path
        )
        model, metadata = load_checkpoint(metadata_path, device=resolve_device(args.device))
    except (CheckpointError, DatasetError) as error:
        logger.debug("loading failed", exc_info=True)
        print(f"error: {error}")
        return 1

    history = args.history or metadata.get("history", HistoryPolicy.EXCLUDE_SEEN.value)
    split = leave_one_out(dataset)
    eval_set = split.test if args.split == "test" else split.valid
    result = evaluate(model, eval_set, history=history, batch_size=args.batch_size)

    model_name = metadata["model"]["name"]
    print(
        f"checkpoint {metadata_path}: {model_name}, loss {metadata.get('loss')}, "
        f"epoch {metadata.get('epoch')}, seed {metadata.get('seed')}"
    )
    limit = metadata["dataset"].get("limit_users")
    sliced = f" (first {limit} users)" if limit is not None else ""
    print(
        f"dataset {dataset.name}{sliced}, split {args.split}: {result.n_users:,} users, "
        f"{dataset.n_items:,} items, history policy {result.history}, pessimistic ranks"
    )
    print(metrics_table(result.metrics))
    return 0
