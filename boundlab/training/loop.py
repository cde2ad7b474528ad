"""Training loop: every-position next-item training, periodic validation, checkpoints and resume.

One epoch shuffles the users with a seeded generator and walks them in batches. At every
non-padding position the hidden state and its next item form one example, and the loss of the
registry is averaged over the batch's examples. Sampled losses draw their negatives from a
second seeded generator on the training device, so the shuffle order does not depend on how
many random numbers the loss consumed.

Every ``eval_every`` epochs (and after the final epoch) validation NDCG@10 decides whether the
model becomes the new ``best`` checkpoint. After ``patience`` evaluations without improvement
training stops early. At the end the best checkpoint is evaluated on the test split. The
``last`` checkpoint, written after every epoch, contains the full state needed to resume. On the
CPU a resumed run reproduces the uninterrupted run exactly.

With ``audit_every`` set, audits of the validation users (:mod:`boundlab.training.audits`) run
before the first epoch and after each due epoch's checkpoint and log line. A resumed run first
writes the audit of its last completed epoch if that audit is due and missing from the log, so
the log has one audit line per due epoch however often the run was interrupted.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from boundlab import losses
from boundlab.checkpoint import (
    CheckpointError,
    check_dataset,
    checkpoint_paths,
    load_model_tensors,
    load_training_state,
    read_metadata,
    read_tensors,
    save_checkpoint,
    update_metadata,
    write_atomic,
)
from boundlab.data import (
    REGISTRY,
    LeaveOneOutSplit,
    SequenceDataset,
    leave_one_out,
    limit_users,
    load_dataset,
)
from boundlab.evaluation import (
    EvaluationInputs,
    EvaluationResult,
    evaluate,
    format_metrics,
    prepare_evaluation,
)
from boundlab.models import build_model
from boundlab.training.audits import AUDIT_EVENT, audit_due, audit_model, logged_audit_epochs
from boundlab.training.config import TrainConfig, changed_fields, default_run_folder, resolve_device
from boundlab.training.examples import build_training_examples
from boundlab.training.runlog import LOG_FILE, RunLog

logger = logging.getLogger(__name__)

BEST = "best"
LAST = "last"
SELECTION_METRIC = "NDCG@10"
SPLIT = "leave-one-out"

EpochCallback = Callable[[int, dict[str, Any]], None]


class TrainingError(RuntimeError):
    """Training cannot start or continue: a diverged loss, or a run folder in the wrong state."""


@dataclass
class TrainResult:
    """Outcome of :func:`train`: the run folder, the chosen epoch and its metrics."""

    run_dir: Path
    best_epoch: int
    last_epoch: int
    stopped_early: bool
    valid: dict[str, Any]
    test: dict[str, Any]
    training_seconds: float


@dataclass
class TrainingState:
    """Scalars of the resume state, stored in ``last.json`` under ``state``.

    ``epoch`` is the last completed epoch, ``bad_evaluations`` the evaluations since the last
    improvement and ``training_seconds`` the summed wall time of training and validation.
    """

    epoch: int = 0
    best_metric: float | None = None
    best_epoch: int = 0
    best_valid: dict[str, Any] | None = None
    bad_evaluations: int = 0
    training_seconds: float = 0.0
    stopped_early: bool = False

    def to_dict(self) -> dict[str, Any]:
        """Return the fields as a JSON-ready dict."""
        return dataclasses.asdict(self)


def train(config: TrainConfig, *, on_epoch_end: EpochCallback | None = None) -> TrainResult:
    """Train, validate, checkpoint and finally test one model as ``config`` describes.

    ``on_epoch_end(epoch, record)`` runs after each epoch's checkpoint and log line are written.
    An exception it raises stops training as an interruption would, and ``config.resume``
    continues from there. Returns the best epoch with its validation and test metrics.
    """
    run_dir = Path(config.out) if config.out else default_run_folder(config)
    _check_run_dir(run_dir, config.resume)
    device = resolve_device(config.device)
    use_bf16 = _resolve_bf16(config.bf16, device)

    dataset = load_training_dataset(config)
    split = leave_one_out(dataset)
    examples = build_training_examples(split.train, config.max_len)
    if len(examples) == 0:
        raise TrainingError(
            f"dataset {config.dataset!r} has no user with two or more training items, so there is "
            "nothing to train on; use a dataset with longer sequences"
        )
    loss = losses.get(config.loss)
    _check_catalogue(config, loss, split.n_items)

    torch.manual_seed(config.seed)
    model = build_model(config.model, config.model_kwargs(split.n_items)).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    shuffle_generator, sampler_generator = _seeded_generators(config.seed, device)

    base_metadata = {
        "model": {"name": config.model, "config": dataclasses.asdict(model.config)},
        "loss": loss.spec,
        "dataset": dataset_record(config, dataset),
        "split": SPLIT,
        "history": config.history,
        "max_len": config.max_len,
        "seed": config.seed,
        "device": str(device),
        "bf16": use_bf16,
        "train_config": config.to_dict(),
    }

    run_dir.mkdir(parents=True, exist_ok=True)
    # The audits that an interrupted run logged, read before this call appends to the log.
    audited_epochs = logged_audit_epochs(run_dir / LOG_FILE) if config.resume else set()
    with RunLog(run_dir / LOG_FILE) as run_log:
        if config.resume:
            state = _restore(run_dir, config, dataset, model, optimizer, shuffle_generator, sampler_generator, device)
            run_log.write("resume", epoch=state.epoch, best_epoch=state.best_epoch, config=config.to_dict())
            logger.info("resuming %s after epoch %d", run_dir, state.epoch)
        else:
            state = TrainingState()
            run_log.write(
                "start",
                config=config.to_dict(),
                device=str(device),
                bf16=use_bf16,
                n_users=split.n_users,
                n_items=split.n_items,
                n_sequences=len(examples),
                n_positions=examples.n_positions,
                n_parameters=sum(parameter.numel() for parameter in model.parameters()),
            )
            logger.info(
                "training %s with loss %s on %s: %d users, %d items, %d training positions, device %s",
                config.model, loss.spec, dataset.name, split.n_users, split.n_items, examples.n_positions, device,
            )
        write_atomic(run_dir / "config.json", _json_bytes(config.to_dict()))

        inputs = torch.from_numpy(examples.inputs).to(device)
        targets = torch.from_numpy(examples.targets).to(device)
        valid_inputs = prepare_evaluation(split.valid, config.max_len, config.history)
        show_progress = not config.quiet and sys.stderr.isatty()

        run = _Run(
            config=config,
            run_dir=run_dir,
            model=model,
            loss=loss,
            optimizer=optimizer,
            shuffle_generator=shuffle_generator,
            sampler_generator=sampler_generator,
            use_bf16=use_bf16,
            base_metadata=base_metadata,
            run_log=run_log,
            show_progress=show_progress,
            audited_epochs=audited_epochs,
        )
        try:
            _audit_start(run, state, valid_inputs)
            _run_epochs(run, state, inputs, targets, valid_inputs, on_epoch_end)
        except BaseException as error:
            run_log.write("interrupted", epoch=state.epoch, error=f"{type(error).__name__}: {error}")
            raise

        return _finish(run, split, state)


def train_epoch(
    model: nn.Module,
    loss: losses.Loss,
    optimizer: torch.optim.Optimizer,
    inputs: Tensor,
    targets: Tensor,
    *,
    batch_size: int,
    shuffle_generator: torch.Generator,
    sampler_generator: torch.Generator | None = None,
    bf16: bool = False,
    progress: bool = False,
    description: str = "train",
) -> float:
    """Run one epoch over the rows of ``inputs`` and ``targets`` (both ``(U, L)`` on the model's device).

    Rows are visited in ``torch.randperm`` order drawn from ``shuffle_generator`` (a CPU
    generator). Returns the mean loss over all non-padding positions of the epoch.
    """
    model.train()
    n_rows = inputs.shape[0]
    order = torch.randperm(n_rows, generator=shuffle_generator).to(inputs.device)
    total = torch.zeros((), dtype=torch.float64, device=inputs.device)
    n_positions = 0

    batches = range(0, n_rows, batch_size)
    bar = tqdm(batches, desc=description, leave=False, disable=not progress, unit="batch")
    for start in bar:
        index = order[start : start + batch_size]
        hidden, columns = forward_examples(model, inputs[index], targets[index], bf16=bf16)

        # The loss runs in float32 even under bf16 autocast, because a bfloat16 softmax over
        # the catalogue loses the small terms.
        value = loss.from_embeddings(
            hidden.float(),
            model.candidate_embeddings().float(),
            columns,
            generator=sampler_generator,
            reduction="mean",
        )

        optimizer.zero_grad(set_to_none=True)
        value.backward()
        optimizer.step()

        count = int(columns.shape[0])
        total += value.detach().double() * count
        n_positions += count
    bar.close()
    return float(total) / max(n_positions, 1)


# Rows are run through the model at the smallest of these widths that fits their real items.
# Most training sequences are short (Beauty: 5.7 positions on average), so this skips most of the
# left padding that a (batch, max_len) forward pass would compute.
GROUP_WIDTHS = (8, 16, 32)


def forward_examples(
    model: nn.Module, inputs: Tensor, targets: Tensor, *, bf16: bool = False
) -> tuple[Tensor, Tensor]:
    """Return hidden states ``(P, d)`` and 0-based target columns ``(P,)`` of every non-padding position.

    Rows are grouped by length and each group is cut to its width before the forward pass.
    Because the models' outputs do not depend on left padding, this equals one forward pass over
    the full ``(B, L)`` batch (dropout draws aside) at a fraction of the cost.
    """
    lengths = (targets != 0).sum(1)
    hidden_parts, column_parts = [], []
    lower = 0
    for width in (*[w for w in GROUP_WIDTHS if w < inputs.shape[1]], inputs.shape[1]):
        rows = torch.nonzero((lengths > lower) & (lengths <= width)).squeeze(1)
        lower = width
        if rows.numel() == 0:
            continue
        group_inputs = inputs[rows, -width:]
        group_targets = targets[rows, -width:]
        with torch.autocast(device_type=inputs.device.type, dtype=torch.bfloat16, enabled=bf16):
            hidden = model(group_inputs)
        is_example = group_targets != 0
        hidden_parts.append(hidden[is_example])
        column_parts.append(group_targets[is_example] - 1)
    if not hidden_parts:
        raise TrainingError("the batch has no training position; every row is padding")
    return torch.cat(hidden_parts), torch.cat(column_parts)


def load_training_dataset(config: TrainConfig) -> SequenceDataset:
    """Load the dataset named in ``config`` (registered name or path) and apply ``limit_users``."""
    dataset = load_dataset(config.dataset, config.data_dir)
    if config.limit_users is not None:
        dataset = limit_users(dataset, config.limit_users)
    return dataset


def dataset_record(config: TrainConfig, dataset: SequenceDataset) -> dict[str, Any]:
    """Return the checkpoint's ``dataset`` entry: how to load the dataset again and how to verify it."""
    registered = config.dataset.lower() in REGISTRY
    return {
        "name": dataset.name,
        "registered": registered,
        "source": config.dataset if registered else str(Path(config.dataset).expanduser().resolve()),
        "path": str(Path(dataset.path).resolve()) if dataset.path is not None else None,
        "sha256": dataset.sha256,
        "n_items": dataset.n_items,
        "n_users": dataset.n_users,
        "limit_users": config.limit_users,
    }


@dataclass
class _Run:
    """The objects that every epoch of one :func:`train` call uses."""

    config: TrainConfig
    run_dir: Path
    model: nn.Module
    loss: losses.Loss
    optimizer: torch.optim.Optimizer
    shuffle_generator: torch.Generator
    sampler_generator: torch.Generator
    use_bf16: bool
    base_metadata: dict[str, Any]
    run_log: RunLog
    show_progress: bool
    audited_epochs: set[int]


def _run_epochs(
    run: _Run,
    state: TrainingState,
    inputs: Tensor,
    targets: Tensor,
    valid_inputs: EvaluationInputs,
    on_epoch_end: EpochCallback | None,
) -> None:
    config = run.config
    if state.stopped_early:
        logger.info("the run in %s already stopped early at epoch %d", run.run_dir, state.epoch)
        return

    epochs_bar = tqdm(
        total=config.epochs, initial=state.epoch, desc="epochs", unit="epoch", disable=not run.show_progress
    )
    for epoch in range(state.epoch + 1, config.epochs + 1):
        started = time.perf_counter()
        train_loss = train_epoch(
            run.model, run.loss, run.optimizer, inputs, targets,
            batch_size=config.batch_size,
            shuffle_generator=run.shuffle_generator,
            sampler_generator=run.sampler_generator,
            bf16=run.use_bf16,
            progress=run.show_progress,
            description=f"epoch {epoch}",
        )
        train_seconds = time.perf_counter() - started
        if not math.isfinite(train_loss):
            raise TrainingError(
                f"the mean training loss of epoch {epoch} is {train_loss}, so training diverged; "
                f"lower --lr (now {config.lr}) or train without --bf16"
            )
        record: dict[str, Any] = {"epoch": epoch, "train_loss": train_loss, "seconds": round(train_seconds, 3)}

        improved = False
        if epoch % config.eval_every == 0 or epoch == config.epochs:
            improved = _validate(run, state, valid_inputs, epoch, record)
        state.epoch = epoch
        state.training_seconds += time.perf_counter() - started
        _save_epoch(run, state, epoch, record, improved)
        if audit_due(config, epoch, last=epoch == config.epochs or state.stopped_early):
            _audit(run, valid_inputs, epoch)

        message = f"epoch {epoch}: train loss {train_loss:.4f} in {train_seconds:.1f} s"
        if "valid" in record:
            message += f"; valid {format_metrics(record['valid'], ('NDCG@10', 'HR@10'))}"
        logger.info(message)
        epochs_bar.update(1)
        epochs_bar.set_postfix(loss=f"{train_loss:.4f}", best=f"{state.best_metric or 0.0:.4f}")

        if state.stopped_early:
            run.run_log.write("early_stop", epoch=epoch, best_epoch=state.best_epoch, patience=config.patience)
            logger.info(
                "early stop at epoch %d: no better validation %s in %d evaluations (best epoch %d)",
                epoch, SELECTION_METRIC, config.patience, state.best_epoch,
            )
        if on_epoch_end is not None:
            on_epoch_end(epoch, record)
        if state.stopped_early:
            break
    epochs_bar.close()


def _audit_start(run: _Run, state: TrainingState, valid_inputs: EvaluationInputs) -> None:
    """Audit epoch 0 of a new run, or the last completed epoch of a resumed run if its line is missing.

    Audit lines are written after the epoch's checkpoint, so an interruption can lose only the
    audit of the last completed epoch, and the weights restored from ``last`` are exactly the
    weights that audit needs.
    """
    config = run.config
    if not config.resume:
        if audit_due(config, 0, last=False):
            _audit(run, valid_inputs, 0)
        return
    last = state.epoch == config.epochs or state.stopped_early
    if audit_due(config, state.epoch, last=last) and state.epoch not in run.audited_epochs:
        _audit(run, valid_inputs, state.epoch)


def _audit(run: _Run, valid_inputs: EvaluationInputs, epoch: int) -> None:
    record = audit_model(run.model, valid_inputs, run.config, epoch)
    run.run_log.write(AUDIT_EVENT, **record)
    logger.info("audit of epoch %d: %d validation users in %.1f s", epoch, record["users"], record["seconds"])


def _validate(
    run: _Run, state: TrainingState, valid_inputs: EvaluationInputs, epoch: int, record: dict[str, Any]
) -> bool:
    """Evaluate the validation split into ``record``, update the best and patience counters.

    Returns whether this epoch is the new best.
    """
    started = time.perf_counter()
    result = evaluate(run.model, valid_inputs, batch_size=run.config.eval_batch_size)
    record["valid"] = result.metrics
    record["eval_seconds"] = round(time.perf_counter() - started, 3)

    value = result.metrics[SELECTION_METRIC]
    improved = state.best_metric is None or value > state.best_metric
    if improved:
        state.best_metric = value
        state.best_epoch = epoch
        state.best_valid = result.to_dict()
        state.bad_evaluations = 0
    else:
        state.bad_evaluations += 1
    if run.config.patience and state.bad_evaluations >= run.config.patience:
        state.stopped_early = True
    return improved


def _save_epoch(run: _Run, state: TrainingState, epoch: int, record: dict[str, Any], improved: bool) -> None:
    """Write the best checkpoint (when improved), the resume state and the epoch's log lines."""
    if improved:
        save_checkpoint(
            run.run_dir, BEST, run.model,
            {**run.base_metadata, "kind": BEST, "epoch": epoch, "valid_metrics": state.best_valid,
             "test_metrics": None, "training_seconds": state.training_seconds},
        )
    save_checkpoint(
        run.run_dir, LAST, run.model,
        {**run.base_metadata, "kind": LAST, "epoch": epoch, "state": state.to_dict(),
         "rng_devices": {"sampler": run.sampler_generator.device.type},
         "valid_metrics": record.get("valid"), "test_metrics": None,
         "training_seconds": state.training_seconds},
        optimizer=run.optimizer,
        rng_states=_capture_rng(run.shuffle_generator, run.sampler_generator),
    )

    # The log is written after the checkpoints, so it never reports an epoch that cannot be resumed.
    run.run_log.write("epoch", **record)
    if improved:
        run.run_log.write("best", epoch=epoch, metric=SELECTION_METRIC, value=state.best_metric)


def _finish(run: _Run, split: LeaveOneOutSplit, state: TrainingState) -> TrainResult:
    """Load the best weights, evaluate them on the test split and record the result."""
    weights_path, metadata_path = checkpoint_paths(run.run_dir / BEST)
    best_metadata = read_metadata(metadata_path)
    load_model_tensors(run.model, read_tensors(weights_path, best_metadata["weights_sha256"]), weights_path)

    test_inputs = prepare_evaluation(split.test, run.config.max_len, run.config.history)
    test: EvaluationResult = evaluate(run.model, test_inputs, batch_size=run.config.eval_batch_size)
    update_metadata(metadata_path, test_metrics=test.to_dict())

    run.run_log.write(
        "end",
        best_epoch=state.best_epoch,
        last_epoch=state.epoch,
        stopped_early=state.stopped_early,
        valid=state.best_valid,
        test=test.to_dict(),
        training_seconds=round(state.training_seconds, 3),
    )
    logger.info(
        "best epoch %d; test %s; checkpoint %s",
        state.best_epoch, format_metrics(test.metrics), metadata_path,
    )
    return TrainResult(
        run_dir=run.run_dir,
        best_epoch=state.best_epoch,
        last_epoch=state.epoch,
        stopped_early=state.stopped_early,
        valid=dict(state.best_valid or {}),
        test=test.to_dict(),
        training_seconds=state.training_seconds,
    )


def _check_run_dir(run_dir: Path, resume: bool) -> None:
    has_run = (run_dir / f"{LAST}.json").exists()
    if resume and not has_run:
        raise TrainingError(
            f"cannot resume: {run_dir / (LAST + '.json')} not found; start a new run without "
            "--resume, or pass the --out folder of the interrupted run"
        )
    if not resume and has_run:
        raise TrainingError(
            f"run folder {run_dir} already contains a run; pass --resume to continue it, or "
            "choose another --out folder"
        )


def _check_catalogue(config: TrainConfig, loss: losses.Loss, n_items: int) -> None:
    """Raise TrainingError before training if a sampler cannot draw its negatives from the catalogue."""
    checks = [("loss", loss)]
    if config.audit_every:
        checks += [("audit surrogate", losses.get(spec)) for spec in config.audit_surrogates]
    for role, checked in checks:
        try:
            checked.check_catalogue(n_items)
        except ValueError as error:
            raise TrainingError(
                f"{role} {checked.spec} cannot be used on dataset {config.dataset!r} with {n_items} items: {error}"
            ) from None


def _resolve_bf16(requested: bool, device: torch.device) -> bool:
    if requested and device.type != "cuda":
        logger.warning("--bf16 needs a CUDA device, but training runs on %s; using float32", device)
        return False
    return requested


def _seeded_generators(seed: int, device: torch.device) -> tuple[torch.Generator, torch.Generator]:
    # Independent, well-mixed seeds for the shuffle order and the negative samples.
    shuffle_seed, sampler_seed = np.random.SeedSequence(seed).generate_state(2, dtype=np.uint64).tolist()
    shuffle_generator = torch.Generator().manual_seed(shuffle_seed)
    sampler_generator = torch.Generator(device=device).manual_seed(sampler_seed)
    return shuffle_generator, sampler_generator


def _capture_rng(shuffle_generator: torch.Generator, sampler_generator: torch.Generator) -> dict[str, Tensor]:
    states = {
        "torch_cpu": torch.get_rng_state(),
        "shuffle": shuffle_generator.get_state(),
        "sampler": sampler_generator.get_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["torch_cuda"] = torch.cuda.get_rng_state()
    return states


def _restore(
    run_dir: Path,
    config: TrainConfig,
    dataset: SequenceDataset,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    shuffle_generator: torch.Generator,
    sampler_generator: torch.Generator,
    device: torch.device,
) -> TrainingState:
    """Load ``last`` into the model, optimizer and generators and return the training state."""
    last = run_dir / f"{LAST}.json"
    metadata = read_metadata(last)
    stored = TrainConfig.from_dict(metadata["train_config"])
    changed = changed_fields(stored, config)
    if changed:
        details = ", ".join(f"{name}: {getattr(stored, name)!r} -> {getattr(config, name)!r}" for name in changed)
        raise TrainingError(
            f"cannot resume {run_dir} with different settings ({details}); resume with the stored "
            f"settings in {run_dir / 'config.json'}, or start a new run in another --out folder"
        )
    check_dataset(metadata, dataset, checkpoint=last)

    metadata, rng_states = load_training_state(last, model, optimizer)
    try:
        state = TrainingState(**metadata["state"])
    except (KeyError, TypeError) as error:
        raise CheckpointError(f"{last} has no valid training state ({error}); it cannot be resumed") from None

    torch.set_rng_state(rng_states["torch_cpu"])
    shuffle_generator.set_state(rng_states["shuffle"])
    stored_sampler_device = metadata.get("rng_devices", {}).get("sampler")
    if stored_sampler_device == sampler_generator.device.type:
        sampler_generator.set_state(rng_states["sampler"])
    else:
        # A generator state belongs to one device type. Negatives after this point differ from an
        # uninterrupted run, but remain seeded.
        logger.warning(
            "the run used %s negatives but resumes on %s; reseeding the negative sampler",
            stored_sampler_device, sampler_generator.device.type,
        )
        sampler_generator.manual_seed(config.seed + state.epoch)
    if device.type == "cuda" and "torch_cuda" in rng_states:
        torch.cuda.set_rng_state(rng_states["torch_cuda"], device)
    return state


def _json_bytes(values: dict[str, Any]) -> bytes:
    return (json.dumps(values, indent=2) + "\n").encode("utf-8")
