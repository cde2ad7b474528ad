"""Negative samplers for sampled losses, each seeded through a ``torch.Generator``.

Every sampler returns a :class:`NegativeSample`: the sampled item columns, shaped ``(U, K)``
(or ``(K,)`` for the batch-shared sampler), and how many draws hit each row's own target.

- ``"uniform"``: K draws uniform over all N items with replacement. The target can be drawn;
  this is the convention of Xu et al. 2024 (arXiv 2408.14238), and their bounding-probability
  theorems assume it.
- ``"uniform-no-target"``: K draws with replacement, uniform over the N - 1 non-target items.
- ``"without-replacement"``: K distinct items uniform over all N items (the target can be one).
- ``"shared"``: one set of K draws with replacement for the whole batch, so the sampled scores
  cost one (P, d) x (d, K) matmul in training.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from boundlab._validation import check_choice, check_positive_int

SAMPLERS = ("uniform", "uniform-no-target", "without-replacement", "shared")


@dataclass(frozen=True)
class NegativeSample:
    """Sampled negative columns and the number of draws that hit each row's target."""

    items: Tensor
    target_hits: Tensor
    shared: bool

    def per_row(self, n_rows: int) -> Tensor:
        """Return the sampled columns as a ``(n_rows, K)`` tensor (expanding a shared sample)."""
        return self.items.expand(n_rows, -1) if self.shared else self.items


def draw_negatives(
    sampler: str,
    targets: Tensor,
    n_items: int,
    k: int,
    *,
    generator: torch.Generator | None = None,
) -> NegativeSample:
    """Draw K negative item columns per row of ``targets`` with the named sampler."""
    check_catalogue(sampler, n_items, k)
    device = targets.device
    n_rows = targets.shape[0]

    if sampler == "uniform":
        items = _randint(n_items, (n_rows, k), generator, device)
        return NegativeSample(items, (items == targets[:, None]).sum(1), shared=False)

    if sampler == "shared":
        items = _randint(n_items, (1, k), generator, device)
        return NegativeSample(items, (items == targets[:, None]).sum(1), shared=True)

    if sampler == "uniform-no-target":
        # Draw from N - 1 slots and skip over the target: slot j maps to item j, or j + 1 at or past the target.
        slots = _randint(n_items - 1, (n_rows, k), generator, device)
        items = slots + (slots >= targets[:, None]).long()
        return NegativeSample(items, torch.zeros(n_rows, dtype=torch.long, device=device), shared=False)

    # The K smallest of N iid uniform keys form a uniform random K-subset.
    keys = torch.rand(n_rows, n_items, generator=generator, device=device)
    items = torch.topk(keys, k, dim=1, largest=False).indices
    return NegativeSample(items, (items == targets[:, None]).sum(1), shared=False)


def check_catalogue(sampler: str, n_items: int, k: int) -> None:
    """Raise ValueError unless the named sampler can draw ``k`` negatives from ``n_items`` items.

    The with-replacement samplers accept any K, including K > N. "without-replacement" needs
    K <= N, and "uniform-no-target" needs at least one item besides the target.
    """
    check_choice("sampler", sampler, SAMPLERS)
    check_positive_int("k", k)
    check_positive_int("n_items", n_items)
    if sampler == "without-replacement" and k > n_items:
        raise ValueError(
            f"sampler 'without-replacement' cannot draw k={k} distinct items from a catalogue of {n_items}; "
            f"use k <= {n_items} or a sampler that draws with replacement"
        )
    if sampler == "uniform-no-target" and n_items < 2:
        raise ValueError("sampler 'uniform-no-target' needs at least 2 items; use 'uniform' for one item")


def _randint(high: int, shape: tuple[int, ...], generator: torch.Generator | None, device) -> Tensor:
    return torch.randint(0, high, shape, generator=generator, device=device)
