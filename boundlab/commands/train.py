"""``boundlab train``: train a sequential recommender with any registered loss.

Files in the run folder (``--out``):

  config.json                        the settings of the run
  log.jsonl                          one JSON object per line: epochs, validation metrics, audits, events
  best.safetensors, best.json        the epoch with the highest validation NDCG@10, with its test metrics
  last.safetensors, last.json        the full state that --resume continues from
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import signal
from pathlib import Path
from typing import Any

from boundlab.checkpoint import CheckpointError, read_metadata
from boundlab.data import DatasetError, HistoryPolicy
from boundlab.evaluation import metrics_table
from boundlab.models import MODEL_CONFIGS
from boundlab.training import (
    DEFAULT_AUDIT_SURROGATES,
    LAST,
    TrainConfig,
    TrainingError,
    default_run_folder,
    train,
)

logger = logging.getLogger(__name__)

_DEFAULTS = TrainConfig()


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``train`` subcommand."""
    parser = subparsers.add_parser(
        "train",
        help="train SASRec or GRU4Rec with a registered loss, with checkpoints and resume",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    # Every option defaults to None so that --resume can tell given options from stored ones.
    data = parser.add_argument_group("data")
    data.add_argument("--dataset", help=f"registered dataset name or file path (default: {_DEFAULTS.dataset})")
    data.add_argument("--data-dir", help="folder with the dataset files (default: the usual search path)")
    data.add_argument("--limit-users", type=int, metavar="N", help="train on the first N users in file order only")
    data.add_argument(
        "--history",
        choices=[policy.value for policy in HistoryPolicy],
        help=f"items removed from each evaluation ranking (default: {_DEFAULTS.history})",
    )

    model = parser.add_argument_group("model and loss")
    model.add_argument("--model", choices=sorted(MODEL_CONFIGS), help=f"model (default: {_DEFAULTS.model})")
    model.add_argument(
        "--loss",
        help=f'loss spec of the registry, e.g. ce, "sce(alpha=100,k=500)", bce, bpr (default: {_DEFAULTS.loss})',
    )
    model.add_argument(
        "--dropout", type=float, help="dropout rate (default: the model's, 0.6 for sasrec and 0.25 for gru4rec)"
    )
    model.add_argument(
        "--max-len", type=int, help=f"number of most recent items the model reads (default: {_DEFAULTS.max_len})"
    )

    optimization = parser.add_argument_group("optimization")
    optimization.add_argument("--epochs", type=int, help=f"number of epochs (default: {_DEFAULTS.epochs})")
    optimization.add_argument(
        "--batch-size", type=int, help=f"users per batch (default: {_DEFAULTS.batch_size})"
    )
    optimization.add_argument("--lr", type=float, help=f"Adam learning rate (default: {_DEFAULTS.lr:g})")
    optimization.add_argument(
        "--weight-decay", type=float, help=f"Adam L2 weight decay (default: {_DEFAULTS.weight_decay:g})"
    )
    optimization.add_argument("--seed", type=int, help=f"seed of every random generator (default: {_DEFAULTS.seed})")
    optimization.add_argument(
        "--device", help="device: auto, cpu, cuda or cuda:N (default: auto, which picks CUDA when available)"
    )
    optimization.add_argument(
        "--bf16",
        action="store_true",
        default=None,
        help="run the model under bfloat16 autocast (CUDA only; on the CPU a warning is logged and float32 is used)",
    )

    selection = parser.add_argument_group("validation and early stopping")
    selection.add_argument(
        "--eval-every", type=int, metavar="E",
        help=f"evaluate validation NDCG@10 every E epochs and after the last (default: {_DEFAULTS.eval_every})",
    )
    selection.add_argument(
        "--patience", type=int,
        help=f"stop after this many evaluations without a better NDCG@10; 0 disables it (default: {_DEFAULTS.patience})",
    )
    selection.add_argument(
        "--eval-batch-size", type=int, help=f"users scored at once in evaluation (default: {_DEFAULTS.eval_batch_size})"
    )

    audits = parser.add_argument_group(
        "audits during training",
        "Each audit appends one line to log.jsonl with each surrogate's gap to -log NDCG and\n"
        "-log RR and its coverage; boundlab.training.read_audits reads them as a table.",
    )
    audits.add_argument(
        "--audit-every", type=int, metavar="E",
        help="audit before the first epoch, every E epochs and after the last; 0 disables audits (default: 0)",
    )
    audits.add_argument(
        "--audit-users", type=int, metavar="M",
        help=f"audit the first M validation users, the same ones every time (default: {_DEFAULTS.audit_users})",
    )
    audits.add_argument(
        "--audit-draws", type=int, metavar="R",
        help=f"negative-sample draws per user for sampled surrogates (default: {_DEFAULTS.audit_draws})",
    )
    audits.add_argument(
        "--audit-surrogates", nargs="+", metavar="SPEC",
        help=f"loss specs to audit (default: {' '.join(DEFAULT_AUDIT_SURROGATES)})",
    )

    run = parser.add_argument_group("run folder")
    run.add_argument("--out", metavar="DIR", help="run folder (default: runs/<dataset>-<model>-<loss>[-users<N>]-seed<seed>)")
    run.add_argument(
        "--resume", action="store_true", default=None,
        help="continue the interrupted run in --out from its last checkpoint, with its stored settings",
    )
    run.add_argument("--quiet", action="store_true", default=None, help="hide the progress bars")
    parser.set_defaults(func=run_train)


def build_config(args: argparse.Namespace) -> TrainConfig:
    """Turn parsed options into a TrainConfig; with ``--resume``, unset options come from the run folder."""
    options = {
        field.name: getattr(args, field.name)
        for field in dataclasses.fields(TrainConfig)
        if getattr(args, field.name, None) is not None
    }
    if not options.get("resume"):
        return TrainConfig(**options)

    out = Path(options["out"]) if "out" in options else default_run_folder(TrainConfig(**options))
    stored_path = out / f"{LAST}.json"
    if not stored_path.is_file():
        raise TrainingError(
            f"cannot resume: {stored_path} not found; pass the --out folder of the interrupted run"
        )
    stored: dict[str, Any] = read_metadata(stored_path)["train_config"]
    return TrainConfig.from_dict({**stored, **options, "out": str(out)})


def _interrupt_on_signals() -> dict[int, object]:
    """Turn SIGINT and SIGTERM into KeyboardInterrupt, so the run logs the interruption and exits.

    A shell without job control starts background jobs with SIGINT ignored, and SIGTERM would
    otherwise end the process without the log line. Checkpoints are written atomically, so the
    interruption loses at most the epoch in progress. Returns the previous handlers.
    """

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)

    previous = {signum: signal.signal(signum, interrupt) for signum in (signal.SIGINT, signal.SIGTERM)}
    return previous


def run_train(args: argparse.Namespace) -> int:
    """Train, print the best epoch's validation and test metrics and the checkpoint path."""
    try:
        config = build_config(args)
    except (TrainingError, ValueError) as error:
        print(f"error: {error}")
        return 2
    previous = _interrupt_on_signals()
    try:
        result = train(config)
    except (TrainingError, CheckpointError, DatasetError, ValueError) as error:
        logger.debug("training failed", exc_info=True)
        print(f"error: {error}")
        return 1
    except KeyboardInterrupt:
        out = config.out or default_run_folder(config)
        print(f"\ninterrupted; continue with: boundlab train --out {out} --resume")
        return 130
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)

    state = "stopped early" if result.stopped_early else "finished"
    print(f"run {result.run_dir}: {state} after epoch {result.last_epoch}, best epoch {result.best_epoch}")
    print(f"validation ({result.valid['n_users']:,} users, history policy {result.valid['history']}):")
    print(metrics_table(result.valid))
    print(f"test ({result.test['n_users']:,} users, history policy {result.test['history']}):")
    print(metrics_table(result.test))
    print(f"training time {result.training_seconds:.1f} s; best checkpoint {result.run_dir / 'best.json'}")
    return 0
