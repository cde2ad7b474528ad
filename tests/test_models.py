"""Tests for the sequential recommenders: masks, padding, scoring, gradients and the registry."""

from __future__ import annotations

import dataclasses
import functools

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from boundlab.models import (
    MODEL_CONFIGS,
    GRU4Rec,
    GRU4RecConfig,
    SASRec,
    SASRecConfig,
    SequentialRecommender,
    build_model,
)
from boundlab.models import sasrec as sasrec_module

N_ITEMS = 30
MAX_LEN = 16
MODEL_NAMES = ["sasrec", "gru4rec"]

# Small but not degenerate: two heads and two blocks for SASRec, an embedding size that differs
# from the GRU hidden size for GRU4Rec, so that the projection is exercised.
SMALL_CONFIGS = {
    "sasrec": {"n_items": N_ITEMS, "max_len": MAX_LEN, "hidden": 16, "n_heads": 2, "n_blocks": 2},
    "gru4rec": {"n_items": N_ITEMS, "max_len": MAX_LEN, "embedding_dim": 16, "hidden": 24},
}


def make_model(name: str, seed: int = 0, dtype: torch.dtype = torch.float32) -> torch.nn.Module:
    """Build a small seeded model in eval mode."""
    torch.manual_seed(seed)
    model = build_model(name, SMALL_CONFIGS[name]).to(dtype)
    return model.eval()


@functools.cache
def cached_model(name: str, dtype: torch.dtype) -> torch.nn.Module:
    """Return one shared eval-mode model per name and dtype, for property tests."""
    return make_model(name, dtype=dtype)


def left_pad(items: list[int], length: int) -> torch.Tensor:
    """Return a (1, length) LongTensor of ``items`` left-padded with 0, keeping the last items."""
    last_items = items[-length:]
    row = [0] * (length - len(last_items)) + last_items
    return torch.tensor([row], dtype=torch.long)


def random_items(count: int, seed: int) -> list[int]:
    """Return ``count`` item ids drawn uniformly from 1..N_ITEMS with a fixed seed."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(1, N_ITEMS + 1, (count,), generator=generator).tolist()


def random_batch(lengths: list[int], width: int, seed: int) -> torch.Tensor:
    """Return a left-padded (len(lengths), width) batch whose row b has lengths[b] real items."""
    rows = [left_pad(random_items(n, seed + b), width) for b, n in enumerate(lengths)]
    return torch.cat(rows)


# Interface and shapes


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_model_satisfies_protocol(name: str) -> None:
    model = make_model(name)
    assert isinstance(model, SequentialRecommender)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_forward_and_encode_last_shapes(name: str) -> None:
    model = make_model(name)
    seqs = random_batch([16, 5, 1], MAX_LEN, seed=1)

    hidden = model(seqs)
    last = model.encode_last(seqs)

    assert hidden.shape == (3, MAX_LEN, 16)
    assert last.shape == (3, 16)
    torch.testing.assert_close(last, hidden[:, -1, :], rtol=0, atol=0)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_score_all_shape_and_formula(name: str) -> None:
    model = make_model(name)
    seqs = random_batch([16, 7, 2, 0], MAX_LEN, seed=2)

    scores = model.score_all(seqs)
    expected = model.encode_last(seqs) @ model.candidate_embeddings().T

    assert scores.shape == (4, N_ITEMS)
    assert model.candidate_embeddings().shape == (N_ITEMS, 16)
    torch.testing.assert_close(scores, expected, rtol=0, atol=0)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_candidate_embeddings_are_rows_1_to_n(name: str) -> None:
    model = make_model(name)
    table = model.item_embedding.weight

    assert table.shape[0] == N_ITEMS + 1
    torch.testing.assert_close(model.candidate_embeddings(), table[1:], rtol=0, atol=0)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_score_column_matches_item_id(name: str) -> None:
    model = make_model(name)
    seqs = random_batch([9], MAX_LEN, seed=3)
    query = model.encode_last(seqs)[0]
    table = model.item_embedding.weight

    scores = model.score_all(seqs)[0]

    for item in (1, 17, N_ITEMS):
        torch.testing.assert_close(scores[item - 1], query @ table[item])


# Padding row


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_padding_row_not_a_candidate(name: str) -> None:
    model = make_model(name)
    seqs = random_batch([16, 6, 1, 0], MAX_LEN, seed=4)
    before = model.score_all(seqs)

    with torch.no_grad():
        model.item_embedding.weight[0].normal_(mean=3.0, std=5.0)
    after = model.score_all(seqs)

    assert after.shape == (4, N_ITEMS)
    torch.testing.assert_close(after, before, rtol=0, atol=0)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_padding_row_starts_at_zero(name: str) -> None:
    model = make_model(name)
    assert torch.count_nonzero(model.item_embedding.weight[0]) == 0


# Causality


@pytest.mark.parametrize("name", MODEL_NAMES)
@pytest.mark.parametrize("cut", [0, 4, 10, MAX_LEN - 2])
def test_later_items_leave_earlier_outputs(name: str, cut: int) -> None:
    model = make_model(name)
    seqs = random_batch([16, 13], MAX_LEN, seed=5)
    changed = seqs.clone()
    later = changed[:, cut + 1 :]
    changed[:, cut + 1 :] = torch.where(later > 0, later % N_ITEMS + 1, later)

    original_out = model(seqs)
    changed_out = model(changed)

    torch.testing.assert_close(
        changed_out[:, : cut + 1], original_out[:, : cut + 1], rtol=0, atol=0
    )
    assert not torch.allclose(changed_out[:, -1], original_out[:, -1])


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_column_output_matches_prefix_encoding(name: str) -> None:
    model = make_model(name)
    items = random_items(12, seed=6)
    full = model(left_pad(items, MAX_LEN))[0]
    first_real = MAX_LEN - len(items)

    for count in range(1, len(items) + 1):
        prefix_last = model.encode_last(left_pad(items[:count], MAX_LEN))[0]
        torch.testing.assert_close(full[first_real + count - 1], prefix_last, rtol=0, atol=1e-6)


# Padding invariance


@pytest.mark.parametrize("name", MODEL_NAMES)
@pytest.mark.parametrize(("dtype", "tolerance"), [(torch.float32, 1e-6), (torch.float64, 1e-12)])
@pytest.mark.parametrize("n_real", [1, 6, 9, MAX_LEN])
def test_extra_left_padding_leaves_outputs_unchanged(
    name: str, dtype: torch.dtype, tolerance: float, n_real: int
) -> None:
    model = make_model(name, dtype=dtype)
    items = random_items(n_real, seed=7)
    reference = model(left_pad(items, n_real))[0]

    for extra in (3, 10):
        width = min(n_real + extra, MAX_LEN)
        padded = model(left_pad(items, width))[0]

        torch.testing.assert_close(padded[-n_real:], reference, rtol=0, atol=tolerance)
        assert torch.count_nonzero(padded[:-n_real]) == 0


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_batch_rows_are_independent(name: str) -> None:
    model = make_model(name)
    lengths = [16, 3, 0, 11, 1]
    batch = random_batch(lengths, MAX_LEN, seed=8)

    together = model(batch)

    for b in range(len(lengths)):
        alone = model(batch[b : b + 1])
        torch.testing.assert_close(together[b], alone[0], rtol=0, atol=1e-6)


@settings(max_examples=40, deadline=None)
@given(
    name=st.sampled_from(MODEL_NAMES),
    items=st.lists(st.integers(1, N_ITEMS), min_size=1, max_size=MAX_LEN),
    extra=st.integers(0, 2 * MAX_LEN),
)
def test_padding_invariance_property(name: str, items: list[int], extra: int) -> None:
    model = cached_model(name, torch.float64)
    n_real = len(items)

    reference = model(left_pad(items, n_real))[0]
    padded = model(left_pad(items, min(n_real + extra, MAX_LEN)))[0]

    torch.testing.assert_close(padded[-n_real:], reference, rtol=0, atol=1e-12)


@pytest.mark.parametrize("scale", [True, False])
def test_sasrec_embedding_scale_keeps_invariance(scale: bool) -> None:
    torch.manual_seed(0)
    config = SASRecConfig(**SMALL_CONFIGS["sasrec"], scale_item_embeddings=scale)
    model = SASRec(config).eval()
    items = random_items(7, seed=17)

    reference = model(left_pad(items, 7))[0]
    padded = model(left_pad(items, MAX_LEN))[0]

    torch.testing.assert_close(padded[-7:], reference, rtol=0, atol=1e-6)


def test_sasrec_embedding_scale_changes_outputs() -> None:
    seqs = random_batch([16, 5], MAX_LEN, seed=18)
    outputs = []
    for scale in (True, False):
        torch.manual_seed(0)
        config = SASRecConfig(**SMALL_CONFIGS["sasrec"], scale_item_embeddings=scale)
        outputs.append(SASRec(config).eval()(seqs))

    assert not torch.allclose(outputs[0], outputs[1])


# torch 2.13's CPU attention kernels return zeros for an all-masked row, so the all-padding tests
# below would pass even without the model's guard against such rows. This test checks the mask
# itself: no real query may attend to a padding or later key, and every query has some key.
def test_sasrec_mask_hides_padding_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    model = make_model("sasrec")
    seqs = random_batch([16, 9, 0, 1], MAX_LEN, seed=9)
    masks: list[torch.Tensor] = []
    original = sasrec_module.F.scaled_dot_product_attention

    def recording_attention(*args: object, **kwargs: object) -> torch.Tensor:
        masks.append(kwargs["attn_mask"])
        return original(*args, **kwargs)

    monkeypatch.setattr(sasrec_module.F, "scaled_dot_product_attention", recording_attention)
    model(seqs)

    is_real = seqs != 0
    real_query_pad_key = is_real[:, :, None] & ~is_real[:, None, :]
    later_key = torch.ones(MAX_LEN, MAX_LEN, dtype=torch.bool).triu(diagonal=1)
    assert len(masks) == 2
    for allowed in masks:
        allowed = allowed[:, 0]
        assert not allowed[real_query_pad_key].any()
        assert not allowed[:, later_key].any()
        assert allowed.any(dim=-1).all()


# All-padding rows


@pytest.mark.parametrize("name", MODEL_NAMES)
@pytest.mark.parametrize("training", [False, True])
def test_all_padding_row_is_finite_and_zero(name: str, training: bool) -> None:
    model = make_model(name)
    model.train(training)
    seqs = random_batch([0, 5], MAX_LEN, seed=10)

    hidden = model(seqs)
    scores = model.score_all(seqs)

    assert torch.isfinite(hidden).all()
    assert torch.isfinite(scores).all()
    assert torch.count_nonzero(hidden[0]) == 0


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_all_padding_batch_has_finite_gradients(name: str) -> None:
    model = make_model(name)
    model.train()
    seqs = torch.zeros(3, MAX_LEN, dtype=torch.long)

    model(seqs).sum().backward()

    for param_name, param in model.named_parameters():
        if param.grad is not None:
            assert torch.isfinite(param.grad).all(), param_name


# Gradients


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_gradients_reach_item_embeddings(name: str) -> None:
    model = make_model(name)
    model.train()
    seqs = random_batch([16, 8, 3, 0], MAX_LEN, seed=11)
    targets = torch.tensor([4, 9, N_ITEMS, 1])

    loss = torch.nn.functional.cross_entropy(model.score_all(seqs), targets - 1)
    loss.backward()
    grad = model.item_embedding.weight.grad

    assert grad is not None
    assert torch.isfinite(grad).all()
    assert torch.count_nonzero(grad[0]) == 0
    assert bool((grad[1:].abs().sum(dim=1) > 0).all())


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_gradients_reach_every_parameter(name: str) -> None:
    model = make_model(name)
    model.train()
    seqs = random_batch([16, 8, 3], MAX_LEN, seed=12)

    model.score_all(seqs).logsumexp(dim=1).sum().backward()

    for param_name, param in model.named_parameters():
        assert param.grad is not None, param_name
        assert torch.count_nonzero(param.grad) > 0, param_name


# Determinism and checkpoints


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_same_seed_gives_same_model(name: str) -> None:
    first = make_model(name, seed=123)
    second = make_model(name, seed=123)
    seqs = random_batch([16, 4], MAX_LEN, seed=13)

    for (key, a), (_, b) in zip(
        first.state_dict().items(), second.state_dict().items(), strict=True
    ):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=key)
    torch.testing.assert_close(first.score_all(seqs), second.score_all(seqs), rtol=0, atol=0)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_different_seeds_give_different_models(name: str) -> None:
    first = make_model(name, seed=1)
    second = make_model(name, seed=2)
    assert not torch.equal(first.item_embedding.weight, second.item_embedding.weight)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_rebuild_from_config_dict(name: str) -> None:
    model = make_model(name, seed=5)
    seqs = random_batch([16, 2], MAX_LEN, seed=14)

    rebuilt = build_model(name, dataclasses.asdict(model.config))
    rebuilt.load_state_dict(model.state_dict())
    rebuilt.eval()

    assert rebuilt.config == model.config
    torch.testing.assert_close(rebuilt.score_all(seqs), model.score_all(seqs), rtol=0, atol=0)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_eval_mode_is_deterministic(name: str) -> None:
    model = make_model(name)
    seqs = random_batch([16, 7], MAX_LEN, seed=15)
    torch.testing.assert_close(model(seqs), model(seqs), rtol=0, atol=0)


# Parameter counts


def test_sasrec_parameter_count_beauty_size() -> None:
    hidden, n_items, max_len, n_blocks = 64, 12_101, 50, 2
    model = SASRec(SASRecConfig(n_items=n_items))

    embeddings = (n_items + 1) * hidden + max_len * hidden
    attention = 3 * hidden * hidden + 3 * hidden + hidden * hidden + hidden
    feed_forward = 2 * (hidden * hidden + hidden)
    layer_norms = 2 * 2 * hidden
    per_block = attention + feed_forward + layer_norms
    expected = embeddings + n_blocks * per_block + 2 * hidden

    assert model.num_parameters() == expected
    assert model.num_parameters() == 828_288


def test_gru4rec_parameter_count_beauty_size() -> None:
    embedding_dim, hidden, n_items = 64, 64, 12_101
    model = GRU4Rec(GRU4RecConfig(n_items=n_items))

    embeddings = (n_items + 1) * embedding_dim
    gru = 3 * hidden * (embedding_dim + hidden) + 2 * 3 * hidden
    projection = hidden * embedding_dim + embedding_dim
    expected = embeddings + gru + projection

    assert model.num_parameters() == expected
    assert model.num_parameters() == 803_648


def test_gru4rec_two_layers_run() -> None:
    torch.manual_seed(0)
    model = GRU4Rec(GRU4RecConfig(n_items=N_ITEMS, max_len=MAX_LEN, n_layers=2)).eval()
    seqs = random_batch([16, 4, 0], MAX_LEN, seed=16)

    hidden = model(seqs)

    assert hidden.shape == (3, MAX_LEN, 64)
    assert torch.isfinite(hidden).all()


# Registry and config validation


def test_registry_names() -> None:
    assert set(MODEL_CONFIGS) == {"sasrec", "gru4rec"}
    assert MODEL_CONFIGS["sasrec"] is SASRecConfig
    assert MODEL_CONFIGS["gru4rec"] is GRU4RecConfig


def test_build_model_returns_registered_classes() -> None:
    assert isinstance(build_model("sasrec", {"n_items": 5}), SASRec)
    assert isinstance(build_model("gru4rec", {"n_items": 5}), GRU4Rec)


def test_build_model_unknown_name_lists_valid() -> None:
    with pytest.raises(ValueError, match="unknown model 'bert4rec'") as error:
        build_model("bert4rec", {"n_items": 5})
    assert "gru4rec" in str(error.value)
    assert "sasrec" in str(error.value)


def test_build_model_unknown_field() -> None:
    with pytest.raises(ValueError, match=r"unknown SASRecConfig fields \['hiden'\]"):
        build_model("sasrec", {"n_items": 5, "hiden": 32})


def test_build_model_missing_n_items() -> None:
    with pytest.raises(ValueError, match=r"requires fields \['n_items'\]"):
        build_model("gru4rec", {})


@pytest.mark.parametrize(
    ("config_class", "kwargs", "message"),
    [
        (SASRecConfig, {"n_items": 0}, "n_items"),
        (SASRecConfig, {"n_items": 5, "hidden": 10, "n_heads": 3}, "divisible by n_heads"),
        (SASRecConfig, {"n_items": 5, "dropout": 1.0}, "dropout"),
        (SASRecConfig, {"n_items": 5, "max_len": 0}, "max_len"),
        (SASRecConfig, {"n_items": 5, "layer_norm_eps": 0.0}, "layer_norm_eps"),
        (GRU4RecConfig, {"n_items": 5, "n_layers": 0}, "n_layers"),
        (GRU4RecConfig, {"n_items": 5, "dropout": -0.1}, "dropout"),
        (GRU4RecConfig, {"n_items": 5, "init_std": 0.0}, "init_std"),
    ],
)
def test_config_rejects_invalid_values(
    config_class: type, kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        config_class(**kwargs)


# Input validation


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_rejects_right_padding(name: str) -> None:
    model = make_model(name)
    seqs = torch.tensor([[3, 4, 0, 0]])
    with pytest.raises(ValueError, match="left-padded"):
        model(seqs)


@pytest.mark.parametrize("name", MODEL_NAMES)
@pytest.mark.parametrize("bad_id", [-1, N_ITEMS + 1])
def test_rejects_out_of_range_ids(name: str, bad_id: int) -> None:
    model = make_model(name)
    seqs = torch.tensor([[0, 2, bad_id]])
    with pytest.raises(ValueError, match=f"0..{N_ITEMS}"):
        model(seqs)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_rejects_sequences_longer_than_max_len(name: str) -> None:
    model = make_model(name)
    seqs = torch.ones(1, MAX_LEN + 1, dtype=torch.long)
    with pytest.raises(ValueError, match=f"max_len is {MAX_LEN}"):
        model(seqs)


@pytest.mark.parametrize("name", MODEL_NAMES)
@pytest.mark.parametrize("seqs", [torch.ones(2, 4), torch.ones(4, dtype=torch.long)])
def test_rejects_wrong_dtype_or_rank(name: str, seqs: torch.Tensor) -> None:
    model = make_model(name)
    with pytest.raises(ValueError, match="2-D LongTensor"):
        model(seqs)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_empty_batch_returns_empty_outputs(name: str) -> None:
    model = make_model(name)
    seqs = torch.zeros(0, MAX_LEN, dtype=torch.long)

    assert model(seqs).shape == (0, MAX_LEN, 16)
    assert model.score_all(seqs).shape == (0, N_ITEMS)
