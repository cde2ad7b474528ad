"""Sweeps: loading and validation of sweep files, skip/resume logic and the results table."""

from __future__ import annotations

import json

import pytest

from boundlab.cli import main
from boundlab.sweep import (
    SWEEP_DIR,
    load_sweep,
    read_sweep,
    run_status,
    run_sweep,
    validation_curves,
)


def write_sweep(path, out, runs=None, **base):
    base = {"dataset": "beauty", "limit_users": 150, "model": "sasrec", "epochs": 2, "eval_every": 1,
            "patience": 0, "seed": 0, "device": "cpu", **base}
    runs = runs or [{"name": "k1", "config": {"loss": "ssm(k=1)"}, "values": {"K": 1}},
                    {"name": "k5", "config": {"loss": "ssm(k=5)"}, "values": {"K": 5}}]
    path.write_text(json.dumps({"name": "tiny", "out": str(out), "base": base, "runs": runs}))
    return path


def test_shipped_sweep_files_load():
    files = sorted(SWEEP_DIR.glob("*.json"))
    assert files
    for path in files:
        sweep = load_sweep(path)
        assert sweep.runs


def test_sweep_trains_skips_finished_and_tabulates(tmp_path, caplog):
    sweep = load_sweep(write_sweep(tmp_path / "s.json", tmp_path / "out"))
    run_sweep(sweep)
    assert [run_status(sweep.run_folder(r)) for r in sweep.runs] == ["finished", "finished"]
    first = (sweep.run_folder("k1") / "log.jsonl").read_text()
    caplog.set_level("INFO")
    run_sweep(sweep)
    assert (sweep.run_folder("k1") / "log.jsonl").read_text() == first
    assert "skipped" in caplog.text
    table = read_sweep(sweep)
    assert list(table["K"]) == [1, 5]
    assert set(table["status"]) == {"finished"}
    assert table["test NDCG@10"].between(0, 1).all()
    curves = validation_curves(sweep)
    assert sorted(curves["epoch"].unique()) == [1, 2]


def test_sweep_resumes_interrupted_run(tmp_path):
    path = write_sweep(tmp_path / "s.json", tmp_path / "out", runs=[{"name": "a", "config": {"loss": "bpr"}}])
    sweep = load_sweep(path)
    from boundlab.training import TrainConfig, train

    def stop(epoch, record):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(TrainConfig(**sweep.config(sweep.runs[0])), on_epoch_end=stop)
    assert run_status(sweep.run_folder("a")) == "interrupted"
    run_sweep(sweep)
    assert run_status(sweep.run_folder("a")) == "finished"
    assert read_sweep(sweep)["epochs"].tolist() == [2]


@pytest.mark.parametrize(("runs", "message"), [
    ([{"name": "a", "config": {"loss": "ce", "epochs": 0}}], "epochs"),
    ([{"name": "a", "config": {"loss": "ce", "learning_rate": 1}}], "learning_rate"),
    ([{"name": "a"}, {"name": "a"}], "repeat"),
    ([{"config": {"loss": "ce"}}], "name"),
])
def test_bad_sweep_file_names_file_and_run(tmp_path, runs, message):
    path = write_sweep(tmp_path / "s.json", tmp_path / "out", runs=runs)
    with pytest.raises(ValueError, match=message) as error:
        load_sweep(path)
    assert str(path) in str(error.value)


def test_invalid_json_names_line(tmp_path):
    path = tmp_path / "s.json"
    path.write_text('{"name": "x",\n "base": {,}\n}')
    with pytest.raises(ValueError, match=r"s\.json:2"):
        load_sweep(path)


def test_unknown_sweep_lists_known(capsys):
    assert main(["sweep", "no-such-sweep", "--status"]) == 2
    assert "known sweeps" in capsys.readouterr().err


def test_unknown_run_is_rejected(tmp_path):
    sweep = load_sweep(write_sweep(tmp_path / "s.json", tmp_path / "out"))
    with pytest.raises(ValueError, match="no run"):
        run_sweep(sweep, only=["k7"])
