"""Exact 1-based rank of each held-out target among full-catalogue scores.

Ranks are computed by counting, never from sort or ``torch.topk`` order, so they do not depend
on how a kernel breaks ties (which differs between CPU and CUDA). Three tie policies:

- ``"pessimistic"``: r = |{v : s_v >= s_target}| (the target counts itself). Every
  cross-entropy bound of Xu et al. 2024 (arXiv 2408.14238) holds for this rank.
- ``"optimistic"``: r = 1 + |{v : s_v > s_target}|.
- ``"average"``: the mean of the two, i.e. the mean position of the tied group (float).

Excluded items (for example the user's previously seen items) are removed from the count.
A row's own target is never removed: when the held-out item also occurs in the user's history
(a repeated interaction) and therefore appears in ``exclude``, it stays in the ranking and only
the other excluded items are removed.
"""

from __future__ import annotations

import torch
from torch import Tensor

from boundlab._validation import (
    check_all_finite,
    check_choice,
    check_floating,
    check_index_vector,
    check_positive_int,
    check_scores,
    check_tensor,
)

TIE_POLICIES = ("pessimistic", "optimistic", "average")

# Rows per chunk in the dense form are chosen so that one chunk's boolean temporaries stay
# near this many elements (1 MiB each), small enough to stay in cache.
_DENSE_CHUNK_ELEMENTS = 1 << 20


def target_ranks(
    scores: Tensor,
    targets: Tensor,
    *,
    exclude: Tensor | None = None,
    ties: str = "pessimistic",
) -> Tensor:
    """Return the 1-based rank of ``scores[u, targets[u]]`` within row ``u``, by counting.

    ``scores`` is ``(U, N)`` floating (±inf allowed, NaN rejected); ``targets`` is ``(U,)`` integer
    columns. ``exclude`` is a ``(U, N)`` boolean mask or a ``(U, L)`` integer tensor of columns
    padded with negative values. Returns int64 ranks, or float64 for ``ties="average"``.

    Example: scores ``[[3, 2, 3, 2, 1, 1]]`` with target 2 give pessimistic rank 2,
    optimistic rank 1 and average rank 1.5.
    """
    scores = check_scores("scores", scores)
    n_users, n_items = scores.shape
    targets = check_index_vector("targets", targets, n_users, n_items).to(scores.device, torch.long)
    check_choice("ties", ties, TIE_POLICIES)
    exclude = _check_exclude(exclude, n_users, n_items)

    greater = torch.empty(n_users, dtype=torch.long, device=scores.device)
    equal = torch.empty_like(greater)
    rows = max(1, _DENSE_CHUNK_ELEMENTS // n_items)
    columns = torch.arange(n_items, device=scores.device)
    for start in range(0, n_users, rows):
        stop = min(start + rows, n_users)
        block = scores[start:stop]
        block_targets = targets[start:stop, None]
        target_score = block.gather(1, block_targets)

        above = block > target_score
        tied = block == target_score
        if exclude is not None:
            keep = _keep_mask(exclude, start, stop, columns, block_targets)
            above &= keep
            tied &= keep

        greater[start:stop] = above.sum(1)
        equal[start:stop] = tied.sum(1)

    return _combine_counts(greater, equal, ties)


def target_ranks_streaming(
    user_embeddings: Tensor,
    item_embeddings: Tensor,
    targets: Tensor,
    *,
    item_bias: Tensor | None = None,
    exclude: Tensor | None = None,
    ties: str = "pessimistic",
    user_chunk: int = 256,
    item_chunk: int = 16384,
) -> Tensor:
    """Return target ranks for scores ``user_embeddings @ item_embeddings.T + item_bias``.

    Walks users and items in chunks, so memory is O(user_chunk * item_chunk) whatever N is.
    The result equals ``target_ranks(embedding_scores(...), ...)`` exactly, for every chunk size:
    a fast matmul decides every comparison that rounding cannot flip, and the few scores within a
    rigorous rounding band of the target score are recomputed with the fixed-order reduction of
    :func:`embedding_scores`. Embeddings and bias must be finite.
    """
    user_embeddings = _check_embeddings("user_embeddings", user_embeddings)
    item_embeddings = _check_embeddings("item_embeddings", item_embeddings)
    n_users, dim = user_embeddings.shape
    n_items = item_embeddings.shape[0]
    if item_embeddings.shape[1] != dim:
        raise ValueError(
            f"item_embeddings has dimension {item_embeddings.shape[1]} but user_embeddings has {dim}; they must match"
        )
    if item_embeddings.dtype != user_embeddings.dtype or item_embeddings.device != user_embeddings.device:
        raise ValueError(
            f"user_embeddings ({user_embeddings.dtype}, {user_embeddings.device}) and item_embeddings "
            f"({item_embeddings.dtype}, {item_embeddings.device}) must share dtype and device"
        )
    item_bias = _check_bias(item_bias, n_items, item_embeddings)
    targets = check_index_vector("targets", targets, n_users, n_items).to(user_embeddings.device, torch.long)
    check_choice("ties", ties, TIE_POLICIES)
    exclude = _check_exclude(exclude, n_users, n_items)
    check_positive_int("user_chunk", user_chunk)
    check_positive_int("item_chunk", item_chunk)

    max_item_norm = item_embeddings.double().norm(dim=1).max()
    max_abs_bias = item_bias.double().abs().max() if item_bias is not None else torch.zeros((), dtype=torch.float64)
    tolerance = _rounding_tolerance(user_embeddings.dtype, dim)

    greater = torch.zeros(n_users, dtype=torch.long, device=user_embeddings.device)
    equal = torch.zeros_like(greater)
    for u0 in range(0, n_users, user_chunk):
        u1 = min(u0 + user_chunk, n_users)
        users = user_embeddings[u0:u1]
        block_targets = targets[u0:u1, None]
        target_score = _pair_scores(users, item_embeddings[block_targets[:, 0]], item_bias, block_targets[:, 0])

        # Any two evaluations of the same score differ by less than `band`, so a fast score
        # outside [target - band, target + band] compares to the target as the exact one does.
        band = tolerance * (
            users.double().norm(dim=1) * max_item_norm + max_abs_bias + target_score.double().abs()
        )
        lower = (target_score.double() - band)[:, None]
        upper = (target_score.double() + band)[:, None]

        for i0 in range(0, n_items, item_chunk):
            i1 = min(i0 + item_chunk, n_items)
            items = item_embeddings[i0:i1]
            fast = users @ items.T
            if item_bias is not None:
                fast = fast + item_bias[i0:i1]
            fast = fast.double()

            above = fast > upper
            tied = torch.zeros_like(above)
            uncertain = ~(above | (fast < lower))
            rows, cols = torch.nonzero(uncertain, as_tuple=True)
            if rows.numel():
                exact = _pair_scores(users[rows], items[cols], item_bias, cols + i0)
                above[rows, cols] = exact > target_score[rows]
                tied[rows, cols] = exact == target_score[rows]

            if exclude is not None:
                columns = torch.arange(i0, i1, device=users.device)
                keep = _keep_mask(exclude, u0, u1, columns, block_targets)
                above &= keep
                tied &= keep

            greater[u0:u1] += above.sum(1)
            equal[u0:u1] += tied.sum(1)

    return _combine_counts(greater, equal, ties)


def embedding_scores(
    user_embeddings: Tensor,
    item_embeddings: Tensor,
    item_bias: Tensor | None = None,
    *,
    chunk: int = 64,
) -> Tensor:
    """Return the ``(U, N)`` scores u·v (+ bias) with the fixed-order reduction the streaming ranks use.

    A matmul may round the same product differently for different matrix shapes; this
    elementwise-product-then-sum form does not. It is slow and meant as a reference.
    """
    user_embeddings = _check_embeddings("user_embeddings", user_embeddings)
    item_embeddings = _check_embeddings("item_embeddings", item_embeddings)
    item_bias = _check_bias(item_bias, item_embeddings.shape[0], item_embeddings)
    check_positive_int("chunk", chunk)
    columns = torch.arange(item_embeddings.shape[0], device=item_embeddings.device)
    parts = []
    for start in range(0, user_embeddings.shape[0], chunk):
        users = user_embeddings[start : start + chunk]
        product = users[:, None, :] * item_embeddings[None, :, :]
        parts.append(_add_bias(product.sum(-1), item_bias, columns))
    return torch.cat(parts) if parts else user_embeddings.new_empty(0, item_embeddings.shape[0])


def index_to_mask(index: Tensor, n_items: int) -> Tensor:
    """Turn a ``(U, L)`` column index padded with negative values into a ``(U, n_items)`` boolean mask."""
    index = check_tensor("index", index)
    if index.dim() != 2 or index.dtype == torch.bool or index.is_floating_point():
        raise ValueError(f"index must be a 2-D integer tensor padded with negative values, got {index.dtype} {tuple(index.shape)}")
    if index.numel() and int(index.max()) >= n_items:
        raise ValueError(f"index contains column {int(index.max())}, out of range for {n_items} items")
    mask = torch.zeros(index.shape[0], n_items, dtype=torch.bool, device=index.device)
    rows, positions = torch.nonzero(index >= 0, as_tuple=True)
    mask[rows, index[rows, positions]] = True
    return mask


def _pair_scores(users: Tensor, items: Tensor, item_bias: Tensor | None, item_index: Tensor) -> Tensor:
    # Row-wise sum over the embedding dimension: the reduction order depends only on the
    # dimension, so every chunking yields bit-identical values (see embedding_scores).
    return _add_bias((users * items).sum(-1), item_bias, item_index)


def _add_bias(dot: Tensor, item_bias: Tensor | None, item_index: Tensor) -> Tensor:
    return dot if item_bias is None else dot + item_bias[item_index]


def _rounding_tolerance(dtype: torch.dtype, dim: int) -> float:
    # A floating-point dot product of length d, in any summation order, is within
    # gamma_d * sum|x_i y_i| of the exact value, where gamma_d is about d unit roundoffs. The factor
    # 4 covers both evaluations and the bias addition. Reduced-precision matmul modes widen the unit.
    unit = torch.finfo(dtype).eps / 2
    if dtype == torch.float32 and torch.get_float32_matmul_precision() != "highest":
        unit = 2.0**-11
    return 4.0 * (dim + 2) * unit


def _combine_counts(greater: Tensor, equal: Tensor, ties: str) -> Tensor:
    if ties == "pessimistic":
        return greater + equal
    if ties == "optimistic":
        return greater + 1
    return greater.double() + (equal.double() + 1.0) / 2.0


def _check_embeddings(name: str, value: object) -> Tensor:
    value = check_tensor(name, value)
    if value.dim() != 2:
        raise ValueError(f"{name} must have shape (rows, dim), got shape {tuple(value.shape)}")
    if value.shape[0] == 0 and name == "item_embeddings":
        raise ValueError("item_embeddings has an empty catalogue (0 rows); at least one item is needed")
    check_floating(name, value)
    return check_all_finite(name, value)


def _check_bias(item_bias: Tensor | None, n_items: int, like: Tensor) -> Tensor | None:
    if item_bias is None:
        return None
    item_bias = check_tensor("item_bias", item_bias)
    if item_bias.shape != (n_items,):
        raise ValueError(f"item_bias must have shape ({n_items},), got shape {tuple(item_bias.shape)}")
    check_floating("item_bias", item_bias)
    check_all_finite("item_bias", item_bias)
    return item_bias.to(like.device, like.dtype)


def _check_exclude(exclude: Tensor | None, n_users: int, n_items: int) -> Tensor | None:
    if exclude is None:
        return None
    exclude = check_tensor("exclude", exclude)
    if exclude.dtype == torch.bool:
        if exclude.shape != (n_users, n_items):
            raise ValueError(
                f"exclude as a boolean mask must have shape ({n_users}, {n_items}), got {tuple(exclude.shape)}"
            )
        return exclude
    if exclude.is_floating_point() or exclude.is_complex():
        raise TypeError(
            f"exclude must be a boolean mask or an integer index tensor, got dtype {exclude.dtype}"
        )
    if exclude.dim() != 2 or exclude.shape[0] != n_users:
        raise ValueError(
            f"exclude as an index tensor must have shape ({n_users}, L) with negative padding, "
            f"got {tuple(exclude.shape)}"
        )
    too_large = exclude >= n_items
    if bool(too_large.any()):
        row, col = torch.nonzero(too_large)[0].tolist()
        raise ValueError(
            f"exclude[{row}, {col}] = {int(exclude[row, col])} is out of range; item columns must be "
            f"< {n_items} (use a negative value for padding)"
        )
    return exclude.long()


def _keep_mask(exclude: Tensor, start: int, stop: int, columns: Tensor, targets: Tensor) -> Tensor:
    """Boolean ``(stop - start, len(columns))`` mask of the items that stay in the ranking."""
    exclude = exclude[start:stop].to(columns.device)
    if exclude.dtype == torch.bool:
        removed = exclude[:, columns]
    else:
        # Compare each listed column with the chunk's columns; padding (negative) never matches.
        first, last = int(columns[0]), int(columns[-1])
        inside = (exclude >= first) & (exclude <= last)
        width = last - first + 1
        local = torch.where(inside, exclude - first, torch.full_like(exclude, width))
        removed = torch.zeros(exclude.shape[0], width + 1, dtype=torch.bool, device=columns.device)
        removed.scatter_(1, local, True)
        removed = removed[:, :width]
    return ~removed | (columns[None, :] == targets)
