"""Exact target ranks: hand-computed cases, invariances, exclusion, streaming equality, errors."""

from __future__ import annotations

import hypothesis.strategies as st
import pytest
import torch
from hypothesis import given, settings

from boundlab import target_ranks
from boundlab.ranking import embedding_scores, target_ranks_streaming


def reference_ranks(scores: torch.Tensor, targets: torch.Tensor, ties: str, exclude=None) -> torch.Tensor:
    """Slow reference: sort each row (Python floats) and read the first and last tied positions."""
    out = []
    for row, target in zip(scores.tolist(), targets.tolist()):
        kept = [
            (value, column)
            for column, value in enumerate(row)
            if exclude is None or column == target or not exclude[len(out)][column]
        ]
        ordered = sorted((value for value, _ in kept), reverse=True)
        target_value = row[target]
        first = ordered.index(target_value) + 1
        last = len(ordered) - ordered[::-1].index(target_value)
        out.append({"pessimistic": last, "optimistic": first, "average": (first + last) / 2}[ties])
    return torch.tensor(out, dtype=torch.float64)


HAND = torch.tensor([[3.0, 2.0, 3.0, 2.0, 1.0, 1.0]])


def test_hand_pessimistic_rank():
    assert target_ranks(HAND, torch.tensor([2])).tolist() == [2]


def test_hand_optimistic_rank():
    assert target_ranks(HAND, torch.tensor([2]), ties="optimistic").tolist() == [1]


def test_hand_average_rank():
    assert target_ranks(HAND, torch.tensor([2]), ties="average").tolist() == [1.5]


def test_hand_lowest_tied_group():
    assert target_ranks(HAND, torch.tensor([5])).tolist() == [6]
    assert target_ranks(HAND, torch.tensor([5]), ties="optimistic").tolist() == [5]


def test_dtypes_of_results():
    assert target_ranks(HAND, torch.tensor([0])).dtype == torch.long
    assert target_ranks(HAND, torch.tensor([0]), ties="average").dtype == torch.float64


def test_constant_model_ranks_last():
    scores = torch.zeros(3, 50)
    assert target_ranks(scores, torch.tensor([0, 7, 49])).tolist() == [50, 50, 50]
    assert target_ranks(scores, torch.tensor([0, 7, 49]), ties="optimistic").tolist() == [1, 1, 1]


def test_infinite_scores_are_ranked():
    scores = torch.tensor([[float("inf"), 1.0, float("-inf"), float("inf")]])
    assert target_ranks(scores, torch.tensor([0])).tolist() == [2]
    assert target_ranks(scores, torch.tensor([1])).tolist() == [3]
    assert target_ranks(scores, torch.tensor([2])).tolist() == [4]


def test_low_precision_scores():
    for dtype in (torch.float16, torch.bfloat16):
        assert target_ranks(HAND.to(dtype), torch.tensor([2])).tolist() == [2]


@pytest.mark.parametrize("ties", ["pessimistic", "optimistic", "average"])
def test_matches_sorting_reference_with_heavy_ties(ties):
    generator = torch.Generator().manual_seed(7)
    scores = torch.randint(-3, 4, (64, 41), generator=generator).double()
    targets = torch.randint(0, 41, (64,), generator=generator)
    expected = reference_ranks(scores, targets, ties)
    assert torch.equal(target_ranks(scores, targets, ties=ties).double(), expected)


@pytest.mark.parametrize("ties", ["pessimistic", "optimistic", "average"])
def test_matches_reference_with_exclusion(ties):
    generator = torch.Generator().manual_seed(8)
    scores = torch.randint(-2, 3, (40, 29), generator=generator).float()
    targets = torch.randint(0, 29, (40,), generator=generator)
    mask = torch.rand(40, 29, generator=generator) < 0.3
    expected = reference_ranks(scores, targets, ties, exclude=mask.tolist())
    assert torch.equal(target_ranks(scores, targets, exclude=mask, ties=ties).double(), expected)


def test_exclude_index_equals_mask():
    generator = torch.Generator().manual_seed(9)
    scores = torch.randn(30, 50, generator=generator)
    targets = torch.randint(0, 50, (30,), generator=generator)
    index = torch.randint(-1, 50, (30, 12), generator=generator)
    mask = torch.zeros(30, 50, dtype=torch.bool)
    for row, columns in enumerate(index.tolist()):
        for column in columns:
            if column >= 0:
                mask[row, column] = True
    assert torch.equal(target_ranks(scores, targets, exclude=index), target_ranks(scores, targets, exclude=mask))


def test_exclude_never_removes_repeated_target():
    scores = torch.tensor([[5.0, 4.0, 3.0, 2.0]])
    exclude = torch.tensor([[0, 2, -1]])
    assert target_ranks(scores, torch.tensor([2]), exclude=exclude).tolist() == [2]


def test_exclude_of_all_other_items_gives_rank_one():
    scores = torch.tensor([[5.0, 4.0, 3.0, 2.0]])
    exclude = torch.ones(1, 4, dtype=torch.bool)
    assert target_ranks(scores, torch.tensor([3]), exclude=exclude).tolist() == [1]


finite_rows = st.lists(
    st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False, width=32),
    min_size=1,
    max_size=30,
)


@settings(max_examples=200, deadline=None)
@given(row=finite_rows, target_seed=st.integers(0, 10**6), shift=st.floats(-1e3, 1e3, width=32))
def test_shift_invariance(row, target_seed, shift):
    # Integer-valued scores keep the shifted values exact, so the property is tested without rounding.
    scores = torch.tensor([row], dtype=torch.float64).round()
    target = torch.tensor([target_seed % len(row)])
    shifted = scores + round(shift)
    for ties in ("pessimistic", "optimistic", "average"):
        assert torch.equal(target_ranks(scores, target, ties=ties), target_ranks(shifted, target, ties=ties))


@settings(max_examples=200, deadline=None)
@given(row=st.lists(st.integers(-10**5, 10**5), min_size=1, max_size=30), target_seed=st.integers(0, 10**6))
def test_strictly_increasing_transform_invariance(row, target_seed):
    # On integers of at most 1e5 in magnitude these transforms are strictly increasing even after
    # float64 rounding (cubes are exact, neighbouring logarithms differ by more than 1e-6).
    scores = torch.tensor([row], dtype=torch.float64)
    target = torch.tensor([target_seed % len(row)])
    transformed = [torch.sign(scores) * torch.log1p(scores.abs()), scores**3, 2.5 * scores - 7.0]
    for ties in ("pessimistic", "optimistic", "average"):
        expected = target_ranks(scores, target, ties=ties)
        for other in transformed:
            assert torch.equal(target_ranks(other, target, ties=ties), expected)


@settings(max_examples=200, deadline=None)
@given(
    row=st.lists(st.integers(-3, 3), min_size=1, max_size=40),
    target_seed=st.integers(0, 10**6),
)
def test_optimistic_average_pessimistic_order(row, target_seed):
    scores = torch.tensor([row], dtype=torch.float32)
    target = torch.tensor([target_seed % len(row)])
    low = target_ranks(scores, target, ties="optimistic").double()
    mid = target_ranks(scores, target, ties="average")
    high = target_ranks(scores, target).double()
    assert bool((low <= mid).all())
    assert bool((mid <= high).all())
    assert bool((low >= 1).all())
    assert bool((high <= len(row)).all())


@settings(max_examples=200, deadline=None)
@given(
    row=st.lists(st.integers(-3, 3), min_size=2, max_size=40),
    target_seed=st.integers(0, 10**6),
    removed=st.lists(st.booleans(), min_size=40, max_size=40),
)
def test_exclude_keeps_relative_rank(row, target_seed, removed):
    # Excluding items gives the same rank as deleting their columns from the score matrix.
    n = len(row)
    target = target_seed % n
    mask = torch.tensor([removed[:n]])
    kept_columns = [c for c in range(n) if c == target or not removed[c]]
    reduced = torch.tensor([[row[c] for c in kept_columns]], dtype=torch.float32)
    reduced_target = torch.tensor([kept_columns.index(target)])
    scores = torch.tensor([row], dtype=torch.float32)
    for ties in ("pessimistic", "optimistic", "average"):
        assert torch.equal(
            target_ranks(scores, torch.tensor([target]), exclude=mask, ties=ties),
            target_ranks(reduced, reduced_target, ties=ties),
        )


@pytest.mark.parametrize("chunk", [1, 7, 64, 1009])
@pytest.mark.parametrize("ties", ["pessimistic", "optimistic", "average"])
def test_streaming_equals_dense_with_integer_ties(chunk, ties):
    # Small integer embeddings make every score exact, so the matmul and the dense form must agree.
    generator = torch.Generator().manual_seed(11)
    users = torch.randint(-2, 3, (37, 8), generator=generator).float()
    items = torch.randint(-2, 3, (1009, 8), generator=generator).float()
    bias = torch.randint(-1, 2, (1009,), generator=generator).float()
    targets = torch.randint(0, 1009, (37,), generator=generator)
    exclude = torch.randint(-1, 1009, (37, 20), generator=generator)
    dense = target_ranks(users @ items.T + bias, targets, exclude=exclude, ties=ties)
    streamed = target_ranks_streaming(
        users, items, targets, item_bias=bias, exclude=exclude, ties=ties, user_chunk=chunk, item_chunk=chunk
    )
    assert torch.equal(streamed, dense)


@pytest.mark.parametrize("chunk", [1, 7, 64, 1009])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_streaming_equals_dense_on_reference_scores(chunk, dtype):
    generator = torch.Generator().manual_seed(12)
    users = torch.randn(37, 33, generator=generator, dtype=dtype)
    items = torch.randn(1009, 33, generator=generator, dtype=dtype)
    targets = torch.randint(0, 1009, (37,), generator=generator)
    # Duplicate item rows create exact ties that the band recomputation has to resolve.
    items[500:600] = items[targets[:20]].repeat(5, 1)
    dense = target_ranks(embedding_scores(users, items), targets)
    assert torch.equal(target_ranks_streaming(users, items, targets, user_chunk=chunk, item_chunk=chunk), dense)


def test_streaming_chunk_sizes_agree_with_mask_exclusion():
    generator = torch.Generator().manual_seed(13)
    users = torch.randn(20, 16, generator=generator)
    items = torch.randn(300, 16, generator=generator)
    targets = torch.randint(0, 300, (20,), generator=generator)
    mask = torch.rand(20, 300, generator=generator) < 0.5
    results = [
        target_ranks_streaming(users, items, targets, exclude=mask, user_chunk=c, item_chunk=c) for c in (1, 13, 300)
    ]
    assert torch.equal(results[0], results[1])
    assert torch.equal(results[0], results[2])


@pytest.mark.parametrize(
    ("scores", "targets", "error", "message"),
    [
        (torch.tensor([[1.0, float("nan")], [0.0, 1.0]]), torch.tensor([0, 1]), ValueError, "NaN at row 0, column 1"),
        (torch.tensor([[1.0, 2.0]]), torch.tensor([2]), ValueError, r"targets\[0\] = 2 is out of range"),
        (torch.tensor([[1.0, 2.0]]), torch.tensor([-1]), ValueError, "out of range"),
        (torch.tensor([[1.0, 2.0]]), torch.tensor([0.0]), TypeError, "integer dtype"),
        (torch.tensor([[1.0, 2.0]]), torch.tensor([True]), TypeError, "integer dtype"),
        (torch.tensor([[1.0, 2.0]]), torch.tensor([0, 1]), ValueError, r"shape \(1,\)"),
        (torch.tensor([1.0, 2.0]), torch.tensor([0]), ValueError, r"shape \(users, items\)"),
        (torch.empty(2, 0), torch.tensor([0, 0]), ValueError, "empty catalogue"),
        (torch.tensor([[1, 2]]), torch.tensor([0]), TypeError, "floating-point"),
        ([[1.0, 2.0]], torch.tensor([0]), TypeError, "torch.Tensor"),
    ],
)
def test_invalid_input_is_rejected(scores, targets, error, message):
    with pytest.raises(error, match=message):
        target_ranks(scores, targets)


def test_unknown_tie_policy_is_rejected():
    with pytest.raises(ValueError, match="ties='random'"):
        target_ranks(HAND, torch.tensor([0]), ties="random")


def test_exclude_out_of_range_is_rejected():
    with pytest.raises(ValueError, match=r"exclude\[0, 1\] = 6"):
        target_ranks(HAND, torch.tensor([0]), exclude=torch.tensor([[1, 6]]))


def test_exclude_mask_shape_is_checked():
    with pytest.raises(ValueError, match="boolean mask must have shape"):
        target_ranks(HAND, torch.tensor([0]), exclude=torch.zeros(1, 5, dtype=torch.bool))


def test_streaming_rejects_mismatched_dimensions():
    with pytest.raises(ValueError, match="dimension 3 but user_embeddings has 4"):
        target_ranks_streaming(torch.randn(2, 4), torch.randn(5, 3), torch.tensor([0, 1]))


def test_streaming_rejects_non_finite_embeddings():
    items = torch.randn(5, 4)
    items[3, 2] = float("inf")
    with pytest.raises(ValueError, match=r"item_embeddings must be finite.*\(3, 2\)"):
        target_ranks_streaming(torch.randn(2, 4), items, torch.tensor([0, 1]))


def test_streaming_rejects_bad_chunk():
    with pytest.raises(ValueError, match="user_chunk must be >= 1"):
        target_ranks_streaming(torch.randn(2, 4), torch.randn(5, 4), torch.tensor([0, 1]), user_chunk=0)
