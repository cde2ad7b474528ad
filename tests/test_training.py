"""Tests for training examples, the training loop, resume, evaluation and the train/evaluate CLI."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from boundlab import losses
from boundlab.cli import main
from boundlab.data import (
    LeaveOneOutSplit,
    SequenceDataset,
    find_dataset_file,
    leave_one_out,
    limit_users,
    load_dataset,
    write_sequence_file,
)
from boundlab.evaluation import evaluate, left_pad, metrics_from_ranks, score_users
from boundlab.models import build_model
from boundlab.ranking import target_ranks
from boundlab.training import (
    DEFAULT_AUDIT_SURROGATES,
    TrainConfig,
    TrainingError,
    build_training_examples,
    read_audits,
    read_log,
    resolve_device,
    train,
)
from boundlab.training.runlog import AUDIT_COLUMNS

N_ITEMS = 40


@pytest.fixture(autouse=True, scope="module")
def single_thread() -> Iterator[None]:
    """Run this module's small models on one thread.

    With two intra-op threads, every tiny kernel waits for the slower thread, and on a shared
    2-core machine that made these tests several times slower.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Write 80 users over 40 items, 3 to 14 items each, and return the file path."""
    rng = np.random.default_rng(0)
    sequences = [rng.integers(1, N_ITEMS + 1, size=rng.integers(3, 15)).astype(np.int64) for _ in range(80)]
    sequences[0][0] = N_ITEMS
    dataset = SequenceDataset("tiny", None, None, N_ITEMS, np.arange(1, 81, dtype=np.int64), sequences)
    path = tmp_path_factory.mktemp("data") / "tiny.txt"
    write_sequence_file(dataset, path)
    return path


def tiny_config(dataset: Path, out: Path, **changes: object) -> TrainConfig:
    """Return a fast config on the tiny dataset: 60 users, max length 8, batches of 16."""
    values = dict(dataset=str(dataset), out=str(out), limit_users=60, epochs=4, eval_every=2,
                  batch_size=16, max_len=8, quiet=True)
    values.update(changes)
    return TrainConfig(**values)


class Interrupt(Exception):
    """Raised from the epoch callback to stop a run as a crash would."""


def stop_after(epoch: int):
    """Return an epoch callback that raises Interrupt once ``epoch`` has finished."""

    def callback(finished: int, record: dict) -> None:
        if finished == epoch:
            raise Interrupt

    return callback


# Training examples


def test_examples_hand_made() -> None:
    sequences = [np.array([1, 2, 3, 4, 5]), np.array([7, 8]), np.array([9])]

    examples = build_training_examples(sequences, max_len=3)

    np.testing.assert_array_equal(examples.inputs, [[2, 3, 4], [0, 0, 7]])
    np.testing.assert_array_equal(examples.targets, [[3, 4, 5], [0, 0, 8]])
    np.testing.assert_array_equal(examples.users, [0, 1])
    assert examples.n_positions == 4


def test_examples_padding_without_truncation() -> None:
    examples = build_training_examples([np.array([1, 2, 3, 4, 5])], max_len=6)

    np.testing.assert_array_equal(examples.inputs, [[0, 0, 1, 2, 3, 4]])
    np.testing.assert_array_equal(examples.targets, [[0, 0, 2, 3, 4, 5]])


def test_examples_exact_fit() -> None:
    examples = build_training_examples([np.array([1, 2, 3, 4])], max_len=3)

    np.testing.assert_array_equal(examples.inputs, [[1, 2, 3]])
    np.testing.assert_array_equal(examples.targets, [[2, 3, 4]])


def test_examples_alignment_random() -> None:
    rng = np.random.default_rng(1)
    sequences = [rng.integers(1, 100, size=rng.integers(2, 30)) for _ in range(200)]
    max_len = 10

    examples = build_training_examples(sequences, max_len)
    inputs, targets = examples.inputs, examples.targets

    # Inputs and targets have the same padding, and each target is the next column's input.
    assert np.array_equal(inputs != 0, targets != 0)
    follows = targets[:, :-1] != 0
    assert np.array_equal(targets[:, :-1][follows], inputs[:, 1:][follows])
    # The last column predicts the last item, and each row keeps min(len - 1, max_len) positions.
    assert np.array_equal(targets[:, -1], [sequence[-1] for sequence in sequences])
    assert np.array_equal((targets != 0).sum(1), [min(len(s) - 1, max_len) for s in sequences])


def test_left_pad_truncates_to_recent_items() -> None:
    padded = left_pad([np.array([1, 2, 3, 4, 5]), np.array([6]), np.array([], dtype=np.int64)], 3)

    np.testing.assert_array_equal(padded, [[3, 4, 5], [0, 0, 6], [0, 0, 0]])


# Evaluation


def test_evaluate_matches_direct_ranking(tiny_dataset: Path) -> None:
    split = leave_one_out(load_dataset(tiny_dataset))
    torch.manual_seed(0)
    model = build_model("sasrec", {"n_items": N_ITEMS, "max_len": 8, "hidden": 16}).eval()
    histories = torch.from_numpy(left_pad(split.test.histories, 8))
    with torch.no_grad():
        scores = model.score_all(histories)
    expected = target_ranks(scores, split.test.target_columns(), exclude=split.test.exclusion_index())

    result = evaluate(model, split.test, batch_size=7, keep_ranks=True)

    assert torch.equal(result.ranks, expected)
    assert result.metrics == metrics_from_ranks(expected)
    assert result.n_users == 80
    assert result.history == "exclude-seen"


def test_score_users_chunks_cover_selection(tiny_dataset: Path) -> None:
    split = leave_one_out(load_dataset(tiny_dataset))
    torch.manual_seed(0)
    model = build_model("gru4rec", {"n_items": N_ITEMS, "max_len": 8})

    chunks = list(score_users(model, split.valid, history="none", batch_size=16, users=np.arange(10, 50)))

    assert [len(chunk.users) for chunk in chunks] == [16, 16, 8]
    assert np.array_equal(np.concatenate([chunk.users for chunk in chunks]), np.arange(10, 50))
    assert all(chunk.scores.shape == (len(chunk.users), N_ITEMS) for chunk in chunks)
    assert all(chunk.exclude.shape[1] == 0 for chunk in chunks)
    assert model.training


# Training loop


def test_resume_matches_uninterrupted_run(tiny_dataset: Path, tmp_path: Path) -> None:
    for loss in ("ce", "sce(alpha=100,k=20)"):
        whole = train(tiny_config(tiny_dataset, tmp_path / f"whole-{loss}", loss=loss))
        first = tiny_config(tiny_dataset, tmp_path / f"parts-{loss}", loss=loss)
        with pytest.raises(Interrupt):
            train(first, on_epoch_end=stop_after(2))
        resumed = train(tiny_config(tiny_dataset, tmp_path / f"parts-{loss}", loss=loss, resume=True))

        assert resumed.valid == whole.valid, loss
        assert resumed.test == whole.test, loss
        assert resumed.best_epoch == whole.best_epoch, loss
        for name in ("best.safetensors", "last.safetensors"):
            expected = load_file(whole.run_dir / name)
            actual = load_file(resumed.run_dir / name)
            assert expected.keys() == actual.keys(), name
            for key in expected:
                assert torch.equal(actual[key], expected[key]), f"{loss} {name} {key}"


def test_run_folder_contents(tiny_dataset: Path, tmp_path: Path) -> None:
    result = train(tiny_config(tiny_dataset, tmp_path / "run", epochs=2, eval_every=1))

    names = {path.name for path in result.run_dir.iterdir()}
    assert names == {"config.json", "log.jsonl", "best.json", "best.safetensors", "last.json", "last.safetensors"}
    best = json.loads((result.run_dir / "best.json").read_text())
    assert best["test_metrics"]["NDCG@10"] == result.test["NDCG@10"]
    assert best["valid_metrics"]["NDCG@10"] == result.valid["NDCG@10"]
    assert best["dataset"]["n_items"] == N_ITEMS
    assert best["dataset"]["limit_users"] == 60
    assert best["split"] == "leave-one-out"
    assert best["history"] == "exclude-seen"
    events = [record["event"] for record in read_log(result.run_dir / "log.jsonl")]
    assert events[0] == "start"
    assert events[-1] == "end"
    assert events.count("epoch") == 2
    assert "best" in events


def test_early_stop_after_patience(tiny_dataset: Path, tmp_path: Path) -> None:
    # With a learning rate this small the weights do not change in float32, so the validation
    # NDCG@10 never improves after the first evaluation.
    result = train(tiny_config(tiny_dataset, tmp_path / "run", epochs=6, eval_every=1, patience=2, lr=1e-20))

    assert result.stopped_early
    assert result.last_epoch == 3
    assert result.best_epoch == 1
    events = [record["event"] for record in read_log(result.run_dir / "log.jsonl")]
    assert "early_stop" in events


def test_resume_rejects_changed_settings(tiny_dataset: Path, tmp_path: Path) -> None:
    with pytest.raises(Interrupt):
        train(tiny_config(tiny_dataset, tmp_path / "run"), on_epoch_end=stop_after(1))

    with pytest.raises(TrainingError, match="lr"):
        train(tiny_config(tiny_dataset, tmp_path / "run", resume=True, lr=1e-2))


def test_resume_needs_last_checkpoint(tiny_dataset: Path, tmp_path: Path) -> None:
    with pytest.raises(TrainingError, match=r"last\.json"):
        train(tiny_config(tiny_dataset, tmp_path / "empty", resume=True))


def test_new_run_refuses_existing_folder(tiny_dataset: Path, tmp_path: Path) -> None:
    with pytest.raises(Interrupt):
        train(tiny_config(tiny_dataset, tmp_path / "run"), on_epoch_end=stop_after(1))

    with pytest.raises(TrainingError, match="--resume"):
        train(tiny_config(tiny_dataset, tmp_path / "run"))


def test_bf16_on_cpu_warns(tiny_dataset: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    result = train(tiny_config(tiny_dataset, tmp_path / "run", epochs=1, bf16=True, device="cpu"))

    assert "--bf16 needs a CUDA device" in caplog.text
    assert json.loads((result.run_dir / "best.json").read_text())["bf16"] is False


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the fallback of a machine without CUDA")
def test_cuda_request_falls_back_to_cpu(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)

    assert resolve_device("cuda") == torch.device("cpu")
    assert "CUDA is not available" in caplog.text


def test_config_rejects_bad_values() -> None:
    with pytest.raises(ValueError, match="batch_size"):
        TrainConfig(batch_size=0)
    with pytest.raises(ValueError, match="unknown loss"):
        TrainConfig(loss="nope")
    with pytest.raises(ValueError, match="history"):
        TrainConfig(history="all")


# Real data


def beauty_or_skip() -> None:
    """Skip the calling test when the Beauty file is in none of the searched folders."""
    if find_dataset_file("beauty") is None:
        pytest.skip("Beauty.txt not found; fetch it with `boundlab data fetch beauty`")


def popularity_ndcg10(split: LeaveOneOutSplit, policy: str = "exclude-seen") -> float:
    """Return validation NDCG@10 of ranking every item by its count in the training sequences."""
    counts = np.bincount(np.concatenate(split.train) - 1, minlength=split.n_items).astype(np.float64)
    scores = torch.from_numpy(counts).expand(len(split.valid), -1)
    ranks = target_ranks(scores, split.valid.target_columns(), exclude=split.valid.exclusion_index(policy=policy))
    return metrics_from_ranks(ranks)["NDCG@10"]


def test_sasrec_beats_popularity_on_item_chains(tmp_path: Path) -> None:
    # Each user walks the catalogue in order (item v is followed by v + 1 with probability 0.9),
    # so popularity is nearly uniform and only a model that reads the sequence ranks well.
    rng = np.random.default_rng(0)
    n_items, sequences = 50, []
    for _ in range(600):
        items = [int(rng.integers(1, n_items + 1))]
        for _ in range(int(rng.integers(4, 12))):
            follows = rng.random() < 0.9
            items.append(items[-1] % n_items + 1 if follows else int(rng.integers(1, n_items + 1)))
        sequences.append(np.array(items, dtype=np.int64))
    sequences[0][0] = n_items
    path = tmp_path / "chains.txt"
    write_sequence_file(SequenceDataset("chains", None, None, n_items, np.arange(1, 601, dtype=np.int64), sequences), path)

    result = train(TrainConfig(dataset=str(path), epochs=2, eval_every=2, batch_size=32, lr=1e-3, dropout=0.1,
                               max_len=12, out=str(tmp_path / "run"), quiet=True))

    popularity = popularity_ndcg10(leave_one_out(load_dataset(path)))
    assert popularity < 0.2
    assert result.valid["NDCG@10"] > 0.8


def test_sasrec_reaches_popularity_level_on_beauty(tmp_path: Path) -> None:
    # NOTE: two epochs on 500 Beauty users bring SASRec to about the level of the most-popular
    # baseline (0.84 to 1.07 times its NDCG@10 over seeds 0 to 4 with these settings), never
    # reliably above it. Measured at 5,000 users with batch 128 and lr 1e-3, SASRec pulls away
    # from popularity only after about 10 epochs. The test therefore requires 60 % of popularity,
    # which is still about 30 times a random ranking.
    beauty_or_skip()
    split = leave_one_out(limit_users(load_dataset("beauty"), 500))

    result = train(TrainConfig(dataset="beauty", limit_users=500, epochs=2, eval_every=2, batch_size=16,
                               lr=1e-3, dropout=0.2, out=str(tmp_path / "run"), quiet=True))

    assert result.valid["NDCG@10"] > 0.6 * popularity_ndcg10(split)


# Command line


@pytest.mark.parametrize("loss", ["sce(alpha=100,k=50)", "bpr"])
def test_train_cli_sampled_losses(tiny_dataset: Path, tmp_path: Path, loss: str, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "run"
    status = main(["train", "--dataset", str(tiny_dataset), "--limit-users", "60", "--loss", loss,
                   "--epochs", "2", "--eval-every", "1", "--batch-size", "16", "--max-len", "8",
                   "--out", str(out), "--quiet"])

    printed = capsys.readouterr().out
    assert status == 0
    assert "best epoch" in printed
    assert "NDCG@10" in printed
    assert json.loads((out / "best.json").read_text())["loss"].startswith(loss.split("(")[0])


def test_train_cli_resume_uses_stored_settings(tiny_dataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    with pytest.raises(Interrupt):
        train(tiny_config(tiny_dataset, out, epochs=3), on_epoch_end=stop_after(1))

    status = main(["train", "--out", str(out), "--resume"])

    assert status == 0
    events = [record["event"] for record in read_log(out / "log.jsonl")]
    assert events.count("resume") == 1
    assert events.count("epoch") == 3


def test_train_cli_reports_bad_loss(capsys: pytest.CaptureFixture) -> None:
    status = main(["train", "--loss", "nope"])

    assert status == 2
    assert "unknown loss" in capsys.readouterr().out


def test_evaluate_cli_prints_test_metrics(tiny_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    result = train(tiny_config(tiny_dataset, tmp_path / "run", epochs=2))
    capsys.readouterr()

    status = main(["evaluate", str(result.run_dir)])

    printed = capsys.readouterr().out
    assert status == 0
    assert "60 users" in printed
    assert "exclude-seen" in printed
    header, values = printed.strip().splitlines()[-2:]
    assert header.split() == ["HR@1", "HR@5", "HR@10", "NDCG@5", "NDCG@10", "MRR@5", "MRR@10", "MRR"]
    assert float(values.split()[4]) == pytest.approx(result.test["NDCG@10"], abs=5e-5)


def test_evaluate_cli_valid_split_without_exclusion(tiny_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    result = train(tiny_config(tiny_dataset, tmp_path / "run", epochs=1))
    capsys.readouterr()

    status = main(["evaluate", str(result.run_dir / "best.json"), "--split", "valid", "--history", "none"])

    printed = capsys.readouterr().out
    assert status == 0
    assert "split valid" in printed
    assert "history policy none" in printed


def test_evaluate_cli_rejects_changed_dataset(tiny_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    result = train(tiny_config(tiny_dataset, tmp_path / "run", epochs=1))
    changed = tmp_path / "changed.txt"
    changed.write_text(tiny_dataset.read_text() + "999 1 2 3\n")
    capsys.readouterr()

    status = main(["evaluate", str(result.run_dir), "--dataset", str(changed)])

    printed = capsys.readouterr().out
    assert status == 1
    assert "SHA-256" in printed
    assert str(changed) in printed


def test_evaluate_cli_rejects_other_item_count(tiny_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    result = train(tiny_config(tiny_dataset, tmp_path / "run", epochs=1))
    bigger = tmp_path / "bigger.txt"
    bigger.write_text(tiny_dataset.read_text() + f"999 1 2 {N_ITEMS + 3}\n")
    capsys.readouterr()

    status = main(["evaluate", str(result.run_dir), "--dataset", str(bigger)])

    printed = capsys.readouterr().out
    assert status == 1
    assert f"{N_ITEMS} items" in printed
    assert f"{N_ITEMS + 3} items" in printed


def test_evaluate_cli_reports_truncated_weights(tiny_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    result = train(tiny_config(tiny_dataset, tmp_path / "run", epochs=1))
    weights = result.run_dir / "best.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    capsys.readouterr()

    status = main(["evaluate", str(result.run_dir)])

    printed = capsys.readouterr().out
    assert status == 1
    assert str(weights) in printed


def test_grouped_forward_equals_padded_forward():
    from boundlab.models import build_model
    from boundlab.training.loop import forward_examples

    generator = torch.Generator().manual_seed(5)
    lengths = [17, 1, 40, 3, 8, 9, 7, 15, 33]
    inputs = torch.zeros(len(lengths), 40, dtype=torch.long)
    targets = torch.zeros_like(inputs)
    for row, length in enumerate(lengths):
        items = torch.randint(1, 30, (length + 1,), generator=generator)
        inputs[row, -length:] = items[:-1]
        targets[row, -length:] = items[1:]
    torch.manual_seed(0)
    model = build_model("sasrec", {"n_items": 29, "max_len": 40}).eval()
    with torch.no_grad():
        padded = model(inputs)
        grouped, columns = forward_examples(model, inputs, targets)

    # Groups of width 8, 16, 32 and 40, each in row order.
    group_of = [next(i for i, width in enumerate((8, 16, 32, 40)) if length <= width) for length in lengths]
    order = sorted(range(len(lengths)), key=lambda row: (group_of[row], row))
    expected = torch.cat([padded[row][targets[row] != 0] for row in order])
    expected_columns = torch.cat([targets[row][targets[row] != 0] - 1 for row in order])
    assert torch.equal(columns, expected_columns)
    assert torch.allclose(grouped, expected, atol=1e-5)


# Audits during training


def audit_lines(run_dir: Path) -> list[dict]:
    """Return the audit records of a run's log without their wall-clock fields."""
    return [{key: value for key, value in record.items() if key not in ("time", "seconds")}
            for record in read_log(run_dir / "log.jsonl") if record["event"] == "audit"]


def audited(dataset: Path, out: Path, **changes: object) -> TrainConfig:
    """Return a tiny config that audits 30 validation users with 2 draws after every epoch."""
    values = dict(audit_every=1, audit_users=30, audit_draws=2, loss="sce(alpha=100,k=20)", epochs=3)
    values.update(changes)
    return tiny_config(dataset, out, **values)


def test_audits_leave_training_unchanged(tiny_dataset: Path, tmp_path: Path) -> None:
    plain = train(tiny_config(tiny_dataset, tmp_path / "plain", loss="sce(alpha=100,k=20)", epochs=3))
    with_audits = train(audited(tiny_dataset, tmp_path / "audits", audit_every=2))

    assert with_audits.valid == plain.valid
    assert with_audits.test == plain.test
    for name in ("best.safetensors", "last.safetensors"):
        expected = load_file(plain.run_dir / name)
        actual = load_file(with_audits.run_dir / name)
        for key in expected:
            assert torch.equal(actual[key], expected[key]), f"{name} {key}"
    # Epoch 0, every second epoch and the last epoch.
    assert [line["epoch"] for line in audit_lines(with_audits.run_dir)] == [0, 2, 3]
    assert audit_lines(plain.run_dir) == []


def test_audit_line_contents(tiny_dataset: Path, tmp_path: Path) -> None:
    result = train(audited(tiny_dataset, tmp_path / "run", epochs=1))

    first = audit_lines(result.run_dir)[0]
    assert first["split"] == "valid"
    assert first["users"] == 30
    assert first["draws"] == 2
    surrogates = [row["surrogate"] for row in first["summary"]]
    assert surrogates == [losses.get(spec).spec for spec in DEFAULT_AUDIT_SURROGATES for _ in ("ndcg", "rr")]
    ce = next(row for row in first["summary"] if row["surrogate"] == "ce")
    assert ce["deterministic_violations"] == 0
    assert ce["coverage"] == 1.0
    assert ce["mean_x24_bound"] is None
    text = (result.run_dir / "log.jsonl").read_text()
    assert "NaN" not in text


def test_audit_keeps_rng_and_mode(tiny_dataset: Path) -> None:
    from boundlab.evaluation import prepare_evaluation
    from boundlab.training.audits import audit_model

    split = leave_one_out(load_dataset(tiny_dataset))
    config = TrainConfig(dataset=str(tiny_dataset), max_len=8, audit_every=1, audit_users=500, audit_draws=3)
    torch.manual_seed(0)
    model = build_model("sasrec", {"n_items": N_ITEMS, "max_len": 8}).train()
    inputs = prepare_evaluation(split.valid, 8)
    state = torch.get_rng_state()

    first = audit_model(model, inputs, config, epoch=4)
    second = audit_model(model, inputs, config, epoch=4)

    assert torch.equal(torch.get_rng_state(), state)
    assert model.training
    assert first["users"] == 80
    assert first["summary"] == second["summary"]
    assert audit_model(model, inputs, config, epoch=5)["seed"] != first["seed"]


@pytest.mark.parametrize("where", ["after_epoch", "during_audit"])
def test_resume_writes_each_audit_once(
    tiny_dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    whole = train(audited(tiny_dataset, tmp_path / "whole"))
    out = tmp_path / "parts"
    if where == "after_epoch":
        with pytest.raises(Interrupt):
            train(audited(tiny_dataset, out), on_epoch_end=stop_after(2))
    else:
        from boundlab.training import loop

        real_audit = loop.audit_model

        def audit_then_crash(model, inputs, config, epoch):
            if epoch == 2:
                raise Interrupt
            return real_audit(model, inputs, config, epoch)

        monkeypatch.setattr(loop, "audit_model", audit_then_crash)
        with pytest.raises(Interrupt):
            train(audited(tiny_dataset, out))
        monkeypatch.setattr(loop, "audit_model", real_audit)
        assert [line["epoch"] for line in audit_lines(out)] == [0, 1]

    resumed = train(audited(tiny_dataset, out, resume=True))

    assert audit_lines(resumed.run_dir) == audit_lines(whole.run_dir)
    assert [line["epoch"] for line in audit_lines(resumed.run_dir)] == [0, 1, 2, 3]


def test_cli_resume_keeps_audit_settings(tiny_dataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    settings = dict(audit_every=2, audit_users=20, audit_draws=2, audit_surrogates=["ce", "bpr"])
    with pytest.raises(Interrupt):
        train(tiny_config(tiny_dataset, out, epochs=3, **settings), on_epoch_end=stop_after(1))
    stored = json.loads((out / "config.json").read_text())
    canonical = dict(settings, audit_surrogates=["ce", "bpr(k=1,sampler=uniform-no-target)"])
    assert {key: stored[key] for key in settings} == canonical

    status = main(["train", "--out", str(out), "--resume"])

    assert status == 0
    lines = audit_lines(out)
    assert [line["epoch"] for line in lines] == [0, 2, 3]
    assert all(line["users"] == 20 and line["draws"] == 2 for line in lines)
    assert {row["surrogate"] for row in lines[-1]["summary"]} == {"ce", "bpr(k=1,sampler=uniform-no-target)"}


def test_read_audits_table(tiny_dataset: Path, tmp_path: Path) -> None:
    surrogates = ["ce", "ssm(k=10)"]
    result = train(audited(tiny_dataset, tmp_path / "run", epochs=2, audit_surrogates=surrogates))

    table = read_audits(result.run_dir)

    assert list(table.columns[: len(AUDIT_COLUMNS)]) == list(AUDIT_COLUMNS)
    assert len(table) == 3 * 2 * 2
    assert table["epoch"].tolist() == [0] * 4 + [1] * 4 + [2] * 4
    ce = table[table["surrogate"] == "ce"]
    assert (ce["deterministic_violations"] == 0).all()
    assert (ce["coverage"] == 1.0).all()
    sampled = table[table["surrogate"] == "ssm(k=10,sampler=uniform)"]
    assert sampled["deterministic_violations"].isna().all()
    assert sampled["draws"].tolist() == [2] * 6
    assert table["valid_NDCG@10"].between(0, 1).all()


def test_read_audits_uses_last_start(tmp_path: Path) -> None:
    row = {key: 0.5 for key in AUDIT_COLUMNS[3:]}
    row.update(surrogate="ce", metric="ndcg", deterministic_violations=0)
    lines = [
        {"event": "start"},
        {"event": "audit", "epoch": 0, "summary": [dict(row, mean_gap=9.0)]},
        {"event": "start"},
        {"event": "audit", "epoch": 0, "summary": [dict(row, mean_gap=1.0)]},
        {"event": "audit", "epoch": 2, "summary": [dict(row, mean_gap=2.0)]},
        {"event": "resume"},
        {"event": "audit", "epoch": 2, "summary": [dict(row, mean_gap=3.0, relative_gap=None)]},
    ]
    (tmp_path / "log.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))

    table = read_audits(tmp_path)

    assert table["epoch"].tolist() == [0, 2]
    assert table["mean_gap"].tolist() == [1.0, 3.0]
    assert np.isnan(table["relative_gap"].iloc[1])


def test_read_audits_names_malformed_line(tmp_path: Path) -> None:
    log = tmp_path / "log.jsonl"
    log.write_text('{"event": "start"}\n{"event": "audit", "epoch": 1}\n')
    with pytest.raises(ValueError, match=rf"{re.escape(str(log))}:2: audit line has no summary rows"):
        read_audits(tmp_path)

    log.write_text('{"event": "start"}\n{"event": "audit", "epoch": 1, "summary": [{"surrogate": "ce"}]}\n')
    with pytest.raises(ValueError, match=rf"{re.escape(str(log))}:2: summary row 0 lacks metric, mean_gap"):
        read_audits(log)

    log.write_text('{"event": "start"}\n{"event": "aud\n{"event": "end"}\n')
    with pytest.raises(ValueError, match=rf"{re.escape(str(log))}:2 is not valid JSON"):
        read_audits(tmp_path)

    with pytest.raises(FileNotFoundError, match=r"log\.jsonl not found"):
        read_audits(tmp_path / "missing")


def test_train_rejects_sampler_beyond_catalogue(tiny_dataset: Path, tmp_path: Path) -> None:
    bad = "ssm(k=50,sampler=without-replacement)"
    with pytest.raises(TrainingError, match=r"loss ssm.* with 40 items: .*k=50 distinct items"):
        train(tiny_config(tiny_dataset, tmp_path / "loss", loss=bad))
    with pytest.raises(TrainingError, match=r"audit surrogate ssm.* with 40 items"):
        train(tiny_config(tiny_dataset, tmp_path / "audit", audit_every=1, audit_surrogates=["ce", bad]))

    assert not (tmp_path / "loss").exists()
    assert not (tmp_path / "audit").exists()


def test_train_cli_reports_bad_audit_surrogate(capsys: pytest.CaptureFixture) -> None:
    status = main(["train", "--audit-every", "1", "--audit-surrogates", "ce", "sce(alpha=0)"])

    assert status == 2
    assert "invalid audit surrogate 'sce(alpha=0)'" in capsys.readouterr().out


def test_train_cli_audits_beauty_slice(tmp_path: Path) -> None:
    beauty_or_skip()
    out = tmp_path / "run"

    status = main(["train", "--dataset", "beauty", "--limit-users", "200", "--epochs", "1", "--batch-size", "64",
                   "--audit-every", "1", "--audit-users", "200", "--audit-draws", "2", "--out", str(out), "--quiet"])

    assert status == 0
    table = read_audits(out)
    assert table["epoch"].unique().tolist() == [0, 1]
    assert len(table) == 2 * len(DEFAULT_AUDIT_SURROGATES) * 2
    assert (table["users"] == 200).all()
    deterministic = table[table["surrogate"].isin(["ce", "ce_eta(eta=0.7)"])]
    assert (deterministic["deterministic_violations"] == 0).all()
    assert (deterministic["coverage"] == 1.0).all()
