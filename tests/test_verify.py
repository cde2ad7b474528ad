"""The verify command: passes on the real code and fails when a bound is broken on purpose."""

from __future__ import annotations

from boundlab import cli, verification
from boundlab.losses import functional


def test_verify_passes(capsys):
    status = cli.main(["verify", "--vectors", "3000", "--items", "17"])
    output = capsys.readouterr().out
    assert status == 0
    assert "FAIL" not in output
    assert output.count("PASS") >= 19
    assert "all checks passed" in output


def test_numeric_checks_count_every_vector():
    checks = verification.run_numeric_checks(n_vectors=600, n_items=9, batch=50)
    assert all(check.tested == 600 for check in checks)


def test_verify_detects_a_broken_bound(capsys, monkeypatch):
    exact = functional.prefix_logsumexp

    def too_small(diff, keep, counts):
        return exact(diff, keep, counts) - 1e-9

    monkeypatch.setattr(functional, "prefix_logsumexp", too_small)
    status = cli.main(["verify", "--vectors", "600", "--items", "9", "--skip-symbolic"])
    output = capsys.readouterr().out
    assert status == 1
    assert "FAIL  rr-below-ce-n" in output


def test_verify_detects_a_broken_rank(monkeypatch):
    original = verification.target_ranks

    def optimistic_off_by_one(scores, targets, **kwargs):
        ranks = original(scores, targets, **kwargs)
        return ranks + 1 if kwargs.get("ties") == "optimistic" else ranks

    monkeypatch.setattr(verification, "target_ranks", optimistic_off_by_one)
    checks = {c.name: c for c in verification.run_numeric_checks(n_vectors=600, n_items=9, batch=50)}
    assert checks["rank-order"].failed > 0
