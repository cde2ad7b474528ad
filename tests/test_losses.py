"""Losses: slow independent references, registry, samplers, embedding path, low-precision masks."""

from __future__ import annotations

import math

import pytest
import torch

from boundlab import losses
from boundlab.losses import draw_negatives, functional

# ---------------------------------------------------------------------------------------------
# Independent references: plain Python floats, one row at a time.
# ---------------------------------------------------------------------------------------------


def _log(x: float) -> float:
    return math.log(x) if x > 0 else -math.inf


def ref_ce(row, target, exclude_row=None):
    kept = [v for j, v in enumerate(row) if j == target or not (exclude_row and exclude_row[j])]
    return _log(sum(math.exp(v - row[target]) for v in kept))


def ref_ce_top(row, target, n):
    top = sorted(row, reverse=True)[:n]
    return _log(sum(math.exp(v - row[target]) for v in top))


def ref_ce_eta(row, target, eta):
    s = row[target]
    return _log(sum(math.exp(v - s) for v in row if v >= s - eta * abs(s)))


def ref_sce(row, target, negatives, alpha):
    s = row[target]
    return math.log(1 + alpha * sum(math.exp(row[j] - s) for j in negatives))


def _softplus(x: float) -> float:
    return max(x, 0.0) + math.log1p(math.exp(-abs(x)))


def ref_bce(row, target, negatives, beta=1.0):
    return beta * _softplus(-row[target]) + sum(_softplus(row[j]) for j in negatives)


def ref_bpr(row, target, negatives):
    return sum(_softplus(row[j] - row[target]) for j in negatives) / len(negatives)


def ref_nce(row, target, negatives, c, n_items):
    shift = c + math.log(len(negatives) / n_items)
    return _softplus(-(row[target] - shift)) + sum(_softplus(row[j] - shift) for j in negatives)


ODD_SHAPES = [(1, 1), (3, 7), (13, 101), (29, 257)]


def _scores(shape, seed, dtype=torch.float64):
    generator = torch.Generator().manual_seed(seed)
    scores = (torch.randn(shape, generator=generator, dtype=dtype) * 3).round(decimals=1)
    targets = torch.randint(0, shape[1], (shape[0],), generator=generator)
    return scores, targets


@pytest.mark.parametrize("shape", ODD_SHAPES)
def test_ce_matches_reference(shape):
    scores, targets = _scores(shape, 1)
    values = losses.get("ce")(scores, targets)
    expected = [ref_ce(row, t) for row, t in zip(scores.tolist(), targets.tolist())]
    assert values.tolist() == pytest.approx(expected, rel=1e-12, abs=1e-12)


@pytest.mark.parametrize("shape", ODD_SHAPES)
def test_ce_with_exclusion_matches_reference(shape):
    scores, targets = _scores(shape, 2)
    exclude = torch.rand(shape, generator=torch.Generator().manual_seed(3)) < 0.4
    values = losses.get("ce")(scores, targets, exclude=exclude)
    expected = [ref_ce(r, t, e) for r, t, e in zip(scores.tolist(), targets.tolist(), exclude.tolist())]
    assert values.tolist() == pytest.approx(expected, rel=1e-12, abs=1e-12)


@pytest.mark.parametrize("shape", ODD_SHAPES)
@pytest.mark.parametrize("n", [1, 5, 300])
def test_ce_top_matches_reference(shape, n):
    scores, targets = _scores(shape, 4)
    values = losses.get(f"ce_top(n={n})")(scores, targets)
    expected = [ref_ce_top(r, t, n) for r, t in zip(scores.tolist(), targets.tolist())]
    assert values.tolist() == pytest.approx(expected, rel=1e-12, abs=1e-12)


@pytest.mark.parametrize("shape", ODD_SHAPES)
@pytest.mark.parametrize("eta", [0.0, 0.3, 5.0])
def test_ce_eta_matches_reference(shape, eta):
    scores, targets = _scores(shape, 5)
    values = losses.get(f"ce_eta(eta={eta})")(scores, targets)
    expected = [ref_ce_eta(r, t, eta) for r, t in zip(scores.tolist(), targets.tolist())]
    assert values.tolist() == pytest.approx(expected, rel=1e-12, abs=1e-12)


SAMPLED_REFERENCES = {
    "ssm(k=9)": lambda row, t, neg, n: ref_sce(row, t, neg, 1.0),
    "sce(alpha=7.5,k=9)": lambda row, t, neg, n: ref_sce(row, t, neg, 7.5),
    "bce(k=3)": lambda row, t, neg, n: ref_bce(row, t, neg),
    "bpr(k=4)": lambda row, t, neg, n: ref_bpr(row, t, neg),
    "nce(c=10,k=6)": lambda row, t, neg, n: ref_nce(row, t, neg, 10.0, n),
    "neg(k=6)": lambda row, t, neg, n: ref_nce(row, t, neg, math.log(n / 6), n),
    "gbce(k=5,t=0.5)": lambda row, t, neg, n: ref_bce(
        row, t, neg, (5 / (n - 1)) * (0.5 * (1 - (n - 1) / 5) + (n - 1) / 5)
    ),
}


@pytest.mark.parametrize("shape", [(3, 7), (13, 101), (29, 257)])
@pytest.mark.parametrize("spec", sorted(SAMPLED_REFERENCES))
def test_sampled_losses_match_reference(shape, spec):
    scores, targets = _scores(shape, 6)
    loss = losses.get(spec)
    sample = loss.draw(targets, shape[1], torch.Generator().manual_seed(7))
    values = loss(scores, targets, negatives=sample)
    reference = SAMPLED_REFERENCES[spec]
    expected = [
        reference(row, t, negatives, shape[1])
        for row, t, negatives in zip(scores.tolist(), targets.tolist(), sample.per_row(shape[0]).tolist())
    ]
    assert values.tolist() == pytest.approx(expected, rel=1e-10, abs=1e-10)


def test_bpr_with_one_negative_is_pairwise_ce():
    scores, targets = _scores((40, 31), 8)
    loss = losses.get("bpr(k=1)")
    sample = loss.draw(targets, 31, torch.Generator().manual_seed(9))
    negative = sample.items[:, 0]
    pair = torch.stack([scores.gather(1, targets[:, None])[:, 0], scores.gather(1, negative[:, None])[:, 0]], 1)
    expected = losses.get("ce")(pair, torch.zeros(40, dtype=torch.long))
    assert torch.allclose(loss(scores, targets, negatives=sample), expected, rtol=0, atol=1e-12)


def test_gbce_with_zero_calibration_is_bce():
    scores, targets = _scores((20, 50), 10)
    sample = losses.get("bce(k=8)").draw(targets, 50, torch.Generator().manual_seed(11))
    gbce = losses.get("gbce(k=8,t=0)")(scores, targets, negatives=sample)
    bce = losses.get("bce(k=8)")(scores, targets, negatives=sample)
    assert torch.allclose(gbce, bce, rtol=0, atol=1e-12)


def test_sce_with_alpha_one_is_sampled_softmax():
    scores, targets = _scores((20, 50), 12)
    sample = losses.get("ssm(k=8)").draw(targets, 50, torch.Generator().manual_seed(13))
    assert torch.equal(
        losses.get("sce(alpha=1,k=8)")(scores, targets, negatives=sample),
        losses.get("ssm(k=8)")(scores, targets, negatives=sample),
    )


def test_ce_eta_tends_to_ce():
    scores, targets = _scores((30, 80), 14)
    scores = scores + 0.05  # no target score is exactly 0 (then |s+| = 0 and η has no effect)
    ce = losses.get("ce")(scores, targets)
    gaps = [(ce - losses.get(f"ce_eta(eta={eta})")(scores, targets)).max().item() for eta in (0.1, 1.0, 10.0, 1e9)]
    assert gaps == sorted(gaps, reverse=True)
    assert gaps[-1] == 0.0


def test_ce_eta_with_zero_target_score_ignores_eta():
    scores = torch.tensor([[0.0, 1.0, -1.0]], dtype=torch.float64)
    value = losses.get("ce_eta(eta=1e9)")(scores, torch.tensor([0]))
    assert value.item() == pytest.approx(math.log1p(math.e))


def test_ce_top_with_full_catalogue_is_ce():
    scores, targets = _scores((30, 80), 15)
    assert torch.allclose(losses.get("ce_top(n=80)")(scores, targets), losses.get("ce")(scores, targets), atol=1e-12)


def test_large_logits_are_exact_in_float32():
    scores = torch.tensor([[1e4, 1e4 - 1.0, -1e4]], dtype=torch.float32)
    value = losses.get("ce")(scores, torch.tensor([0]))
    assert value.item() == pytest.approx(math.log1p(math.exp(-1.0)), rel=1e-6)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("spec", ["ce", "ce_top(n=3)", "ce_eta(eta=0.5)", "sce(alpha=100,k=4)", "bce(k=2)", "bpr(k=2)", "nce(k=3)"])
def test_masked_rows_finite_in_low_precision(dtype, spec):
    scores, targets = _scores((6, 9), 16, dtype=torch.float32)
    scores = scores.to(dtype).requires_grad_()
    exclude = torch.zeros(6, 9, dtype=torch.bool)
    exclude[0] = True  # every item of row 0 excluded (its target stays)
    exclude[1, ::2] = True
    values = losses.get(spec)(scores, targets, torch.Generator().manual_seed(0), exclude=exclude)
    values.sum().backward()
    assert bool(torch.isfinite(values).all())
    assert bool(torch.isfinite(scores.grad.float()).all())


def test_masked_logsumexp_of_empty_row():
    values = torch.tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
    keep = torch.tensor([[False, False], [True, False]])
    out = functional.masked_logsumexp(values, keep)
    out[1].backward()
    assert out[0].item() == -math.inf
    assert out[1].item() == 3.0
    assert values.grad.tolist() == [[0.0, 0.0], [1.0, 0.0]]


@pytest.mark.parametrize("spec", ["ce", "ce_eta(eta=0.7)", "ssm(k=10)", "sce(alpha=100,k=12,sampler=shared)", "bce(k=3)", "bpr", "nce(k=5)", "neg(k=5)", "gbce(k=6)"])
def test_embedding_path_matches_score_path(spec):
    generator = torch.Generator().manual_seed(17)
    hidden = torch.randn(23, 16, generator=generator, dtype=torch.float64)
    items = torch.randn(61, 16, generator=generator, dtype=torch.float64)
    targets = torch.randint(0, 61, (23,), generator=generator)
    loss = losses.get(spec)
    sample = loss.draw(targets, 61, torch.Generator().manual_seed(18)) if loss.is_sampled else None
    from_embeddings = loss.from_embeddings(hidden, items, targets, negatives=sample)
    from_scores = loss(hidden @ items.T, targets, negatives=sample)
    assert torch.allclose(from_embeddings, from_scores, rtol=1e-12, atol=1e-12)


def test_embedding_path_is_differentiable():
    hidden = torch.randn(5, 4, requires_grad=True)
    items = torch.randn(9, 4, requires_grad=True)
    losses.get("sce(alpha=10,k=3)").from_embeddings(hidden, items, torch.arange(5), reduction="mean").backward()
    assert hidden.grad.abs().sum() > 0
    assert items.grad.abs().sum() > 0


def test_reductions():
    scores, targets = _scores((7, 11), 19)
    loss = losses.get("ce")
    per_row = loss(scores, targets)
    assert loss(scores, targets, reduction="mean").item() == pytest.approx(per_row.mean().item())
    assert loss(scores, targets, reduction="sum").item() == pytest.approx(per_row.sum().item())


# ---------------------------------------------------------------------------------------------
# Samplers
# ---------------------------------------------------------------------------------------------


def test_uniform_sampler_counts_target_hits():
    targets = torch.tensor([0, 1, 2])
    sample = draw_negatives("uniform", targets, 3, 50, generator=torch.Generator().manual_seed(0))
    assert sample.items.shape == (3, 50)
    assert sample.target_hits.tolist() == (sample.items == targets[:, None]).sum(1).tolist()
    assert int(sample.target_hits.sum()) > 0


def test_no_target_sampler_never_hits_and_covers_others():
    targets = torch.tensor([0, 3, 6])
    sample = draw_negatives("uniform-no-target", targets, 7, 400, generator=torch.Generator().manual_seed(1))
    assert not bool((sample.items == targets[:, None]).any())
    assert sample.target_hits.tolist() == [0, 0, 0]
    for row, target in enumerate(targets.tolist()):
        assert set(sample.items[row].tolist()) == set(range(7)) - {target}


def test_without_replacement_sampler_is_distinct():
    sample = draw_negatives("without-replacement", torch.zeros(20, dtype=torch.long), 30, 30, generator=torch.Generator().manual_seed(2))
    for row in sample.items.tolist():
        assert sorted(row) == list(range(30))


def test_catalogue_check_limits_without_replacement():
    loss = losses.get("ssm(k=31,sampler=without-replacement)")

    with pytest.raises(ValueError, match=r"k=31 distinct items from a catalogue of 30"):
        loss.check_catalogue(30)
    with pytest.raises(ValueError, match=r"k=31 distinct items from a catalogue of 30"):
        draw_negatives("without-replacement", torch.zeros(2, dtype=torch.long), 30, 31)
    loss.check_catalogue(31)


def test_catalogue_check_accepts_draws_with_replacement():
    for spec in ("ssm(k=500)", "sce(alpha=100,k=500)", "bpr(k=50)", "sce(k=500,sampler=shared)", "ce"):
        losses.get(spec).check_catalogue(3)
    with pytest.raises(ValueError, match="at least 2 items"):
        losses.get("bce").check_catalogue(1)


def test_shared_sampler_is_one_set():
    sample = draw_negatives("shared", torch.arange(5), 10, 4, generator=torch.Generator().manual_seed(3))
    assert sample.shared
    assert sample.per_row(5).shape == (5, 4)
    assert bool((sample.per_row(5) == sample.items[0]).all())


def test_samplers_are_seeded():
    for sampler in ("uniform", "uniform-no-target", "without-replacement", "shared"):
        first = draw_negatives(sampler, torch.arange(4), 10, 5, generator=torch.Generator().manual_seed(4))
        second = draw_negatives(sampler, torch.arange(4), 10, 5, generator=torch.Generator().manual_seed(4))
        assert torch.equal(first.items, second.items)


def test_uniform_sampler_is_uniform():
    sample = draw_negatives("uniform", torch.zeros(1, dtype=torch.long), 5, 50000, generator=torch.Generator().manual_seed(5))
    counts = torch.bincount(sample.items[0], minlength=5).double() / 50000
    assert torch.allclose(counts, torch.full((5,), 0.2, dtype=torch.float64), atol=0.01)


def test_normaliser_support_matches_simulation():
    loss = losses.get("ssm(k=20)")
    generator = torch.Generator().manual_seed(6)
    targets = torch.zeros(4000, dtype=torch.long)
    sample = loss.draw(targets, 30, generator)
    with_target = torch.cat([targets[:, None], sample.items], 1)
    distinct = torch.tensor([len(set(row)) for row in with_target.tolist()], dtype=torch.float64)
    assert loss.normaliser_support(30) == pytest.approx(distinct.mean().item() / 30, abs=0.01)


# ---------------------------------------------------------------------------------------------
# Registry
# ---------------------------------------------------------------------------------------------


def test_spec_round_trip():
    loss = losses.get("sce(alpha=100,k=500)")
    assert loss.spec == "sce(alpha=100,k=500,sampler=uniform)"
    assert losses.get(loss.spec).params == loss.params


def test_overrides_win():
    assert losses.get("sce(k=5)", k=7).params["k"] == 7


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("softmax", "unknown loss 'softmax'; registered losses: ce, ce_top"),
        ("sce(beta=2)", "no parameter 'beta'; valid parameters: alpha, k, sampler"),
        ("ce(k=2)", "no parameter 'k'; valid parameters: none"),
        ("sce(alpha=0.5)", r"must be >= 1"),
        ("sce(k=0)", r"must be >= 1"),
        ("ssm(sampler=random)", "sampler='random' is not supported"),
        ("sce(alpha=1,alpha=2)", "given twice"),
        ("sce(100)", "write key=value"),
        ("sce(alpha=100", "invalid loss spec"),
        ("gbce(t=2)", r"must be in \[0, 1\]"),
    ],
)
def test_invalid_specs_are_rejected(spec, message):
    with pytest.raises((ValueError, TypeError), match=message):
        losses.get(spec)


def test_non_integer_k_is_rejected():
    with pytest.raises(TypeError, match="must be an integer"):
        losses.get("sce(k=2.5)")


def test_scores_with_nan_are_rejected():
    with pytest.raises(ValueError, match="NaN at row 0, column 1"):
        losses.get("ce")(torch.tensor([[0.0, math.nan]]), torch.tensor([0]))


def test_infinite_scores_are_rejected_by_losses():
    with pytest.raises(ValueError, match="must be finite"):
        losses.get("ce")(torch.tensor([[0.0, math.inf]]), torch.tensor([0]))


def test_exclude_must_be_boolean_mask():
    with pytest.raises(ValueError, match="boolean mask of shape"):
        losses.get("ce")(torch.zeros(1, 3), torch.tensor([0]), exclude=torch.tensor([[1]]))


def test_fused_ce_training_path_matches_centred_form():
    generator = torch.Generator().manual_seed(20)
    hidden = torch.randn(31, 12, generator=generator) * 3
    items = torch.randn(257, 12, generator=generator) * 3
    targets = torch.randint(0, 257, (31,), generator=generator)
    fused = losses.get("ce").from_embeddings(hidden, items, targets)
    centred = losses.get("ce")(hidden.double() @ items.double().T, targets)
    assert torch.allclose(fused.double(), centred, rtol=1e-5, atol=1e-5)
